"""Socket.IO namespace `/notifications`: live pushes and read state (see docs/protocol.md).

A connection is admitted with a session or API token (the `auth` object, a bearer header or
the session cookie) and joins the room of its user, where `NotificationHub` pushes
`notification`, `unread` and `read` events; a connection whose credential holds `jobs.view`
also sits in the room `jobs`, where the process' `JobFeed` pushes `jobs` events (job status
changes and queue depth, realtime_cms/jobs/events.py). Client events are acknowledged with
`{"ok": true, ...}` or `{"ok": false, "error": {"code", "message"}}`; each one re-checks the
token, and a sweep re-checks every connection's credentials (in bulk) every few seconds, so
a revoked session or a deactivated user stops being served. An access change (a role's
permissions, a user's roles) makes the connections concerned join or leave `jobs` at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import socketio
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from handlers import keys
from handlers.access_watch import ACCESS_WATCH, matches
from handlers.auth_context import bearer_token
from handlers.collab import failure, ok
from handlers.collab_seat import REVALIDATE_SECONDS, MessageRate, resolve_token
from realtime_cms.accounts.sessions import still_valid
from realtime_cms.background import PeriodicTask
from realtime_cms.db import transaction
from realtime_cms.errors import CMSError, Invalid, NotFound, RateLimited, Unauthorized
from realtime_cms.jobs import service as jobs_service
from realtime_cms.jobs.events import ROOM as JOBS_ROOM
from realtime_cms.notifications import live, reads
from realtime_cms.notifications.hub import NAMESPACE, NotificationHub, user_room
from realtime_cms.notifications.owner import require_user
from realtime_cms.principal import Principal

log = logging.getLogger(__name__)

# Every client event is a database transaction; a widget sends a few a minute.
EVENTS_PER_SECOND = 20
MAX_IDS = 500
DEFAULT_LIMIT = 50
MAX_LIMIT = 200
MAX_ID = 2**31 - 1  # ids are INT columns, as REST bounds them
SESSION_ENDED = "The session ended; sign in again"

Effect = Callable[[], Awaitable[None]]


@dataclass(eq=False)
class Listener:
    """One connection: whose it is, the token it was admitted with, and its event rate."""

    sid: str
    user_id: int
    token: str
    # What the token is (one of the two), for the bulk re-check.
    session_id: str | None
    token_id: int | None
    ip: str | None
    user_agent: str | None
    rate: MessageRate
    # In the room `jobs` (its credential holds `jobs.view`).
    jobs: bool = False


def _token_from(environ: dict[str, Any], auth: Any) -> str | None:
    if isinstance(auth, dict) and isinstance(auth.get("token"), str):
        return str(auth["token"])
    request: web.Request | None = environ.get("aiohttp.request")
    return bearer_token(request)[0] if request is not None else None


def _int(value: Any, name: str, *, low: int, high: int = MAX_ID) -> int:
    # bool is an int subclass; `true` is not an id.
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise Invalid(f"`{name}` must be an integer from {low} to {high}", code="invalid_payload")
    return value


def _object(data: Any) -> dict[str, Any]:
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise Invalid("The event payload must be an object", code="invalid_payload")
    return data


def _ids(data: Any) -> list[int]:
    ids = _object(data).get("ids")
    if not isinstance(ids, list) or not 1 <= len(ids) <= MAX_IDS:
        raise Invalid(f"`ids` must be a list of 1 to {MAX_IDS} ids", code="invalid_payload")
    return sorted({_int(value, "ids[]", low=1) for value in ids})


class NotificationsNamespace(socketio.AsyncNamespace):
    """A user's notifications live; handlers validate, then hand off to the reads service."""

    def __init__(self, app: web.Application) -> None:
        super().__init__(NAMESPACE)
        self.app = app
        self.listeners: dict[str, Listener] = {}
        self._running = contextlib.AsyncExitStack()
        self._closing: set[asyncio.Task[None]] = set()

    @property
    def hub(self) -> NotificationHub:
        return self.app[keys.NOTIFICATION_HUB]

    async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        token = _token_from(environ, auth)
        request: web.Request | None = environ.get("aiohttp.request")
        ip = request.remote if request is not None else None
        agent = request.headers.get("User-Agent") if request is not None else None
        principal = await resolve_token(self.app, token, ip, agent) if token else None
        if principal is None or principal.user_id is None or token is None:
            message = "Send a valid token in the auth object"
            raise socketio.exceptions.ConnectionRefusedError(
                "unauthorized", {"code": "unauthorized", "message": message}
            )
        rate = MessageRate(EVENTS_PER_SECOND)
        self.listeners[sid] = Listener(
            sid, principal.user_id, token, principal.session_id, principal.token_id, ip, agent, rate
        )
        await self.enter_room(sid, user_room(principal.user_id))
        await self._join_jobs(self.listeners[sid], principal.can(jobs_service.VIEW))

    async def on_disconnect(self, sid: str, reason: str | None = None) -> None:
        self.listeners.pop(sid, None)

    async def trigger_event(self, event: str, *args: Any) -> Any:
        """Route every event through one guard: rate, a valid session, known event, errors."""
        if event in ("connect", "disconnect"):  # clients cannot send these (SocketServer)
            return await super().trigger_event(event, *args)
        handler = getattr(self, f"event_{event}", None)
        try:
            principal = await self._checked(args[0])
            if handler is None:
                raise NotFound(f"Unknown event {event!r}", code="unknown_event")
            effects: list[Effect] = []
            async with transaction(self.app[keys.SESSIONS]) as db:
                answer = await handler(db, principal, args[1] if len(args) > 1 else None, effects)
            for effect in effects:
                await effect()
            return answer
        except CMSError as exc:
            return failure(exc)
        except Exception:
            log.exception("notifications event %s failed", event)
            return failure(CMSError("The server failed; the error was logged"))

    async def event_mark_read(
        self, db: AsyncSession, principal: Principal, data: Any, effects: list[Effect]
    ) -> dict[str, Any]:
        newly = await reads.mark_read(db, principal, ids=_ids(data))
        unread = await reads.unread_counts(db, principal)
        if newly:
            effects.append(
                partial(reads.push_read, self.hub, require_user(principal), newly, unread)
            )
        return ok(read=newly, unread=unread)

    async def event_mark_all_read(
        self, db: AsyncSession, principal: Principal, data: Any, effects: list[Effect]
    ) -> dict[str, Any]:
        _object(data)
        count = await reads.mark_all_read(db, principal)
        unread = await reads.unread_counts(db, principal)
        if count:
            effects.append(
                partial(reads.push_read, self.hub, require_user(principal), None, unread)
            )
        return ok(count=count, unread=unread)

    async def event_since(
        self, db: AsyncSession, principal: Principal, data: Any, effects: list[Effect]
    ) -> dict[str, Any]:
        """Catch-up: the notifications after `after_id`, in id order, and the unread counts."""
        payload = _object(data)
        after_id = _int(payload.get("after_id"), "after_id", low=0)
        limit = _int(payload.get("limit", DEFAULT_LIMIT), "limit", low=1, high=MAX_LIMIT)
        # One more than asked tells whether the client should ask again.
        found = await reads.list_since(db, principal, after_id=after_id, limit=limit + 1)
        unread = await reads.unread_counts(db, principal)
        return ok(notifications=found[:limit], more=len(found) > limit, unread=unread)

    async def event_latest(
        self, db: AsyncSession, principal: Principal, data: Any, effects: list[Effect]
    ) -> dict[str, Any]:
        """First paint: the newest notifications (newest first) and the unread counts."""
        limit = _int(_object(data).get("limit", DEFAULT_LIMIT), "limit", low=1, high=MAX_LIMIT)
        found = await live.latest(db, principal, limit=limit)
        return ok(notifications=found, unread=await reads.unread_counts(db, principal))

    async def event_unread(
        self, db: AsyncSession, principal: Principal, data: Any, effects: list[Effect]
    ) -> dict[str, Any]:
        _object(data)
        return ok(unread=await reads.unread_counts(db, principal))

    async def _join_jobs(self, listener: Listener, allowed: bool) -> None:
        """Put the connection in the room `jobs`, or out of it, as `allowed` says."""
        if allowed and not listener.jobs and listener.sid in self.listeners:
            await self.enter_room(listener.sid, JOBS_ROOM)
            listener.jobs = True
        elif not allowed and listener.jobs:
            await self.leave_room(listener.sid, JOBS_ROOM)
            listener.jobs = False

    async def recheck_jobs(self, user_id: int | None, session_id: str | None) -> None:
        """After an access change: the connections concerned join or leave `jobs` as their
        credential's permissions now say. Only those in the room, or whose user's roles now
        grant `jobs.view`, are resolved again (their token may hold less than the roles)."""
        concerned = [
            item
            for item in self.listeners.values()
            if matches(user_id, session_id, of_user=item.user_id, of_session=item.session_id)
        ]
        if not concerned:
            return
        async with transaction(self.app[keys.SESSIONS]) as db:
            granted = await jobs_service.job_viewers(db, {item.user_id for item in concerned})
        for listener in concerned:
            if listener.jobs or listener.user_id in granted:
                principal = await resolve_token(
                    self.app, listener.token, listener.ip, listener.user_agent
                )
                allowed = principal is not None and principal.can(jobs_service.VIEW)
                await self._join_jobs(listener, allowed)

    async def start(self, app: web.Application) -> None:
        """Start the sweep that re-checks every connection's credentials (app startup); the
        feed of job changes to the room `jobs` runs in the core (runtime.py)."""
        await self._running.enter_async_context(Sweep(self))

    async def stop(self, app: web.Application) -> None:
        """Stop the sweep (app shutdown, before the database goes)."""
        await self._running.aclose()

    async def sweep(self) -> None:
        """End every connection whose session or API token no longer resolves (in bulk)."""
        listeners = list(self.listeners.values())
        if not listeners:
            return
        # If the database is unreachable this raises: connections are served until a sweep works.
        async with transaction(self.app[keys.SESSIONS]) as db:
            sessions, tokens = await still_valid(
                db,
                session_ids={item.session_id for item in listeners if item.session_id},
                token_ids={item.token_id for item in listeners if item.token_id is not None},
                settings=self.app[keys.SETTINGS],
            )
        for listener in listeners:
            if listener.session_id not in sessions and listener.token_id not in tokens:
                await self._end(listener.sid)

    async def _checked(self, sid: str) -> Principal:
        listener = self.listeners.get(sid)
        if listener is None:
            raise Unauthorized("Not connected", code="unauthorized")
        if not listener.rate.allow():
            raise RateLimited("Too many messages; slow down", code="rate_limited")
        principal = await resolve_token(self.app, listener.token, listener.ip, listener.user_agent)
        if principal is None or principal.user_id != listener.user_id:
            await self._end(sid, after_ack=True)
            raise Unauthorized(SESSION_ENDED, code="session_ended")
        return principal

    async def _end(self, sid: str, *, after_ack: bool = False) -> None:
        """Stop serving the connection: out of its room, told why, disconnected.

        Clients do not reconnect after a server disconnect. With `after_ack`, the disconnect
        waits a loop turn so that the acknowledgement of the event being handled goes first.
        """
        listener = self.listeners.pop(sid, None)
        if listener is None:
            return
        await self.leave_room(sid, user_room(listener.user_id))
        await self._join_jobs(listener, False)
        ended = {"code": "session_ended", "message": SESSION_ENDED}
        await self.emit("session_ended", ended, to=sid, ignore_queue=True)
        if not after_ack:
            await self.disconnect(sid)
            return
        task = asyncio.create_task(self.disconnect(sid))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)


class Sweep(PeriodicTask):
    """Every few seconds, ends the namespace's connections whose credentials ended."""

    name = "notifications-sweep"

    def __init__(self, namespace: NotificationsNamespace) -> None:
        super().__init__(interval_seconds=REVALIDATE_SECONDS)
        self.namespace = namespace

    async def run_once(self) -> None:
        await self.namespace.sweep()


def setup(app: web.Application, sio: socketio.AsyncServer) -> None:
    namespace = NotificationsNamespace(app)
    sio.register_namespace(namespace)
    app[ACCESS_WATCH].register(lambda user_id, session_id: namespace.sweep())
    app[ACCESS_WATCH].register(namespace.recheck_jobs)
    app.on_startup.append(namespace.start)
    app.on_shutdown.append(namespace.stop)
