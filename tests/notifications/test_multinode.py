"""Two real server processes on one MariaDB and one Redis: notifications cross nodes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from tests.collab.test_multinode import WAIT_SECONDS, Cluster, cluster
from tests.notifications.test_live import Listener
from tests.support.live import eventually

__all__ = ["cluster"]  # the two-node fixture, shared with the collab multinode tests

OpenListener = Callable[[int, str], Awaitable[Listener]]


@pytest.fixture
async def listen(cluster: Cluster) -> AsyncIterator[OpenListener]:
    """Open a `/notifications` listener as `username` on node 0 or 1; closed afterwards."""
    listeners: list[Listener] = []

    async def open_listener(node: int, username: str) -> Listener:
        listener = await Listener(cluster.urls[node], cluster.tokens[username]).connect()
        listeners.append(listener)
        return listener

    yield open_listener
    for listener in listeners:
        if listener.sio.connected:
            await listener.sio.disconnect()


async def _rest(
    cluster: Cluster, node: int, username: str, path: str, body: object
) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {cluster.tokens[username]}"}
    async with (
        aiohttp.ClientSession() as http,
        http.post(cluster.urls[node] + path, json=body, headers=headers) as response,
    ):
        answer = await response.json()
        assert response.status == 200, answer
        return dict(answer["data"])


async def _user_id(cluster: Cluster, node: int, username: str) -> int:
    headers = {"Authorization": f"Bearer {cluster.tokens[username]}"}
    async with (
        aiohttp.ClientSession() as http,
        http.get(cluster.urls[node] + "/api/v1/auth/me", headers=headers) as response,
    ):
        return int((await response.json())["data"]["user"]["id"])


async def test_a_notification_produced_on_one_node_reaches_a_client_on_the_other(
    cluster: Cluster, listen: OpenListener
) -> None:
    bob = await _user_id(cluster, 1, "bob")
    on_b = await listen(1, "bob")
    body = {"user_ids": [bob], "title": "Across nodes", "message": "Sent on node A."}
    sent = await _rest(cluster, 0, "alice", "/api/v1/notifications/send", body)
    assert sent["stored"] == 1
    await eventually(lambda: "Across nodes" in on_b.titles(), WAIT_SECONDS)
    await eventually(lambda: bool(on_b.received("unread")), WAIT_SECONDS)


async def test_marking_read_on_one_node_clears_it_on_the_other(
    cluster: Cluster, listen: OpenListener
) -> None:
    bob = await _user_id(cluster, 1, "bob")
    on_a, on_b = await listen(0, "bob"), await listen(1, "bob")
    body = {"user_ids": [bob], "title": "Read me anywhere", "message": "Once."}
    await _rest(cluster, 1, "alice", "/api/v1/notifications/send", body)
    await eventually(lambda: "Read me anywhere" in on_a.titles(), WAIT_SECONDS)
    pushed = next(n for n in on_a.received("notification") if n["title"] == "Read me anywhere")
    answer = await on_a.call("mark_read", {"ids": [pushed["id"]]})
    assert answer["ok"] and answer["read"] == [pushed["id"]]
    await eventually(lambda: {"ids": [pushed["id"]]} in on_b.received("read"), WAIT_SECONDS)
    await eventually(lambda: on_b.received("unread")[-1] == answer["unread"], WAIT_SECONDS)
