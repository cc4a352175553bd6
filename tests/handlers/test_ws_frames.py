"""Tests of `handlers.ws_frames`. Frames go through a real aiohttp server's transport to a
real aiohttp client; `DirectLine`'s rules run against a fake transport and a fake
WebSocket (this module's only fakes), since what it decides on is their state."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from aiohttp import WSMsgType, web
from aiohttp.web import WebSocketResponse

from handlers.ws_frames import BUFFERED_LIMIT, DirectLine, frame

SIZES = [0, 125, 126, 65535, 65536, 200_000]


def _payload(size: int) -> bytes:
    return bytes(range(256)) * (size // 256) + bytes(size % 256)


async def _direct_frames(request: web.Request) -> WebSocketResponse:
    ws = WebSocketResponse(max_msg_size=0)
    await ws.prepare(request)
    line = DirectLine(ws, request.transport, asyncio.Queue())
    for size in SIZES:
        assert line.ready()
        line.write(frame(_payload(size)))
        await ws.receive()  # the client has read it: the transport's buffer is empty again
    line.write(frame('42/collab,["update",{"é":1}]'))
    await ws.receive()
    return ws


async def test_frames_written_on_the_line_reach_a_client_whole(aiohttp_client: Any) -> None:
    app = web.Application()
    app.router.add_get("/", _direct_frames)
    client = await aiohttp_client(app)
    async with client.ws_connect("/", max_msg_size=0) as ws:
        for size in SIZES:
            message = await ws.receive()
            assert message.type is WSMsgType.BINARY
            assert message.data == _payload(size)
            await ws.send_str("next")
        message = await ws.receive()
        assert message.type is WSMsgType.TEXT
        assert message.data == '42/collab,["update",{"é":1}]'


class FakeTransport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.buffered = 0
        self.closing = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return self.buffered


class FakeSocket:
    closed = False


def _line(
    queue: asyncio.Queue[bytes] | None = None,
) -> tuple[DirectLine, FakeTransport, FakeSocket]:
    transport, ws = FakeTransport(), FakeSocket()
    writer_queue: asyncio.Queue[bytes] = asyncio.Queue() if queue is None else queue
    socket, stream = cast(WebSocketResponse, ws), cast(asyncio.BaseTransport, transport)
    return DirectLine(socket, stream, writer_queue), transport, ws


def test_an_idle_open_line_is_ready_and_writes_the_bytes_as_given() -> None:
    line, transport, _ = _line()
    assert line.ready()
    line.write(b"\x82\x01x")
    assert transport.written == [b"\x82\x01x"]


def test_a_line_is_not_ready_while_its_writer_sends() -> None:
    line, _, _ = _line()
    line.busy = True
    assert not line.ready()


def test_a_line_is_not_ready_while_its_writer_has_frames_queued() -> None:
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    line, _, _ = _line(queue)
    queue.put_nowait(b"first")
    assert not line.ready()
    queue.get_nowait()
    assert line.ready()


def test_a_line_is_not_ready_once_the_client_falls_behind() -> None:
    line, transport, _ = _line()
    transport.buffered = BUFFERED_LIMIT
    assert line.ready()
    transport.buffered = BUFFERED_LIMIT + 1
    assert not line.ready()


def test_a_line_is_not_ready_once_aiohttp_closes_the_socket_or_its_transport() -> None:
    line, transport, ws = _line()
    ws.closed = True
    assert not line.ready()
    ws.closed, transport.closing = False, True
    assert not line.ready()


def test_a_closed_line_never_writes_again() -> None:
    line, transport, _ = _line()
    line.close()
    assert not line.ready()
    line.write(b"late")
    assert transport.written == []


def test_a_line_without_a_socket_is_never_ready() -> None:
    assert not DirectLine().ready()
