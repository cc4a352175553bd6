"""The Socket.IO server: python-socketio's, refusing client events with reserved names."""

from __future__ import annotations

import logging
from typing import Any

import socketio
from socketio import packet

log = logging.getLogger(__name__)


class SocketServer(socketio.AsyncServer):
    """An `AsyncServer` that refuses client events named like its own lifecycle events.

    python-socketio hands a client's event called `connect` or `disconnect` to the same
    handlers as the real ones, so a client could make a namespace forget its seats while
    the socket stays open. Such events never reach a namespace here: they are answered with
    an error ack (`unknown_event`) when the client asked for one.
    """

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
