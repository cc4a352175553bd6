"""The private parts of python-socketio and python-engineio that handlers/socket_server.py
and handlers/socket_transport.py override or use are still there and still behave so.

pyproject.toml pins the releases these were checked against. When a check fails after an
upgrade, read the named internal in the new release, adapt the override, then update the
expectation here (and the pin). Private names used, by owner:

- engineio.AsyncServer: `_service_task` (replaced), `_async` (the driver table),
  `service_task_event`, `sockets`, `handlers`, `reason`, `async_handlers`
- engineio.async_drivers.aiohttp.WebSocket: `__call__` (replaced), `_sock`, `handler`, `server`
- engineio.AsyncSocket: `_websocket_handler` (replaced by `socket_transport.serve`, which
  finds the socket as the handler's `__self__`), `_upgrade_websocket`, `queue`, `connected`,
  `upgrading`, `upgraded`, `closing`, `closed`, `receive`, `close`, `check_ping_timeout`
- socketio.AsyncServer: `_engineio_server_class` (overridden), `_handle_eio_message`
  (replaced), `_handle_event` (extended), `_handle_connect`, `_handle_disconnect`,
  `_handle_ack`, `_send_packet`, `_binary_packet`, `packet_class`, `reserved_events`,
  `namespace_handlers`, `manager.sid_from_eio_sid`, `manager.is_connected`
- socketio.packet.Packet / MsgPackPacket: `attachment_count`, `attachments`,
  `add_attachment`, `uses_binary_events`
"""

from __future__ import annotations

import ast
import asyncio
import hashlib
import inspect
import textwrap
from collections.abc import Callable
from importlib.metadata import version
from typing import Any

import engineio
import pytest
import socketio
from engineio import async_socket
from engineio import packet as eio_packet
from engineio.async_drivers import aiohttp as engineio_aiohttp
from socketio import msgpack_packet, packet

from handlers.socket_server import SocketServer
from handlers.socket_transport import EngineServer

VERSIONS = {
    "python-socketio": version("python-socketio"),
    "python-engineio": version("python-engineio"),
}
SIO, EIO = "python-socketio", "python-engineio"


def changed(package: str, internal: str, detail: str) -> str:
    return (
        f"{package} {VERSIONS[package]}: {internal} {detail}; the overrides in "
        "handlers/socket_server.py and handlers/socket_transport.py rely on it"
    )


# (package, owner, method, the signature the overrides call or replace)
SIGNATURES: list[tuple[str, type, str, str]] = [
    (EIO, engineio.AsyncServer, "_service_task", "(self)"),
    (EIO, engineio.AsyncServer, "create_event", "(self, *args, **kwargs)"),
    (EIO, engineio_aiohttp.WebSocket, "__init__", "(self, handler, server)"),
    (EIO, engineio_aiohttp.WebSocket, "__call__", "(self, environ)"),
    (EIO, async_socket.AsyncSocket, "_websocket_handler", "(self, ws)"),
    (EIO, async_socket.AsyncSocket, "_upgrade_websocket", "(self, environ)"),
    (EIO, async_socket.AsyncSocket, "receive", "(self, pkt)"),
    (EIO, async_socket.AsyncSocket, "close", "(self, wait=True, abort=False, reason=None)"),
    (EIO, async_socket.AsyncSocket, "check_ping_timeout", "(self)"),
    (EIO, eio_packet.Packet, "__init__", "(self, packet_type=6, data=None, encoded_packet=None)"),
    (EIO, eio_packet.Packet, "encode", "(self, b64=False)"),
    (SIO, socketio.AsyncServer, "_engineio_server_class", "(self)"),
    (SIO, socketio.AsyncServer, "_handle_eio_message", "(self, eio_sid, data)"),
    (SIO, socketio.AsyncServer, "_handle_connect", "(self, eio_sid, namespace, data)"),
    (SIO, socketio.AsyncServer, "_handle_disconnect", "(self, eio_sid, namespace, reason=None)"),
    (SIO, socketio.AsyncServer, "_handle_event", "(self, eio_sid, namespace, id, data)"),
    (SIO, socketio.AsyncServer, "_handle_ack", "(self, eio_sid, namespace, id, data)"),
    (SIO, socketio.AsyncServer, "_send_packet", "(self, eio_sid, pkt)"),
    (
        SIO,
        packet.Packet,
        "__init__",
        "(self, packet_type=2, data=None, namespace=None, id=None, binary=None, "
        "encoded_packet=None)",
    ),
    (SIO, packet.Packet, "add_attachment", "(self, attachment)"),
    (SIO, socketio.AsyncManager, "sid_from_eio_sid", "(self, eio_sid, namespace)"),
    (SIO, socketio.AsyncManager, "is_connected", "(self, sid, namespace)"),
]


@pytest.mark.parametrize(
    ("package", "owner", "name", "expected"),
    SIGNATURES,
    ids=[f"{owner.__name__}.{name}" for _, owner, name, _ in SIGNATURES],
)
def test_the_methods_the_overrides_call_or_replace_keep_their_signatures(
    package: str, owner: type, name: str, expected: str
) -> None:
    method = getattr(owner, name, None)
    assert method is not None, changed(package, f"{owner.__name__}.{name}", "is gone")
    found = str(inspect.signature(method))
    assert found == expected, changed(
        package, f"{owner.__name__}.{name}", f"is now {found}, was {expected}"
    )


def _body_digest(function: Callable[..., Any]) -> str:
    """A digest of what a function does: its AST without docstrings (comments and layout
    do not count)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(body, list)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            body.pop(0)
    return hashlib.sha256(ast.dump(tree).encode()).hexdigest()[:16]


# Upstream code replaced wholesale by ours, as it was when the replacement was written: a
# change there (a new check, a new packet type) has to be carried over by hand.
REPLACED: list[tuple[str, Callable[..., Any], str, str]] = [
    (
        SIO,
        socketio.AsyncServer._handle_eio_message,
        "SocketServer._handle_eio_message",
        "cd2021532de60524",
    ),
    (EIO, engineio.AsyncServer._service_task, "EngineServer._service_task", "c65324b7f5a576a9"),
    (EIO, engineio_aiohttp.WebSocket.__call__, "WebSocketTransport.__call__", "9106840ae8f4cc82"),
    (
        EIO,
        async_socket.AsyncSocket._websocket_handler,
        "socket_transport.serve",
        "705ca4501c7d30fe",
    ),
]


@pytest.mark.parametrize(
    ("package", "upstream", "ours", "digest"),
    REPLACED,
    ids=[ours for _, _, ours, _ in REPLACED],
)
def test_the_upstream_code_we_replace_has_not_changed(
    package: str, upstream: Callable[..., Any], ours: str, digest: str
) -> None:
    found = _body_digest(upstream)
    assert found == digest, changed(
        package,
        upstream.__qualname__,
        f"changed (digest {found}, was {digest}): carry the change over to {ours}",
    )


def test_the_servers_hold_the_attributes_the_overrides_use() -> None:
    sio = SocketServer(async_mode="aiohttp")
    eio = sio.eio
    for package, owner, names in (
        (EIO, eio, ("_async", "sockets", "handlers", "reason", "ping_timeout", "ping_interval")),
        (EIO, eio, ("max_http_buffer_size", "service_task_event", "async_handlers")),
        (SIO, sio, ("_binary_packet", "packet_class", "reserved_events", "namespace_handlers")),
        (SIO, sio, ("manager", "reason")),
    ):
        for name in names:
            assert hasattr(owner, name), changed(package, f"{type(owner).__name__}.{name}", "gone")
    assert isinstance(eio._async, dict) and "websocket" in eio._async, changed(
        EIO, "AsyncServer._async", "holds no 'websocket' entry"
    )
    assert isinstance(sio._binary_packet, dict), changed(SIO, "_binary_packet", "is no dict")
    for name in ("TRANSPORT_ERROR", "TRANSPORT_CLOSE", "CLIENT_DISCONNECT"):
        assert hasattr(eio.reason, name), changed(EIO, f"reason.{name}", "is gone")
    socket = async_socket.AsyncSocket(eio, "sid")
    for name in ("queue", "sid", "server", "connected", "upgrading", "upgraded"):
        assert hasattr(socket, name), changed(EIO, f"AsyncSocket.{name}", "is gone")
    for name in ("closing", "closed", "last_ping"):
        assert hasattr(socket, name), changed(EIO, f"AsyncSocket.{name}", "is gone")


def test_socketio_builds_our_engine_server_and_routes_messages_to_our_dispatch() -> None:
    sio = SocketServer(async_mode="aiohttp")
    assert isinstance(sio.eio, EngineServer), changed(
        SIO, "AsyncServer._engineio_server_class", "is no longer how the Engine.IO server is made"
    )
    handler = sio.eio.handlers.get("message")
    assert getattr(handler, "__func__", None) is SocketServer._handle_eio_message, changed(
        SIO, "AsyncServer._handle_eio_message", "is no longer Engine.IO's message handler"
    )
    # Messages are handled in line on the socket's reader: a refused packet has been counted
    # (and its socket closed) by the time `AsyncSocket.receive` returns.
    assert sio.eio.async_handlers is False, changed(
        SIO, "engineio async_handlers", "is no longer False"
    )


def test_the_packet_classes_decode_and_attach_as_the_dispatch_expects() -> None:
    # Socket.IO's part of an Engine.IO message (the "4" of MESSAGE is Engine.IO's).
    header = packet.Packet(encoded_packet='51-/collab,["update",{"_placeholder":true,"num":0}]')
    assert (header.packet_type, header.attachment_count, header.attachments) == (
        packet.BINARY_EVENT,
        1,
        [],
    ), changed(SIO, "Packet.decode", "decodes a binary event differently")
    assert header.add_attachment(b"\x01") is True, changed(
        SIO, "Packet.add_attachment", "no longer tells when the last attachment came"
    )
    assert header.data == ["update", b"\x01"], changed(
        SIO, "Packet.add_attachment", "no longer puts the attachments in place"
    )
    assert packet.Packet.uses_binary_events is True, changed(
        SIO, "Packet.uses_binary_events", "is no longer True"
    )
    assert msgpack_packet.MsgPackPacket.uses_binary_events is False, changed(
        SIO, "MsgPackPacket.uses_binary_events", "is no longer False"
    )
    # An unknown Engine.IO type decodes (the transport refuses it); garbage does not.
    assert eio_packet.Packet(encoded_packet="9").packet_type == 9, changed(
        EIO, "engineio Packet.decode", "refuses unknown packet types itself"
    )
    with pytest.raises(ValueError):
        eio_packet.Packet(encoded_packet="not engine.io")


class _RecordingWebSocket:
    """Stands in for the driver's WebSocket class: records how the socket builds it."""

    made: list[_RecordingWebSocket] = []

    def __init__(self, handler: Any, server: Any) -> None:
        self.handler, self.server = handler, server
        _RecordingWebSocket.made.append(self)

    async def __call__(self, environ: dict[str, Any]) -> str:
        return "served"


async def test_a_socket_hands_its_own_bound_handler_to_the_websocket_class() -> None:
    eio = EngineServer(async_mode="aiohttp")
    eio._async = {**eio._async, "websocket": _RecordingWebSocket}
    socket = async_socket.AsyncSocket(eio, "sid")
    assert await socket._upgrade_websocket({}) == "served"
    made = _RecordingWebSocket.made.pop()
    assert getattr(made.handler, "__self__", None) is socket, changed(
        EIO,
        "AsyncSocket._upgrade_websocket",
        "no longer passes the socket's bound _websocket_handler to the WebSocket class",
    )
    assert made.server is eio


async def test_shutdown_stops_our_client_monitor_through_service_task_event() -> None:
    eio = EngineServer(async_mode="aiohttp")
    eio.service_task_handle = eio.start_background_task(eio._service_task)
    await asyncio.sleep(0)
    try:
        await asyncio.wait_for(eio.shutdown(), 5)
    except TimeoutError:
        eio.service_task_handle.cancel()
        pytest.fail(changed(EIO, "AsyncServer.shutdown", "no longer sets service_task_event"))
