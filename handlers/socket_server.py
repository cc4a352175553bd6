"""The Socket.IO server: python-socketio's, refusing client events with reserved names,
without WebSocket compression, and able to send one encoded event to many sockets."""

from __future__ import annotations

import logging
from typing import Any

import socketio
from aiohttp.web import WebSocketResponse
from engineio import packet as eio_packet
from engineio.async_drivers import aiohttp as engineio_aiohttp
from socketio import packet

log = logging.getLogger(__name__)


class SocketServer(socketio.AsyncServer):
    """An `AsyncServer` that refuses client events named like its own lifecycle events.

    python-socketio hands a client's event called `connect` or `disconnect` to the same
    handlers as the real ones, so a client could make a namespace forget its seats while
    the socket stays open. Such events never reach a namespace here: they are answered with
    an error ack (`unknown_event`) when the client asked for one.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # A copy: the driver's table is shared by every Engine.IO server in the process.
        self.eio._async = {**self.eio._async, "websocket": _UncompressedWebSocket}

    def event_packets(self, namespace: str, event: str, data: Any) -> list[eio_packet.Packet]:
        """An event without an ack, encoded once as the Engine.IO packets to send (a binary
        payload adds one packet per attachment), for `send_packets` to any number of sockets."""
        encoded = self.packet_class(packet.EVENT, namespace=namespace, data=[event, data]).encode()
        frames = encoded if isinstance(encoded, list) else [encoded]
        return [eio_packet.Packet(eio_packet.MESSAGE, frame) for frame in frames]

    async def send_packets(self, eio_sid: str, packets: list[eio_packet.Packet]) -> None:
        """Queue encoded packets on one socket (local delivery; no task per packet)."""
        for eio_pkt in packets:
            await self.eio.send_packet(eio_sid, eio_pkt)

    async def _handle_event(self, eio_sid: str, namespace: str | None, id: Any, data: Any) -> None:
        if isinstance(data, list) and data and data[0] in self.reserved_events:
            log.warning("refused a client event named %r on %s", data[0], namespace or "/")
            if id is not None:
                error = {"code": "unknown_event", "message": f"{data[0]!r} is reserved"}
                reply = self.packet_class(
                    packet.ACK,
                    namespace=namespace or "/",
                    id=id,
                    data=[{"ok": False, "error": error}],
                )
                await self._send_packet(eio_sid, reply)
            return
        await super()._handle_event(eio_sid, namespace, id, data)


class _UncompressedWebSocket(engineio_aiohttp.WebSocket):
    """Engine.IO's aiohttp WebSocket without permessage-deflate. Deflating every small CRDT
    frame costs both ends more CPU than it saves bytes; Node's `ws` server (y-websocket,
    Hocuspocus) does not compress by default either."""

    async def __call__(self, environ: dict[str, Any]) -> WebSocketResponse:
        request = environ["aiohttp.request"]
        self._sock = WebSocketResponse(
            max_msg_size=self.server.max_http_buffer_size, compress=False
        )
        await self._sock.prepare(request)
        self.environ = environ
        await self.handler(self)
        return self._sock
