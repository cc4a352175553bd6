"""y-socket.io 1.1.3 compatible namespaces `/yjs|<document_id>` (its `SocketIOProvider`).

Every Socket.IO namespace without a handler of its own lands here: `/yjs|<document_id>`
seats the connection in that document's room and anything else is refused. The events are
those of y-socket.io's own server (see docs/protocol.md, "Transport 2"); every payload is
one bare binary argument:

    client -> server  sync-step-1 (state vector, ack)  the ack gets the update it lacks
                      sync-update (update)             applied durably
                      awareness-update (update)
    server -> client  sync-step-1 (state vector, ack)  once connected; the ack's update is applied
                      sync-update (update), awareness-update (update)

The provider cannot take a refusal. A read-only seat's updates are dropped and logged; any
other refused message closes the Engine.IO connection, which the provider treats as a
network failure: it reconnects and resyncs. A seat whose session ended or whose access was
revoked is disconnected from its namespace, which the provider does not retry.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import socketio
from aiohttp import web

from handlers import keys
from handlers.access_watch import ACCESS_WATCH, matches
from handlers.auth_context import bearer_token, client_ip
from handlers.collab_seat import (
    MessageRate,
    RelayFilter,
    admit,
    apply_or_drop,
    next_recheck_in,
    recheck_seat,
)
from realtime_cms.collab.access import Level
from realtime_cms.collab.room import DocumentRoom
from realtime_cms.errors import CMSError, Invalid, NotFound, RateLimited
from realtime_cms.principal import Principal

log = logging.getLogger(__name__)

PREFIX = "/yjs|"

Handler = Callable[["_Seat", bytes], Awaitable[Any]]


@dataclass(eq=False)
class YjsPeer:
    """A `/yjs|<document>` connection; its sends are local emits queued by python-socketio."""

    sid: str
    namespace: str
    principal: Principal
    sio: socketio.AsyncServer
    relays: RelayFilter = field(default_factory=RelayFilter)
    # Takes the provider's ack of a `sync-step-1`: the update the room lacks.
    on_sync_reply: Callable[..., Awaitable[None]] | None = None

    @property
    def id(self) -> str:
        return self.sid

    async def send_update(self, document_id: str, update: bytes) -> None:
        await self.emit("sync-update", update)

    async def send_awareness(self, document_id: str, awareness_update: bytes) -> None:
        self.relays.note_sent(awareness_update)
        await self.emit("awareness-update", awareness_update)

    async def send_level(self, document_id: str, level: Level | None) -> None:
        # y-socket.io has no message for a changed level; the room enforces it.
        if level is None:
            await self.disconnect()

    async def send_sync_request(self, document_id: str, state_vector: bytes) -> None:
        await self.emit("sync-step-1", state_vector, callback=self.on_sync_reply)

    async def send_notice(self, document_id: str, notice: Mapping[str, Any]) -> None:
        """y-socket.io has no message for a notice (docs/protocol.md): dropped."""

    async def emit(
        self, event: str, payload: bytes, callback: Callable[..., Awaitable[None]] | None = None
    ) -> None:
        # Local delivery only, as on /collab: documents cross nodes through the collab relay.
        await self.sio.emit(
            event,
            payload,
            to=self.sid,
            namespace=self.namespace,
            callback=callback,
            ignore_queue=True,
        )

    async def disconnect(self) -> None:
        """Leave the namespace for good (the provider does not reconnect)."""
        await self.sio.disconnect(self.sid, namespace=self.namespace, ignore_queue=True)

    async def drop(self) -> None:
        """Close the whole Engine.IO connection: the provider reconnects and resyncs."""
        eio_sid = self.sio.manager.eio_sid_from_sid(self.sid, self.namespace)
        if eio_sid is not None:
            await self.sio.eio.disconnect(eio_sid)


@dataclass(eq=False)
class _Seat:
    peer: YjsPeer
    room: DocumentRoom
    rate: MessageRate
    token: str = ""
    ip: str | None = None
    agent: str | None = None
    task: asyncio.Task[None] | None = None
    eio_sid: str | None = None


def _refusal(exc: CMSError) -> socketio.exceptions.ConnectionRefusedError:
    """A connect_error whose message is the error code, with `{code, message}` as data."""
    return socketio.exceptions.ConnectionRefusedError(
        exc.code, {"code": exc.code, "message": exc.message}
    )


def _token(auth: Any, request: web.Request | None) -> str:
    """The handshake's `auth.token`, else a bearer header or the session cookie; "" if none."""
    if isinstance(auth, dict) and isinstance(auth.get("token"), str):
        return str(auth["token"])
    return (bearer_token(request)[0] if request is not None else None) or ""


class YjsNamespaces(socketio.AsyncNamespace):
    """The catch-all namespace handler: `/yjs|<document_id>` seats, other namespaces refused."""

    def __init__(self, app: web.Application) -> None:
        super().__init__("*")
        self.app = app
        self.seats: dict[str, _Seat] = {}
        # Namespaces being admitted, per Engine.IO connection (they count against its cap).
        self._opening: collections.Counter[str | None] = collections.Counter()
        self.handlers: dict[str, Handler] = {
            "sync-step-1": self._sync_step1,
            "sync-update": self._sync_update,
            "awareness-update": self._awareness,
        }

    async def trigger_event(self, event: str, *args: Any) -> Any:
        """Route connect/disconnect and the y-socket.io events; others are ignored."""
        if event == "connect":
            return await self._connect(*args)
        namespace, sid, *data = args
        if event == "disconnect":
            return await self._disconnect(sid)
        seat, handler = self.seats.get(sid), self.handlers.get(event)
        if seat is None or handler is None:
            log.debug("ignored event %r on %s", event, namespace)
            return None
        if not seat.rate.allow():
            return await self._refused(seat, event, RateLimited("Slow down", code="rate_limited"))
        return await self._guarded(seat, event, handler, data[0] if data else None)

    async def _connect(
        self, namespace: str, sid: str, environ: dict[str, Any], auth: Any = None
    ) -> None:
        request: web.Request | None = environ.get("aiohttp.request")
        ip = client_ip(request) if request is not None else None
        agent = request.headers.get("User-Agent") if request is not None else None
        token = _token(auth, request)
        try:
            seat = await self._seat(namespace, sid, token, ip, agent)
        except CMSError as exc:
            raise _refusal(exc) from exc
        except Exception as exc:
            log.exception("connecting to %s failed", namespace)
            raise _refusal(CMSError("The server failed; the error was logged")) from exc
        seat.token, seat.ip, seat.agent = token, ip, agent
        self.seats[sid] = seat
        seat.task = asyncio.create_task(self._run(seat))

    async def _seat(
        self, namespace: str, sid: str, token: str, ip: str | None, agent: str | None
    ) -> _Seat:
        """Admit the caller to the namespace's document and seat them in its room."""
        if not namespace.startswith(PREFIX):
            raise NotFound("No such namespace", code="unknown_namespace")
        document_id = namespace.removeprefix(PREFIX)
        settings = self.app[keys.SETTINGS]
        # One Engine.IO connection carries many namespaces: the same per-connection cap
        # as `/collab` (the per-user one is the room manager's, across transports).
        eio_sid = self.server.manager.eio_sid_from_sid(sid, namespace)
        held = sum(seat.eio_sid == eio_sid for seat in self.seats.values())
        if held + self._opening[eio_sid] >= settings.collab_max_documents:
            raise Invalid("Too many open documents on this connection", code="too_many_documents")
        self._opening[eio_sid] += 1
        try:
            principal, level = await admit(self.app, document_id, token, ip=ip, user_agent=agent)
            peer = YjsPeer(sid, namespace, principal, self.server)
            room = await self.app[keys.ROOMS].join(document_id, peer, level)
            await self.app[keys.PRESENCE].joined(document_id, peer)
        finally:
            self._opening[eio_sid] -= 1
            if not self._opening[eio_sid]:
                del self._opening[eio_sid]
        seat = _Seat(peer, room, MessageRate(settings.collab_max_messages_per_second))
        seat.eio_sid = eio_sid
        return seat

    async def _run(self, seat: _Seat) -> None:
        """Start the sync as y-socket.io's server does once connected; then keep re-checking.

        This task starts once the connect handler has returned, so it emits after CONNECT.
        """
        peer, room = seat.peer, seat.room
        try:
            peer.on_sync_reply = functools.partial(self._sync_step2, seat)
            await peer.send_sync_request(room.document_id, room.state_vector())
            await peer.send_awareness(room.document_id, room.awareness_snapshot())
            while True:
                await asyncio.sleep(next_recheck_in())
                # A client gone while its connect was handled never gets a disconnect event.
                if not self.server.manager.is_connected(peer.sid, peer.namespace):
                    break
                if await self._recheck(seat):
                    break
        except Exception:
            log.exception("seat %s on %s failed", peer.sid, room.document_id)
        await peer.disconnect()
        await self._disconnect(peer.sid)

    async def _recheck(self, seat: _Seat) -> bool:
        """Re-check the seat's session and level now; whether it has ended."""
        end = await recheck_seat(
            self.app, seat.room, seat.peer, token=seat.token, ip=seat.ip, user_agent=seat.agent
        )
        return end is not None

    async def recheck_connections(self, user_id: int | None, session_id: str | None) -> None:
        """Re-check now the seats an access change concerns (`AccessWatch`)."""
        for seat in list(self.seats.values()):
            principal = seat.peer.principal
            concerned = matches(
                user_id, session_id, of_user=principal.user_id, of_session=principal.session_id
            )
            if concerned and await self._recheck(seat):
                await seat.peer.disconnect()
                await self._disconnect(seat.peer.sid)

    async def _disconnect(self, sid: str) -> None:
        seat = self.seats.pop(sid, None)
        if seat is None:
            return
        # Revocation disconnects from within the seat's own task, which must not cancel itself.
        if seat.task is not None and seat.task is not asyncio.current_task():
            seat.task.cancel()
        await self.app[keys.ROOMS].leave(seat.room.document_id, seat.peer)

    async def _guarded(self, seat: _Seat, event: str, handler: Handler, payload: Any) -> Any:
        """Run an event's handler; a refusal or failure drops the connection (logged)."""
        try:
            if not isinstance(payload, bytes):
                raise Invalid(f"`{event}` takes one binary argument", code="invalid_payload")
            return await handler(seat, payload)
        except CMSError as exc:
            return await self._refused(seat, event, exc)
        except Exception:
            log.exception("%s from %s on %s failed", event, seat.peer.sid, seat.room.document_id)
            await seat.peer.drop()
            return None

    async def _refused(self, seat: _Seat, event: str, exc: CMSError) -> None:
        log.info(
            "dropping %s on %s: %s refused (%s)",
            seat.peer.sid,
            seat.room.document_id,
            event,
            exc.code,
        )
        await seat.peer.drop()

    async def _sync_step1(self, seat: _Seat, state_vector: bytes) -> bytes:
        return seat.room.sync_step1_reply(state_vector)

    async def _sync_update(self, seat: _Seat, update: bytes) -> None:
        await apply_or_drop(seat.room, seat.peer, update)

    async def _awareness(self, seat: _Seat, awareness_update: bytes) -> None:
        limit = self.app[keys.SETTINGS].collab_max_awareness_bytes
        own = seat.peer.relays.own_news(awareness_update, max_state_bytes=limit)
        if own is not None:
            await seat.room.apply_awareness(seat.peer, own)

    async def _sync_step2(self, seat: _Seat, *args: Any) -> None:
        """The client's ack to the server's sync-step-1: the update the server lacks."""
        if self.seats.get(seat.peer.sid) is seat:
            await self._guarded(
                seat, "sync-step-1 ack", self._sync_update, args[0] if args else None
            )


def setup(app: web.Application, sio: socketio.AsyncServer) -> None:
    """Serve every `/yjs|<document_id>` namespace (the server must accept namespaces="*")."""
    namespaces = YjsNamespaces(app)
    sio.register_namespace(namespaces)
    app[ACCESS_WATCH].register(namespaces.recheck_connections)
