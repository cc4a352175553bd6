"""The Socket.IO server: python-socketio's, refusing client events with reserved names, on
the lean WebSocket transport (`socket_transport`), able to send one encoded event to many
sockets, and handling a namespace's hot events in line (`InlineEvents`)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol, cast

import socketio
from engineio import packet as eio_packet
from socketio import packet

from handlers.socket_transport import EngineServer, FramePacket, WebSocketTransport

log = logging.getLogger(__name__)


class InlineEvents(Protocol):
    """A namespace whose `inline_events` run in line on the socket's reader, in arrival
    order, without python-socketio's task per event. `inline_event` must not wait on
    anything slow: it returns a future of the ack's payload (an update's ack waits for its
    commit), and the ack is queued when that future is done."""

    inline_events: frozenset[str]

    async def inline_event(self, sid: str, event: str, data: Any) -> asyncio.Future[Any]: ...


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
        self.eio._async = {**self.eio._async, "websocket": WebSocketTransport}

    def _engineio_server_class(self) -> type[EngineServer]:
        return EngineServer

    def event_packets(self, namespace: str, event: str, data: Any) -> list[FramePacket]:
        """An event without an ack, encoded once as the Engine.IO packets to send (a binary
        payload adds one packet per attachment), for `queue_packets` on any number of sockets."""
        return self._packets(packet.EVENT, namespace, None, [event, data])

    def _packets(self, kind: int, namespace: str, id: Any, data: Any) -> list[FramePacket]:
        encoded = self.packet_class(kind, namespace=namespace, id=id, data=data).encode()
        frames = encoded if isinstance(encoded, list) else [encoded]
        return [FramePacket(eio_packet.MESSAGE, frame) for frame in frames]

    def queue_packets(self, eio_sid: str, packets: list[FramePacket]) -> bool:
        """Send encoded packets to one open socket (local delivery, no task per packet):
        written at once when its writer is idle and nothing is queued, queued otherwise;
        False when it is gone or closing. Ping timeouts are the client monitor's business
        (`EngineServer`)."""
        sock = self.eio.sockets.get(eio_sid)
        if sock is None or sock.closed or sock.closing:
            return False
        line = self.eio.lines.get(eio_sid)
        if line is not None and line.ready():
            # One write per socket, however many packets (a binary event and its attachment).
            if len(packets) == 1:
                line.write(packets[0].wire())
            else:
                line.write(b"".join(eio_pkt.wire() for eio_pkt in packets))
            return True
        for eio_pkt in packets:
            sock.queue.put_nowait(eio_pkt)
        return True

    async def _handle_event(self, eio_sid: str, namespace: str | None, id: Any, data: Any) -> None:
        namespace = namespace or "/"
        handler = self.namespace_handlers.get(namespace)
        inline: frozenset[str] = getattr(handler, "inline_events", frozenset())
        if isinstance(data, list) and data and isinstance(data[0], str) and data[0] in inline:
            await self._handle_inline(cast(InlineEvents, handler), eio_sid, namespace, id, data)
            return
        if isinstance(data, list) and data and data[0] in self.reserved_events:
            log.warning("refused a client event named %r on %s", data[0], namespace)
            if id is not None:
                error = {"code": "unknown_event", "message": f"{data[0]!r} is reserved"}
                reply = self.packet_class(
                    packet.ACK,
                    namespace=namespace,
                    id=id,
                    data=[{"ok": False, "error": error}],
                )
                await self._send_packet(eio_sid, reply)
            return
        await super()._handle_event(eio_sid, namespace, id, data)

    async def _handle_inline(
        self, handler: InlineEvents, eio_sid: str, namespace: str, id: Any, data: list[Any]
    ) -> None:
        sid = self.manager.sid_from_eio_sid(eio_sid, namespace)
        if sid is None or not self.manager.is_connected(sid, namespace):
            return
        reply = await handler.inline_event(sid, data[0], data[1] if len(data) > 1 else None)
        if id is not None:
            reply.add_done_callback(lambda done: self._queue_ack(eio_sid, namespace, id, done))

    def _queue_ack(self, eio_sid: str, namespace: str, id: Any, reply: asyncio.Future[Any]) -> None:
        if reply.cancelled():
            return
        error = reply.exception()
        if error is not None:
            log.error("an inline event failed", exc_info=error)
            return
        self.queue_packets(eio_sid, self._packets(packet.ACK, namespace, id, [reply.result()]))
