"""y-websocket compatible raw WebSocket `GET /ws/{document_id}` (the `y-websocket` provider).

One connection is one seat in one document's room, speaking y-protocols frames (see
docs/protocol.md, "Transport 3"). Access is checked before the upgrade (HTTP 401/403); once
open, the seat is re-checked every few seconds and a revoked one gets `auth_denied` and a
44xx close. Frames to the client wait in a bounded queue drained by a writer task, so the
room never waits on this socket; a client that falls too far behind is closed.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from aiohttp import WSCloseCode, WSMsgType, web

from handlers import keys, ws_frames, ws_tickets
from handlers.access_watch import ACCESS_WATCH, matches
from handlers.auth_context import client_ip, origin_allowed
from handlers.collab_seat import (
    MessageRate,
    RelayFilter,
    SeatEnd,
    accept_or_drop,
    admit,
    next_recheck_in,
    recheck_seat,
)
from realtime_cms.collab.access import Level
from realtime_cms.collab.protocol import (
    MESSAGE_AWARENESS,
    MESSAGE_QUERY_AWARENESS,
    MESSAGE_SYNC,
    SYNC_STEP1,
    ProtocolError,
    auth_denied,
    awareness_message,
    decode_message,
    sync_step1,
    sync_step2,
    sync_update,
)
from realtime_cms.collab.room import DocumentRoom
from realtime_cms.errors import CMSError, Forbidden, Invalid
from realtime_cms.principal import Principal

log = logging.getLogger(__name__)

ROUTE = "/ws/{document_id}"
# Frames queued for one client before it counts as too slow and is closed.
OUTBOX_FRAMES = 1024
# Room for the message type, sync type and length prefix around a full-size update.
FRAME_OVERHEAD = 16
# Ping interval; a client that misses a pong for half of it is dropped and its seat freed.
HEARTBEAT_SECONDS = 30.0
# Bound on the closing handshake with a client that stopped reading.
CLOSE_TIMEOUT_SECONDS = 5.0
# Private-use close codes (RFC 6455: 4000-4999), after HTTP 401 and 403.
SESSION_ENDED = 4401
ACCESS_REVOKED = 4403

# The close code of each refusal; other client errors close with 1008, server errors with 1011.
_CLOSE_CODES: dict[str, int] = {
    "unknown_message": WSCloseCode.UNSUPPORTED_DATA,
    "malformed_frame": WSCloseCode.INVALID_TEXT,
    "invalid_awareness": WSCloseCode.INVALID_TEXT,
    "invalid_update": WSCloseCode.INVALID_TEXT,
    "invalid_state_vector": WSCloseCode.INVALID_TEXT,
    "too_large": WSCloseCode.MESSAGE_TOO_BIG,
    "update_too_large": WSCloseCode.MESSAGE_TOO_BIG,
    "awareness_too_large": WSCloseCode.MESSAGE_TOO_BIG,
    "store_failed": WSCloseCode.TRY_AGAIN_LATER,
    "store_unavailable": WSCloseCode.TRY_AGAIN_LATER,
    "missing_dependencies": WSCloseCode.TRY_AGAIN_LATER,
    "too_many_pending": WSCloseCode.TRY_AGAIN_LATER,
    "room_closed": WSCloseCode.TRY_AGAIN_LATER,
}


@dataclass(frozen=True, slots=True)
class Close:
    """How a connection ends: a WebSocket close code and a short reason (an error code)."""

    code: int
    reason: str


# Why a seat ended: the close, and the reason sent first in y-protocols' auth message.
_DENIALS: dict[SeatEnd, tuple[Close, str]] = {
    "session_ended": (Close(SESSION_ENDED, "session_ended"), "Your session ended"),
    "access_revoked": (Close(ACCESS_REVOKED, "access_revoked"), "Access was revoked"),
}
_PEERS: web.AppKey[set[WebSocketPeer]] = web.AppKey("ywebsocket_peers")
_SEATS: web.AppKey[dict[WebSocketPeer, tuple[_Seat, DocumentRoom]]] = web.AppKey("ywebsocket_seats")


class _LastFrame:
    """The message and wire frame of the last update sent: a room hands every peer the
    same bytes object, so a broadcast encodes once whatever the room's size."""

    def __init__(self) -> None:
        self._update: bytes | None = None
        self._message = self._wire = b""

    def frames(self, update: bytes) -> tuple[bytes, bytes]:
        if update is not self._update:
            self._message = sync_update(update)
            self._update, self._wire = update, ws_frames.frame(self._message)
        return self._message, self._wire


_update_frames = _LastFrame()


@dataclass(eq=False)
class WebSocketPeer:
    """A y-websocket connection seated in one room; its frames wait in a bounded outbox.

    Sends never wait: a frame is written at once when nothing is queued before it and the
    client keeps up (`line`), and queued for the connection's writer task otherwise. The
    first close asked for wins: frames queued before it are still sent (unless the client
    was too slow to get them), later ones are dropped.
    """

    principal: Principal
    limit: int = OUTBOX_FRAMES
    id: str = field(default_factory=lambda: f"ws-{secrets.token_hex(8)}")
    closing: Close | None = None
    relays: RelayFilter = field(default_factory=RelayFilter)
    line: ws_frames.DirectLine = field(default_factory=ws_frames.DirectLine)
    outbox: asyncio.Queue[bytes | Close] = field(init=False)

    def __post_init__(self) -> None:
        # One slot beyond the limit is kept for the close marker.
        self.outbox = asyncio.Queue(self.limit + 1)

    async def send_update(self, document_id: str, update: bytes) -> None:
        self.push(*_update_frames.frames(update))

    async def send_awareness(self, document_id: str, awareness_update: bytes) -> None:
        self.push_awareness(awareness_update)

    async def send_level(self, document_id: str, level: Level | None) -> None:
        # y-protocols has no message for a changed level; the room enforces it.
        if level is None:
            self.deny("access_revoked")

    async def send_sync_request(self, document_id: str, state_vector: bytes) -> None:
        # The provider answers a sync step 1 with a sync step 2: what the room lacks.
        self.push(sync_step1(state_vector))

    async def send_notice(self, document_id: str, notice: Mapping[str, Any]) -> None:
        """y-protocols has no message for a notice (docs/protocol.md): dropped."""

    def push(self, frame: bytes, wire: bytes | None = None) -> None:
        """Send or queue a frame (`wire`: it framed already); a client already `limit`
        frames behind is closed with 1013."""
        if self.closing is not None:
            return
        if self.line.ready():
            self.line.write(ws_frames.frame(frame) if wire is None else wire)
            return
        if self.outbox.qsize() >= self.limit:
            log.warning("closing slow WebSocket client %s (%d frames queued)", self.id, self.limit)
            self.close(Close(WSCloseCode.TRY_AGAIN_LATER, "slow_consumer"), flush=False)
            return
        self.outbox.put_nowait(frame)

    def push_awareness(self, awareness_update: bytes) -> None:
        """Queue a room's awareness update, noting its clocks to recognise relayed copies."""
        self.relays.note_sent(awareness_update)
        self.push(awareness_message(awareness_update))

    def deny(self, end: SeatEnd) -> None:
        """Send y-protocols' permission-denied message, then close with 4401 or 4403."""
        close, reason = _DENIALS[end]
        self.push(auth_denied(reason))
        self.close(close)

    def close(self, close: Close, *, flush: bool = True) -> None:
        """Close after the frames queued so far (or at once, dropping them); first one wins."""
        if self.closing is not None:
            return
        self.closing = close
        self.line.close()
        while not flush and not self.outbox.empty():
            self.outbox.get_nowait()
        self.outbox.put_nowait(close)


def _close_for(exc: CMSError) -> Close:
    code = _CLOSE_CODES.get(exc.code)
    if code is None:
        code = WSCloseCode.POLICY_VIOLATION if exc.status < 500 else WSCloseCode.INTERNAL_ERROR
    return Close(code, exc.code)


async def _write(ws: web.WebSocketResponse, peer: WebSocketPeer) -> None:
    """Send the peer's frames in order until its close marker, then close the socket."""
    line = peer.line
    try:
        while not isinstance(item := await peer.outbox.get(), Close):
            line.busy = True
            await ws.send_bytes(item)
            line.busy = False
        await asyncio.wait_for(
            ws.close(code=item.code, message=item.reason.encode()), CLOSE_TIMEOUT_SECONDS
        )
    except (ConnectionError, TimeoutError):
        # The client is gone, or stopped reading while closing (aiohttp then drops it).
        pass


class _Seat:
    """One open connection: reads frames into the room while its writer task sends."""

    def __init__(
        self, request: web.Request, ws: web.WebSocketResponse, peer: WebSocketPeer, token: str
    ) -> None:
        self.app = request.app
        self.ws, self.peer, self.token = ws, peer, token
        self.ip, self.user_agent = client_ip(request), request.headers.get("User-Agent")
        settings = self.app[keys.SETTINGS]
        self.max_update_bytes = settings.collab_max_update_bytes
        self.max_awareness_bytes = settings.collab_max_awareness_bytes
        self.rate = MessageRate(settings.collab_max_messages_per_second)

    async def run(self, room: DocumentRoom) -> None:
        """Serve the client until either side closes; the caller leaves the room after."""
        writer = asyncio.create_task(_write(self.ws, self.peer))
        watcher = asyncio.create_task(self._watch(room))
        self.app[_PEERS].add(self.peer)
        self.app[_SEATS][self.peer] = (self, room)
        try:
            async for message in self.ws:
                if message.type is WSMsgType.BINARY:
                    await self._receive(room, message.data)
                elif message.type is WSMsgType.TEXT:
                    self.peer.close(Close(WSCloseCode.UNSUPPORTED_DATA, "binary_frames_only"))
        finally:
            self.app[_PEERS].discard(self.peer)
            self.app[_SEATS].pop(self.peer, None)
            watcher.cancel()
            self.peer.close(Close(WSCloseCode.OK, ""))
            try:
                await writer
            except asyncio.CancelledError:
                writer.cancel()
                raise

    async def _receive(self, room: DocumentRoom, frame: bytes) -> None:
        """Handle one frame; a refused one closes the connection (frames after it are ignored)."""
        if self.peer.closing is not None:
            return
        if not self.rate.allow():
            self.peer.close(Close(WSCloseCode.POLICY_VIOLATION, "rate_limited"))
            return
        try:
            await self._handle(room, frame)
        except CMSError as exc:
            log.info("closing WebSocket %s on %s: %s", self.peer.id, room.document_id, exc.code)
            self.peer.close(_close_for(exc))
        except Exception:
            log.exception("WebSocket frame from %s on %s failed", self.peer.id, room.document_id)
            self.peer.close(Close(WSCloseCode.INTERNAL_ERROR, "internal_error"))

    async def _handle(self, room: DocumentRoom, frame: bytes) -> None:
        message = decode_message(frame, max_update_bytes=self.max_update_bytes)
        if message.kind == MESSAGE_SYNC and message.sync_type == SYNC_STEP1:
            self.peer.push(sync_step2(room.sync_step1_reply(message.payload)))
        elif message.kind == MESSAGE_SYNC:
            # Frames keep coming while the update is written: y-websocket has no acks. If the
            # commit fails, the room keeps the update as debt and this client is closed
            # (1013), so that it connects again and sends what the server may lack.
            durable = await accept_or_drop(room, self.peer, message.payload)
            if durable is not None:
                durable.add_done_callback(self._on_durable)
        elif message.kind == MESSAGE_AWARENESS:
            limit = self.max_awareness_bytes
            own = self.peer.relays.own_news(message.payload, max_state_bytes=limit)
            if own is not None:
                await room.apply_awareness(self.peer, own)
            # y-websocket's own server echoes awareness to its sender, and the provider
            # reconnects after 30 s without a message: the echo is its keep-alive.
            self.peer.push(frame)
        elif message.kind == MESSAGE_QUERY_AWARENESS:
            self.peer.push_awareness(room.awareness_snapshot())
        else:
            raise ProtocolError("unknown_message", "Only the server sends auth messages")

    def _on_durable(self, durable: asyncio.Future[None]) -> None:
        if not durable.cancelled() and isinstance(durable.exception(), CMSError):
            self.peer.close(_close_for(cast(CMSError, durable.exception())))

    async def _watch(self, room: DocumentRoom) -> None:
        """Re-check the seat every few seconds; deny and close it once it has ended."""
        while self.peer.closing is None:
            await asyncio.sleep(next_recheck_in())
            await self.recheck(room)

    async def recheck(self, room: DocumentRoom) -> None:
        """Re-check the session and level now; deny and close the seat if it has ended."""
        end = await recheck_seat(
            self.app, room, self.peer, token=self.token, ip=self.ip, user_agent=self.user_agent
        )
        if end is not None:
            self.peer.deny(end)


def _check_origin(request: web.Request) -> None:
    """A browser's Origin must be an allowed one or the server's own (no cross-site sockets)."""
    origin = request.headers.get("Origin")
    if origin is not None and not origin_allowed(request, origin):
        raise Forbidden("Cross-origin WebSocket refused", code="origin_refused")


async def websocket(request: web.Request) -> web.StreamResponse:
    """Seat the caller on the document over a WebSocket, or refuse with 400, 401 or 403."""
    _check_origin(request)
    max_msg_size = request.app[keys.SETTINGS].collab_max_update_bytes + FRAME_OVERHEAD
    # No permessage-deflate: deflating every small frame costs more CPU than it saves.
    ws = web.WebSocketResponse(
        max_msg_size=max_msg_size,
        heartbeat=HEARTBEAT_SECONDS,
        compress=False,
        protocols=(ws_tickets.BEARER_PROTOCOL,),
    )
    if not ws.can_prepare(request).ok:
        raise Invalid("Connect with a WebSocket", code="websocket_required")
    document_id = request.match_info["document_id"]
    token = await ws_tickets.presented_token(request, document_id)
    agent = request.headers.get("User-Agent")
    principal, level = await admit(
        request.app, document_id, token, ip=client_ip(request), user_agent=agent
    )
    peer = WebSocketPeer(principal)
    rooms = request.app[keys.ROOMS]
    room = await rooms.join(document_id, peer, level)
    try:
        await request.app[keys.PRESENCE].joined(document_id, peer)
        peer.push(sync_step1(room.state_vector()))
        peer.push_awareness(room.awareness_snapshot())
        await ws.prepare(request)
        peer.line = ws_frames.DirectLine(ws, request.transport, peer.outbox)
        await _Seat(request, ws, peer, token).run(room)
    finally:
        await rooms.leave(document_id, peer)
    return ws


async def _close_all(app: web.Application) -> None:
    # close() only queues a marker; the set shrinks later, as each handler returns.
    for peer in app[_PEERS]:
        peer.close(Close(WSCloseCode.GOING_AWAY, "server_shutdown"))


async def _recheck_connections(
    app: web.Application, user_id: int | None, session_id: str | None
) -> None:
    """Re-check now the seats an access change concerns (`AccessWatch`)."""
    for peer, (seat, room) in list(app[_SEATS].items()):
        principal = peer.principal
        if matches(user_id, session_id, of_user=principal.user_id, of_session=principal.session_id):
            await seat.recheck(room)


def setup(app: web.Application) -> None:
    """Route `/ws/{document_id}` (with its ticket store); open sockets are closed (1001) when
    the server shuts down."""
    ws_tickets.setup(app)
    app[_PEERS] = set()
    app[_SEATS] = {}
    app[ACCESS_WATCH].register(functools.partial(_recheck_connections, app))
    app.router.add_get(ROUTE, websocket)
    app.on_shutdown.append(_close_all)
