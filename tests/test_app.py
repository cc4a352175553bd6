"""The Socket.IO server shares the aiohttp app and refuses the empty default namespace."""

from __future__ import annotations

import pytest
import socketio

from tests.support.harness import Harness


async def test_the_default_namespace_refuses_connections(harness: Harness) -> None:
    client = socketio.AsyncClient(reconnection=False)
    url = str(harness.client.make_url("/"))
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.connect(url, transports=["websocket"], wait_timeout=5)
    assert not client.connected
