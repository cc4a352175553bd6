"""Two real server processes on one MariaDB and one Redis: clients on different nodes co-edit."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable

import pycrdt
import pytest

from realtime_cms.client import ClientDocument, CollabClient
from tests.handlers.test_collab import eventually
from tests.support.cluster import WAIT_SECONDS, Cluster, cluster

# The two-node fixture; tests/notifications/test_multinode.py imports it from here.
__all__ = ["WAIT_SECONDS", "Cluster", "cluster"]

_names = (f"notes.multinode-{n}" for n in itertools.count(1))


@pytest.fixture
async def connect(cluster: Cluster) -> AsyncIterator[Callable[[int, str], Awaitable[CollabClient]]]:
    """Open a `/collab` client as `username` on node 0 or 1; all are closed afterwards."""
    clients: list[CollabClient] = []

    async def open_client(node: int, username: str) -> CollabClient:
        client = CollabClient(cluster.urls[node], cluster.tokens[username], timeout=WAIT_SECONDS)
        await client.connect()
        clients.append(client)
        return client

    yield open_client
    for client in clients:
        if client.sio.connected:
            await client.sio.disconnect()


async def type_words(document: ClientDocument, tag: str, count: int) -> None:
    """Append `count` words, one transaction (one update) each, then wait for the acks."""
    text = document.doc.get("body", type=pycrdt.Text)
    for n in range(count):
        text.insert(len(text), f"{tag}{n} ")
        await asyncio.sleep(0.01)
    await document.flush()
    assert not document.errors


def converged(documents: list[ClientDocument], *tags_and_counts: tuple[str, int]) -> bool:
    """Whether every document shows the same text, made of exactly the expected words."""
    expected = sorted(f"{tag}{n}" for tag, count in tags_and_counts for n in range(count))
    texts = {document.text() for document in documents}
    return len(texts) == 1 and sorted(texts.pop().split()) == expected


async def test_clients_on_different_nodes_co_edit_one_document_and_converge(
    connect: Callable[[int, str], Awaitable[CollabClient]],
) -> None:
    document_id = next(_names)
    a = await (await connect(0, "alice")).join(document_id)
    b = await (await connect(1, "bob")).join(document_id)
    c = await (await connect(1, "alice")).join(document_id)
    await asyncio.gather(type_words(a, "a", 25), type_words(b, "b", 25), type_words(c, "c", 25))
    await eventually(lambda: converged([a, b, c], ("a", 25), ("b", 25), ("c", 25)), WAIT_SECONDS)


async def test_editing_through_a_redis_restart_converges_through_the_log(
    cluster: Cluster, connect: Callable[[int, str], Awaitable[CollabClient]]
) -> None:
    document_id = next(_names)
    a = await (await connect(0, "alice")).join(document_id)
    b = await (await connect(1, "bob")).join(document_id)
    await asyncio.gather(type_words(a, "a", 20), type_words(b, "b", 20), cluster.stop_redis())
    # Redis is down: only the nodes' catch-up from the log carries changes across.
    await asyncio.gather(type_words(a, "down-a", 10), type_words(b, "down-b", 10))
    expected = [("a", 20), ("b", 20), ("down-a", 10), ("down-b", 10)]
    await eventually(lambda: converged([a, b], *expected), WAIT_SECONDS)
    await asyncio.gather(
        type_words(a, "up-a", 20), type_words(b, "up-b", 20), cluster.start_redis_again()
    )
    await asyncio.gather(type_words(a, "after-a", 10), type_words(b, "after-b", 10))
    expected += [("up-a", 20), ("up-b", 20), ("after-a", 10), ("after-b", 10)]
    late = await (await connect(1, "alice")).join(document_id)
    await eventually(lambda: converged([a, b, late], *expected), WAIT_SECONDS)
