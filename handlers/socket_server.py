"""The Socket.IO server: python-socketio's, refusing client events with reserved names and
malformed packets (`socket_junk`), on the lean WebSocket transport (`socket_transport`), able
to send one encoded event to many sockets, and handling a namespace's hot events in line
(`InlineEvents`)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol, cast

import socketio
from engineio import packet as eio_packet
from socketio import packet

from handlers.socket_transport import EngineServer, FramePacket, WebSocketTransport

log = logging.getLogger(__name__)

# The most binary attachments a client's packet may announce (python-socketio sets no bound
# and keeps every frame that follows until they have all come; a `/collab` event has one).
MAX_ATTACHMENTS = 10
_BINARY = frozenset({packet.BINARY_EVENT, packet.BINARY_ACK})
_EVENTS = frozenset({packet.EVENT, packet.BINARY_EVENT})
# Every packet type but CONNECT_ERROR, which only servers send.
_CLIENT_PACKETS = frozenset({packet.CONNECT, packet.DISCONNECT, packet.ACK, *_EVENTS, *_BINARY})


class InlineEvents(Protocol):
    """A namespace whose `inline_events` run in line on the socket's reader, in arrival
    order, without python-socketio's task per event. `inline_event` must not wait on
    anything slow: it returns a future of the ack's payload (an update's ack waits for its
    commit), and the ack is queued when that future is done."""

    inline_events: frozenset[str]

    async def inline_event(self, sid: str, event: str, data: Any) -> asyncio.Future[Any]: ...


class SocketServer(socketio.AsyncServer):
    """An `AsyncServer` that refuses malformed packets and client events named like its own
    lifecycle events.

    python-socketio hands a client's event called `connect` or `disconnect` to the same
    handlers as the real ones, so a client could make a namespace forget its seats while
    the socket stays open. Such events never reach a namespace here: they are answered with
    an error ack (`unknown_event`) when the client asked for one.

    A packet that does not decode, or whose type, namespace, id, payload or attachments
    are not what a Socket.IO client sends, would fail in python-socketio's dispatch (an
    ERROR with a traceback each): it is dropped and reported to the Engine.IO server
    (`EngineServer.refuse`), which closes a connection that keeps sending them.
    """

    eio: EngineServer

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

    async def _handle_eio_message(self, eio_sid: str, data: Any) -> None:
        """Dispatch one Engine.IO message as python-socketio does, malformed ones refused."""
        pending = self._binary_packet.pop(eio_sid, None)
        found = self._decode(data) if pending is None else _attach(pending, data)
        if isinstance(found, str):
            await self.eio.refuse(eio_sid, found)
            return
        kind, namespace = found.packet_type, found.namespace
        if kind in _BINARY and len(found.attachments) < found.attachment_count:
            if self.manager.sid_from_eio_sid(eio_sid, namespace or "/") is None:
                await self.eio.refuse(eio_sid, "a binary packet for a namespace not connected")
            else:
                self._binary_packet[eio_sid] = found
            return
        problem = _payload_problem(kind, found.data)
        if problem is not None:
            await self.eio.refuse(eio_sid, problem)
        elif kind == packet.CONNECT:
            await self._handle_connect(eio_sid, namespace, found.data)
        elif kind == packet.DISCONNECT:
            await self._handle_disconnect(eio_sid, namespace, self.reason.CLIENT_DISCONNECT)
        elif kind in _EVENTS:
            await self._handle_event(eio_sid, namespace, found.id, found.data)
        else:
            await self._handle_ack(eio_sid, namespace, found.id, found.data)

    def _decode(self, data: Any) -> Any:
        """The packet in an Engine.IO message, or why it is not one a client sends."""
        binary_events = self.packet_class.uses_binary_events
        if not isinstance(data, str if binary_events else bytes):
            return "a binary frame with no attachment due" if binary_events else "a text frame"
        try:
            pkt = self.packet_class(encoded_packet=data)
        except Exception:  # noqa: BLE001 - whatever the parser trips on, it is not Socket.IO
            return "a packet that does not decode"
        kind = pkt.packet_type
        if type(kind) is not int or kind not in _CLIENT_PACKETS:
            return "a packet type clients do not send"
        if pkt.namespace is not None and not isinstance(pkt.namespace, str):
            return "a namespace that is not a string"
        if pkt.id is not None and type(pkt.id) is not int:
            return "an id that is not an integer"
        if kind in _BINARY and not (binary_events and 0 < pkt.attachment_count <= MAX_ATTACHMENTS):
            return "a binary packet with no or too many attachments"
        return pkt

    async def _handle_event(self, eio_sid: str, namespace: str | None, id: Any, data: Any) -> None:
        namespace = namespace or "/"
        handler = self.namespace_handlers.get(namespace)
        inline: frozenset[str] = getattr(handler, "inline_events", frozenset())
        if data[0] in inline:
            await self._handle_inline(cast(InlineEvents, handler), eio_sid, namespace, id, data)
            return
        if data[0] in self.reserved_events:
            if id is not None:
                error = {"code": "unknown_event", "message": f"{data[0]!r} is reserved"}
                reply = self.packet_class(
                    packet.ACK,
                    namespace=namespace,
                    id=id,
                    data=[{"ok": False, "error": error}],
                )
                await self._send_packet(eio_sid, reply)
            # Socket.IO clients refuse to emit these names: whoever sends one is probing.
            await self.eio.refuse(eio_sid, "an event named like a lifecycle event")
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


def _attach(pending: Any, data: Any) -> Any:
    """The binary packet with one more attachment, or why `data` cannot be one."""
    if not isinstance(data, bytes):
        return "a text frame where a binary attachment was due"
    try:
        pending.add_attachment(data)
    except Exception:  # noqa: BLE001 - a placeholder that points at no attachment
        return "attachments that do not match their placeholders"
    return pending


def _payload_problem(kind: int, data: Any) -> str | None:
    """Why a complete packet's payload is not what a client sends, or None."""
    if kind in _EVENTS:
        if not (isinstance(data, list) and data and isinstance(data[0], str)):
            return "an event that is not a list starting with its name"
    elif kind == packet.CONNECT:
        if data is not None and not isinstance(data, dict):
            return "connect auth that is not an object"
    elif kind != packet.DISCONNECT and not isinstance(data, list):
        return "an ack that is not a list"
    return None
