"""Engine.IO's WebSocket transport and client monitor, rewritten for the hot path.

python-engineio's own WebSocket loop starts a task for every frame it reads (and a
`wait_for` timer around it), wakes its writer through another `wait_for` (a task per wake in
Python 3.11) and re-encodes every queued packet for every socket. Here, on the same
`AsyncSocket` state (queue, flags, ping bookkeeping) and the same protocol:

- the reader awaits the next frame with aiohttp's own receive timeout and hands each packet
  to the socket in line, in the order it came;
- the writer waits on the socket's queue and writes each frame straight to aiohttp;
- a packet encodes once however many sockets it goes to (`FramePacket`), and is written
  straight to each socket whose writer is idle (`EngineServer.lines`, see `ws_frames`);
- the client monitor checks every socket once per pass, instead of sleeping between sockets
  (with 10,000 connections that was a timer every 2 ms);
- packets a client never sends (OPEN, PING, NOOP, UPGRADE after the upgrade, unknown types)
  are refused as malformed (`socket_junk`) instead of failing in the socket's handler.

Ping timeouts, the polling-to-WebSocket upgrade and close reasons behave as in Engine.IO.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import engineio
from aiohttp import WSMsgType
from aiohttp.web import WebSocketResponse
from engineio import exceptions as eio_exceptions
from engineio import packet as eio_packet
from engineio.async_drivers import aiohttp as engineio_aiohttp
from engineio.async_socket import AsyncSocket

from handlers import ws_frames
from handlers.socket_junk import JunkLedger

log = logging.getLogger(__name__)

# How many sockets the client monitor checks before letting other work run.
MONITOR_SLICE = 500
# What a client sends over an open WebSocket: the probe and UPGRADE come before (`_upgrade`).
_CLIENT_PACKETS = frozenset({eio_packet.CLOSE, eio_packet.PONG, eio_packet.MESSAGE})


class FramePacket(eio_packet.Packet):
    """An Engine.IO packet that remembers its encoding: one broadcast goes to many sockets,
    and each asks for the packet (queued) or its WebSocket frame (written directly)."""

    _frame: str | bytes | None = None
    _wire: bytes | None = None

    def encode(self, b64: bool = False) -> Any:
        if b64:
            return super().encode(b64=True)
        if self._frame is None:
            self._frame = super().encode()
        return self._frame

    def wire(self) -> bytes:
        """The packet as one WebSocket frame."""
        if self._wire is None:
            self._wire = ws_frames.frame(self.encode())
        return self._wire


class EngineServer(engineio.AsyncServer):
    """python-engineio's server with a client monitor that does one pass over all sockets
    per interval, the direct line of each socket served over a WebSocket, and the tally of
    malformed packets (`refuse`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lines: dict[str, ws_frames.DirectLine] = {}
        self.junk = JunkLedger()

    async def refuse(self, sid: str, what: str) -> None:
        """Drop a malformed packet from socket `sid`; close the socket once they persist."""
        if not self.junk.note(sid, what):
            return
        sock = self.sockets.get(sid)
        if sock is not None and not sock.closing:
            log.info("%s: closing an Engine.IO socket that keeps sending malformed packets", sid)
            # Not aborted: the client gets a CLOSE packet, so it does not reconnect at once.
            await sock.close(wait=False, reason=self.reason.TRANSPORT_ERROR)

    async def _service_task(self) -> None:  # pragma: no cover - runs for the server's life
        self.service_task_event = self.create_event()
        interval = max(self.ping_timeout / 4, 0.5)
        while not self.service_task_event.is_set():
            try:
                await asyncio.wait_for(self.service_task_event.wait(), timeout=interval)
                break
            except TimeoutError:
                pass
            try:
                await self._check_sockets()
            except asyncio.CancelledError:
                break
            except Exception:
                log.exception("the Engine.IO client monitor failed; it carries on")

    async def _check_sockets(self) -> None:
        for index, sock in enumerate(list(self.sockets.values())):
            if sock.closed:
                self.sockets.pop(sock.sid, None)
            elif not sock.closing:
                await sock.check_ping_timeout()
            if index % MONITOR_SLICE == MONITOR_SLICE - 1:
                await asyncio.sleep(0)
        self.junk.prune(self.sockets)


class WebSocketTransport(engineio_aiohttp.WebSocket):
    """Engine.IO's aiohttp WebSocket, uncompressed and served by `serve` below.

    No permessage-deflate: deflating every small CRDT frame costs both ends more CPU than
    it saves bytes; Node's `ws` server (y-websocket, Hocuspocus) does not compress either.
    """

    async def __call__(self, environ: dict[str, Any]) -> WebSocketResponse:
        request = environ["aiohttp.request"]
        self._sock = WebSocketResponse(
            max_msg_size=self.server.max_http_buffer_size, compress=False
        )
        await self._sock.prepare(request)
        self.environ = environ
        socket = getattr(self.handler, "__self__", None)
        if isinstance(socket, AsyncSocket):
            await serve(socket, self._sock, request.transport)
        else:  # pragma: no cover - Engine.IO hands its socket's bound handler
            await self.handler(self)
        return self._sock


async def serve(
    sock: AsyncSocket, ws: WebSocketResponse, transport: asyncio.BaseTransport | None
) -> None:
    """Run one Engine.IO socket over an open WebSocket until either side closes it."""
    server = sock.server
    silence = server.ping_interval + server.ping_timeout
    if sock.connected:
        # Upgrading from long-polling: the probe, then the UPGRADE packet.
        sock.upgrading = True
        upgraded = await _upgrade(sock, ws, silence)
        sock.upgrading = False
        if not upgraded:
            return
    else:
        sock.connected = True
    sock.upgraded = True
    line = ws_frames.DirectLine(ws, transport, sock.queue)
    lines: dict[str, ws_frames.DirectLine] = server.lines
    lines[sock.sid] = line
    writer = asyncio.ensure_future(_write(sock, ws, line))
    try:
        await _read(sock, ws, silence)
    finally:
        # aiohttp cancels the handler when the client goes: the socket must still close
        # (the disconnect handlers run), so that part runs to its end regardless.
        lines.pop(sock.sid, None)
        line.close()
        await asyncio.shield(_finish(sock, writer))


async def _finish(sock: AsyncSocket, writer: asyncio.Future[None]) -> None:
    sock.queue.put_nowait(None)  # the writer stops at this mark
    await writer
    await sock.close(wait=False, abort=True, reason=sock.server.reason.TRANSPORT_CLOSE)


async def _next_frame(ws: WebSocketResponse, silence: float, limit: int) -> str | bytes | None:
    """The next text or binary frame; None once the connection is closed, broken, silent for
    longer than the ping timeout allows, or over the size limit."""
    try:
        msg = await ws.receive(timeout=silence)
    except (TimeoutError, RuntimeError, ConnectionError):
        return None
    if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
        return None
    data: str | bytes = msg.data
    if len(data) > limit:
        log.info("closing an Engine.IO socket: a %d-byte frame is over the limit", len(data))
        return None
    return data


async def _read(sock: AsyncSocket, ws: WebSocketResponse, silence: float) -> None:
    server: EngineServer = sock.server
    limit = server.max_http_buffer_size
    while not sock.closed:
        data = await _next_frame(ws, silence, limit)
        if data is None:
            return
        try:
            pkt = eio_packet.Packet(encoded_packet=data)
        except Exception:
            # Not Engine.IO at all: closed at once, as Engine.IO's own servers do.
            server.junk.note(sock.sid, "a frame that is not an Engine.IO packet")
            return
        if pkt.packet_type not in _CLIENT_PACKETS:
            await server.refuse(sock.sid, "an Engine.IO packet type clients do not send")
            continue
        try:
            await sock.receive(pkt)
        except eio_exceptions.SocketIsClosedError:
            return
        except Exception:
            # As Engine.IO does: a handler's failure is logged, the connection stays.
            log.exception("an Engine.IO packet failed")


async def _write(sock: AsyncSocket, ws: WebSocketResponse, line: ws_frames.DirectLine) -> None:
    queue = sock.queue
    try:
        while True:
            pkt = await queue.get()
            queue.task_done()
            if pkt is None:
                return
            line.busy = True
            frame = pkt.encode()
            if isinstance(frame, bytes):
                await ws.send_bytes(frame)
            else:
                await ws.send_str(frame)
            line.busy = False
    except Exception:
        return
    finally:
        line.close()
        await ws.close()


async def _upgrade(sock: AsyncSocket, ws: WebSocketResponse, silence: float) -> bool:
    """The client probes the WebSocket while still polling, then switches to it."""
    limit = sock.server.max_http_buffer_size
    probe = await _next_frame(ws, silence, limit)
    if probe is None or not _is(probe, eio_packet.PING, "probe"):
        log.info("%s: failed WebSocket upgrade, no probe", sock.sid)
        return False
    await ws.send_str(eio_packet.Packet(eio_packet.PONG, data="probe").encode())
    sock.queue.put_nowait(eio_packet.Packet(eio_packet.NOOP))  # ends the pending poll
    confirm = await _next_frame(ws, silence, limit)
    if confirm is None or not _is(confirm, eio_packet.UPGRADE):
        log.info("%s: failed WebSocket upgrade, no UPGRADE packet", sock.sid)
        return False
    return True


def _is(frame: str | bytes, packet_type: int, data: str | None = None) -> bool:
    try:
        pkt = eio_packet.Packet(encoded_packet=frame)
    except Exception:
        return False
    return pkt.packet_type == packet_type and (data is None or pkt.data == data)
