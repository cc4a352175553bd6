"""Pre-encoded WebSocket frames, written straight to a connection while its writer is idle.

A server's frames are not masked (RFC 6455, 5.1), so one broadcast is the same bytes on
every connection: it is framed once (`frame`) and each recipient costs one
`transport.write`, instead of waking the connection's writer task to frame and write it.

A connection keeps its writer task and queue for everything else: `DirectLine.ready()`
holds only while that queue is empty, the writer is not in the middle of a send, and the
kernel takes what is written (the transport's buffer is nearly empty). Otherwise frames
queue as before, so their order is kept, a slow reader still gets aiohttp's flow control,
and the transport's own limits still close a client that stops reading.
"""

from __future__ import annotations

import asyncio
import struct
from typing import Any, cast

from aiohttp.web import WebSocketResponse

# Bytes a transport may already hold for a direct write to go ahead: a little over one
# frame. Above it the client is not keeping up and frames queue (and are flow-controlled).
BUFFERED_LIMIT = 16 * 1024

_FIN = 0x80
_BINARY = 0x2
_TEXT = 0x1
_SHORT = struct.Struct("!BB")
_MEDIUM = struct.Struct("!BBH")
_LONG = struct.Struct("!BBQ")


def frame(payload: bytes | str) -> bytes:
    """One final, unmasked data frame: binary for bytes, text for str."""
    if isinstance(payload, str):
        data, first = payload.encode(), _FIN | _TEXT
    else:
        data, first = payload, _FIN | _BINARY
    length = len(data)
    if length < 126:
        header = _SHORT.pack(first, length)
    elif length < 65536:
        header = _MEDIUM.pack(first, 126, length)
    else:
        header = _LONG.pack(first, 127, length)
    return header + data


class DirectLine:
    """An open WebSocket's transport and its writer task's queue, for frames written while
    that writer is idle.

    The writer task marks its sends with `busy`. Nothing is written while anything waits
    in the queue (it goes first), nor once aiohttp started closing the socket (its close
    frame must be the last one). A line made without a socket is never ready.
    """

    __slots__ = ("busy", "_queue", "_transport", "_ws")

    def __init__(
        self,
        ws: WebSocketResponse | None = None,
        transport: asyncio.BaseTransport | None = None,
        queue: asyncio.Queue[Any] | None = None,
    ) -> None:
        self._ws = ws
        # uvloop's transports write but do not subclass asyncio.WriteTransport.
        self._transport = cast(asyncio.WriteTransport | None, transport)
        self._queue = queue
        self.busy = False

    def ready(self) -> bool:
        """Whether a frame written now goes out in order: nothing queued before it, the
        writer idle, the socket open and keeping up."""
        transport, ws, queue = self._transport, self._ws, self._queue
        return not (
            transport is None
            or ws is None
            or queue is None
            or self.busy
            or not queue.empty()
            or ws.closed
            or transport.is_closing()
            or transport.get_write_buffer_size() > BUFFERED_LIMIT
        )

    def write(self, wire: bytes) -> None:
        """Write framed bytes (from `frame`); only right after `ready()` said so."""
        if self._transport is not None:
            self._transport.write(wire)

    def close(self) -> None:
        """No more direct writes: the connection is closing."""
        self._transport = self._ws = self._queue = None
