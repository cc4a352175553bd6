"""Socket.IO namespace `/collab`: one connection, many live documents (see docs/protocol.md).

Every event is acknowledged with `{"ok": true, ...}` or `{"ok": false, "error": {"code",
"message"}}`. Access is checked on join and the room checks the seat's level on every
update; the session behind the connection is re-validated at least every few seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import socketio
from aiohttp import web

from handlers import keys
from handlers.access_watch import ACCESS_WATCH, matches
from handlers.auth_context import bearer_token
from handlers.collab_seat import (
    REVALIDATE_SECONDS,
    MessageRate,
    level_for,
    recheck_level,
    recheck_principal,
    resolve_token,
)
from handlers.socket_server import SocketServer
from handlers.socket_transport import FramePacket
from realtime_cms.background import PeriodicTask
from realtime_cms.collab.access import Level, can_write, content_item_id
from realtime_cms.collab.manager import RoomManager
from realtime_cms.collab.room import DocumentRoom
from realtime_cms.db import transaction
from realtime_cms.errors import (
    CMSError,
    Forbidden,
    Invalid,
    NotFound,
    RateLimited,
    Unauthorized,
    Unavailable,
)
from realtime_cms.principal import Principal
from realtime_cms.versions import reads as version_reads
from realtime_cms.versions import service as versions

log = logging.getLogger(__name__)

NAMESPACE = "/collab"
# The Engine.IO path of the msgpack-framed server (the default one is `socket.io`).
MSGPACK_PATH = "socket.io-msgpack"
EMPTY_STATE_VECTOR = b"\x00"
MAX_NOTES = 10_000


class EventEncoder:
    """Encodes an event once for all the peers a room sends it to: the room hands every
    peer the same bytes object, so the last encoding is reused while the bytes are the same."""

    def __init__(self, sio: SocketServer) -> None:
        self.sio = sio
        self._last: tuple[str, str, bytes, list[FramePacket]] | None = None

    def packets(self, event: str, document_id: str, update: bytes) -> list[FramePacket]:
        last = self._last
        if last is not None and last[2] is update and last[0] == event and last[1] == document_id:
            return last[3]
        payload = {"document": document_id, "update": update}
        packets = self.sio.event_packets(NAMESPACE, event, payload)
        self._last = (event, document_id, update, packets)
        return packets


@dataclass(eq=False)
class SocketPeer:
    """A Socket.IO connection seated in rooms; sends only queue on its Engine.IO socket.

    Delivery is local only: documents cross nodes through the collab relay, not through
    Socket.IO's Redis manager (which would publish every per-peer message to Redis).
    """

    sid: str
    eio_sid: str
    principal: Principal
    token: str
    encoder: EventEncoder
    rate: MessageRate
    rooms: dict[str, DocumentRoom] = field(default_factory=dict)
    checked_at: float = field(default_factory=time.monotonic)
    # While the re-check cannot reach the database: the task retrying it in the background
    # (events meanwhile are answered "store_unavailable" at once, not after a wait each).
    probe: asyncio.Task[None] | None = None

    @property
    def id(self) -> str:
        return self.sid

    async def send_update(self, document_id: str, update: bytes) -> None:
        await self._send(self.encoder.packets("update", document_id, update))

    async def send_awareness(self, document_id: str, awareness_update: bytes) -> None:
        await self._send(self.encoder.packets("awareness", document_id, awareness_update))

    async def send_level(self, document_id: str, level: Level | None) -> None:
        if level is None:
            self.rooms.pop(document_id, None)
        payload = {"document": document_id, "role": level}
        await self._send(self.encoder.sio.event_packets(NAMESPACE, "permission", payload))

    async def send_sync_request(self, document_id: str, state_vector: bytes) -> None:
        payload = {"document": document_id, "state_vector": state_vector}
        await self._send(self.encoder.sio.event_packets(NAMESPACE, "sync", payload))

    async def send_notice(self, document_id: str, notice: Mapping[str, Any]) -> None:
        payload = {**notice, "document": document_id}
        await self._send(self.encoder.sio.event_packets(NAMESPACE, "notice", payload))

    async def _send(self, packets: list[FramePacket]) -> None:
        self.encoder.sio.queue_packets(self.eio_sid, packets)


def ok(**data: Any) -> dict[str, Any]:
    return {"ok": True, **data}


def failure(exc: CMSError) -> dict[str, Any]:
    return {"ok": False, "error": {"code": exc.code, "message": exc.message}}


def _answered(reply: dict[str, Any]) -> asyncio.Future[Any]:
    done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    done.set_result(reply)
    return done


def _ack_once_durable(durable: asyncio.Future[None]) -> asyncio.Future[Any]:
    """The ack of an accepted update: ok once it is committed, the store's error if not."""
    reply: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    def settle(done: asyncio.Future[None]) -> None:
        if done.cancelled():
            reply.set_result(_server_failure())
            return
        error = done.exception()
        if error is None:
            reply.set_result(ok())
        elif isinstance(error, CMSError):
            reply.set_result(failure(error))
        else:
            log.error("an update's commit failed", exc_info=error)
            reply.set_result(_server_failure())

    durable.add_done_callback(settle)
    return reply


def _server_failure() -> dict[str, Any]:
    return failure(CMSError("The server failed; the error was logged"))


def _check_unavailable() -> Unavailable:
    return Unavailable(
        "Your session could not be checked; keep the change and send it again",
        code="store_unavailable",
    )


def _token_from(environ: dict[str, Any], auth: Any) -> str | None:
    if isinstance(auth, dict) and isinstance(auth.get("token"), str):
        return str(auth["token"])
    request: web.Request | None = environ.get("aiohttp.request")
    return bearer_token(request)[0] if request is not None else None


def _field(data: Any, name: str, kind: type) -> Any:
    if not isinstance(data, dict):
        raise Invalid("The event payload must be an object", code="invalid_payload")
    value = data.get(name)
    if not isinstance(value, kind):
        raise Invalid(f"`{name}` must be {kind.__name__}", code="invalid_payload")
    return value


class CollabNamespace(socketio.AsyncNamespace):
    """Live documents over Socket.IO; handlers validate, then hand off to the rooms.

    `update` and `awareness` run in line on the socket's reader (`InlineEvents`): in order,
    without a task each, and an update's ack is sent once it is committed while the next
    event is already being handled.
    """

    inline_events = frozenset({"update", "awareness"})

    def __init__(self, app: web.Application, sio: SocketServer) -> None:
        super().__init__(NAMESPACE)
        self.app = app
        self.peers: dict[str, SocketPeer] = {}
        self.encoder = EventEncoder(sio)

    @property
    def rooms(self) -> RoomManager:
        return self.app[keys.ROOMS]

    async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        token = _token_from(environ, auth)
        principal = await self._resolve(token, environ) if token else None
        if principal is None or token is None:
            message = "Send a valid token in the auth object"
            raise socketio.exceptions.ConnectionRefusedError(
                "unauthorized", {"code": "unauthorized", "message": message}
            )
        rate = MessageRate(self._settings.collab_max_messages_per_second)
        eio_sid = self.server.manager.eio_sid_from_sid(sid, NAMESPACE)
        self.peers[sid] = SocketPeer(sid, eio_sid, principal, token, self.encoder, rate)

    async def on_disconnect(self, sid: str, reason: str | None = None) -> None:
        peer = self.peers.pop(sid, None)
        if peer is not None:
            if peer.probe is not None:
                peer.probe.cancel()
            for document_id in list(peer.rooms):
                await self.rooms.leave(document_id, peer)

    async def trigger_event(self, event: str, *args: Any) -> Any:
        """Route every event through one guard: known event, valid session, rate limit, errors."""
        if event in ("connect", "disconnect"):
            return await super().trigger_event(event, *args)
        sid = args[0]
        handler = getattr(self, f"event_{event}", None)
        deadline = asyncio.get_running_loop().time() + self._settings.collab_ack_deadline_seconds
        try:
            peer = await self._checked_peer(sid, deadline)
            if handler is None:
                raise NotFound(f"Unknown event {event!r}", code="unknown_event")
            return await handler(peer, args[1] if len(args) > 1 else None)
        except CMSError as exc:
            return failure(exc)
        except Exception:
            log.exception("collab event %s failed", event)
            return _server_failure()

    async def inline_event(self, sid: str, event: str, data: Any) -> asyncio.Future[Any]:
        """`update` or `awareness`, handled at once; the future is the ack's payload. The
        ack deadline counts from here, the session re-check included."""
        deadline = asyncio.get_running_loop().time() + self._settings.collab_ack_deadline_seconds
        try:
            peer = await self._checked_peer(sid, deadline)
            room = self._room(peer, data)
            change = _field(data, "update", bytes)
            if event == "update":
                return _ack_once_durable(await room.accept_update(peer, change, deadline=deadline))
            await room.apply_awareness(peer, change)
            return _answered(ok())
        except CMSError as exc:
            return _answered(failure(exc))
        except Exception:
            log.exception("collab event %s failed", event)
            return _answered(_server_failure())

    async def event_join(self, peer: SocketPeer, data: Any) -> dict[str, Any]:
        document_id = _field(data, "document", str)
        vector = data.get("state_vector", b"")
        if not isinstance(vector, bytes):
            raise Invalid("`state_vector` must be bytes", code="invalid_payload")
        if document_id not in peer.rooms and len(peer.rooms) >= self._settings.collab_max_documents:
            raise Invalid("Too many open documents on this connection", code="too_many_documents")
        level = await self._level(peer.principal, document_id)
        if level is None:
            raise Forbidden("No access to this document", code="no_access")
        room = await self.rooms.join(document_id, peer, level)
        peer.rooms[document_id] = room
        await self.app[keys.PRESENCE].joined(document_id, peer)
        return ok(
            role=level,
            update=room.sync_step1_reply(vector or EMPTY_STATE_VECTOR),
            state_vector=room.state_vector(),
            awareness=room.awareness_snapshot(),
        )

    async def event_save_version(self, peer: SocketPeer, data: Any) -> dict[str, Any]:
        """A manual version of a joined `content:<id>` document; needs a write seat."""
        room = self._room(peer, data)
        notes = data.get("notes")
        if notes is not None and (not isinstance(notes, str) or len(notes) > MAX_NOTES):
            raise Invalid(
                f"`notes` must be a string of at most {MAX_NOTES}", code="invalid_payload"
            )
        item_id = content_item_id(room.document_id)
        if item_id is None:
            raise Invalid("Only content documents have versions", code="not_content")
        level = room.level_of(peer.sid)
        if level is None or not can_write(level):
            raise Forbidden("Saving a version needs write access", code="read_only")
        async with transaction(self.app[keys.SESSIONS]) as db:
            version = await versions.save_seated(
                db, peer.principal, self.app[keys.CONTENT], item_id=item_id, notes=notes
            )
            summary = await version_reads.version_summary(db, version)
        return ok(data=summary.model_dump(mode="json"))

    async def event_sync(self, peer: SocketPeer, data: Any) -> dict[str, Any]:
        """What the client lacks given its state vector, and the room's state vector (so it
        sends what the room lacks): a resync without leaving the document. Answered once
        what the room holds is in the log (`store_unavailable` if not within the ack
        deadline), so a client that finds nothing to send knows its changes are saved."""
        room = self._room(peer, data)
        vector = data.get("state_vector", b"")
        if not isinstance(vector, bytes):
            raise Invalid("`state_vector` must be bytes", code="invalid_payload")
        deadline = asyncio.get_running_loop().time() + self._settings.collab_ack_deadline_seconds
        await room.saved_by(deadline)
        return ok(
            update=room.sync_step1_reply(vector or EMPTY_STATE_VECTOR),
            state_vector=room.state_vector(),
        )

    async def event_leave(self, peer: SocketPeer, data: Any) -> dict[str, Any]:
        document_id = _field(data, "document", str)
        if peer.rooms.pop(document_id, None) is not None:
            await self.rooms.leave(document_id, peer)
        return ok()

    @property
    def _settings(self) -> Any:
        return self.app[keys.SETTINGS]

    def _room(self, peer: SocketPeer, data: Any) -> DocumentRoom:
        document_id = _field(data, "document", str)
        room = peer.rooms.get(document_id)
        if room is None or self.rooms.get(document_id) is not room:
            peer.rooms.pop(document_id, None)
            raise Forbidden("Join the document first", code="not_joined")
        return room

    async def _checked_peer(self, sid: str, deadline: float) -> SocketPeer:
        peer = self.peers.get(sid)
        if peer is None:
            raise Unauthorized("Not connected", code="unauthorized")
        if not peer.rate.allow():
            raise RateLimited("Too many messages; slow down", code="rate_limited")
        if time.monotonic() - peer.checked_at >= REVALIDATE_SECONDS:
            if peer.probe is not None:
                raise _check_unavailable()
            try:
                await self._revalidate_patiently(peer, deadline)
            except Unavailable:
                peer.probe = asyncio.create_task(self._probe(peer))
                raise
        return peer

    async def _probe(self, peer: SocketPeer) -> None:
        """Retry a failed re-check in the background, with backoff, until it works (or
        the session turns out ended: the connection is closed) or the peer is gone."""
        delay = 0.2
        try:
            while self.peers.get(peer.sid) is peer:
                await asyncio.sleep(delay)
                try:
                    async with asyncio.timeout(REVALIDATE_SECONDS):
                        await self._revalidate(peer)
                    return
                except Unauthorized:
                    return
                except Exception as exc:  # noqa: BLE001 - the database is still unreachable
                    log.debug("re-checking %s failed again: %r", peer.sid, exc)
                    delay = min(2 * delay, 2.0)
        finally:
            peer.probe = None

    async def _revalidate_patiently(self, peer: SocketPeer, deadline: float) -> None:
        """`_revalidate`, retried while the database fails, until `deadline`: a transient
        failure is not a refusal of the message (Unavailable "store_unavailable" once the
        deadline passes: the client keeps its edit and sends it again)."""
        loop = asyncio.get_running_loop()
        delay = 0.05
        while True:
            try:
                async with asyncio.timeout_at(deadline):
                    await self._revalidate(peer)
                return
            except CMSError:
                raise
            except Exception as exc:
                if loop.time() + delay < deadline:
                    await asyncio.sleep(delay)
                    delay = min(2 * delay, 1.0)
                    continue
                log.warning("re-checking %s's session failed until the deadline: %r", peer.sid, exc)
                raise _check_unavailable() from exc

    async def sweep(self) -> None:
        """Re-check every connection not checked for REVALIDATE_SECONDS, idle ones too: a
        connection that only listens must lose a revoked user's live updates as well."""
        now = time.monotonic()
        for peer in list(self.peers.values()):
            if now - peer.checked_at >= REVALIDATE_SECONDS:
                await self._recheck_quietly(peer)

    async def recheck_connections(self, user_id: int | None, session_id: str | None) -> None:
        """Re-check now the connections an access change concerns (`AccessWatch`)."""
        for peer in list(self.peers.values()):
            principal = peer.principal
            if matches(
                user_id, session_id, of_user=principal.user_id, of_session=principal.session_id
            ):
                await self._recheck_quietly(peer)

    async def _recheck_quietly(self, peer: SocketPeer) -> None:
        """A re-check outside any event: an ended session disconnects; a failed check (the
        database is down) is logged and the connection is served until one works."""
        try:
            async with asyncio.timeout(REVALIDATE_SECONDS):
                await self._revalidate(peer)
        except Unauthorized:
            pass  # disconnected
        except Exception as exc:
            log.warning("re-checking %s failed; checking again later: %r", peer.sid, exc)

    async def _revalidate(self, peer: SocketPeer) -> None:
        """Re-check the session and every seat's level (roles may have changed meanwhile)."""
        principal = await recheck_principal(self.app, peer.token, peer.principal.ip, None)
        if principal is None:
            await self.server.disconnect(peer.sid, namespace=NAMESPACE)
            raise Unauthorized("The session ended", code="session_ended")
        peer.principal, peer.checked_at = principal, time.monotonic()
        for document_id, room in list(peer.rooms.items()):
            level = await recheck_level(self.app, peer.token, principal, document_id)
            if level != room.level_of(peer.sid):
                await room.set_level(peer.sid, level)

    async def _resolve(self, token: str, environ: dict[str, Any]) -> Principal | None:
        request: web.Request | None = environ.get("aiohttp.request")
        ip = request.remote if request is not None else None
        return await resolve_token(self.app, token, ip, None)

    async def _level(self, principal: Principal, document_id: str) -> Level | None:
        return await level_for(self.app, principal, document_id)


class _Sweep(PeriodicTask):
    """Re-checks a namespace's idle connections, every half interval."""

    name = "collab-sweep"

    def __init__(self, namespace: CollabNamespace) -> None:
        super().__init__(interval_seconds=REVALIDATE_SECONDS / 2)
        self.namespace = namespace

    async def run_once(self) -> None:
        await self.namespace.sweep()


def setup(app: web.Application, sio: SocketServer) -> None:
    namespace = CollabNamespace(app, sio)
    sio.register_namespace(namespace)
    app[ACCESS_WATCH].register(namespace.recheck_connections)
    sweeps = contextlib.AsyncExitStack()

    async def start(app: web.Application) -> None:
        await sweeps.enter_async_context(_Sweep(namespace))

    async def stop(app: web.Application) -> None:
        await sweeps.aclose()

    app.on_startup.append(start)
    app.on_shutdown.append(stop)
