"""Relay: two nodes in one process on one database and a real Redis; pub/sub and catch-up."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from redis.asyncio import Redis

from realtime_cms.collab.manager import RoomLimits, RoomManager
from realtime_cms.collab.protocol import AwarenessEntry, ProtocolError, encode_awareness_update
from realtime_cms.collab.relay import Relay, decode_message, encode_message
from realtime_cms.collab.store import UpdateStore
from realtime_cms.db import create_engine, session_factory
from tests.collab.test_room import RecordingPeer, stamped, text_of
from tests.handlers.test_collab import eventually
from tests.support.harness import create_schema
from tests.support.servers import RedisServer, require_binaries

# Generous: polling stops as soon as the condition holds; this only bounds a hang.
WAIT_SECONDS = 10.0
# A catch-up interval no test waits for: what arrives came through pub/sub.
NEVER = 3600.0
_names = (f"notes.relay-{n}" for n in itertools.count(1))


@dataclass
class Node:
    """One server process, as far as live documents go: rooms, a relay, the level changes."""

    rooms: RoomManager
    relay: Relay
    levels: list[tuple[str, int]]


@pytest.fixture(scope="module")
async def schema(database_url: str) -> str:
    await create_schema(database_url)
    return database_url


@pytest.fixture
def prefix() -> str:
    return f"rcms-relay-{secrets.token_hex(4)}:"


@contextlib.asynccontextmanager
async def node(
    database_url: str, redis_url: str | None, prefix: str, *, catchup_seconds: float = NEVER
) -> AsyncIterator[Node]:
    """A node with its own engine (another process, as far as the database can tell)."""
    engine = create_engine(database_url)
    redis = Redis.from_url(redis_url) if redis_url else None
    levels: list[tuple[str, int]] = []

    async def record_level(document_id: str, user_id: int) -> None:
        levels.append((document_id, user_id))

    try:
        async with (
            UpdateStore(session_factory(engine), commit_window=0) as store,
            RoomManager(store, RoomLimits(idle_unload_seconds=NEVER)) as rooms,
        ):
            relay = Relay(
                rooms,
                redis,
                prefix=prefix,
                catchup_seconds=catchup_seconds,
                on_level_change=record_level,
            )
            async with relay:
                yield Node(rooms, relay, levels)
    finally:
        if redis is not None:
            await redis.aclose()
        await engine.dispose()


async def subscribed(redis_url: str, prefix: str, nodes: int) -> None:
    """Wait until `nodes` relays listen on every channel (pub/sub drops what comes before)."""
    channels = [f"{prefix}collab:{name}" for name in ("updates", "awareness", "levels")]
    deadline = asyncio.get_running_loop().time() + WAIT_SECONDS
    async with Redis.from_url(redis_url) as redis:
        while True:
            counts = await redis.pubsub_numsub(*channels)
            if all(count >= nodes for _, count in counts):
                return
            assert asyncio.get_running_loop().time() < deadline, f"not subscribed: {counts}"
            await asyncio.sleep(0.01)


@pytest.fixture
async def pair(schema: str, redis_server: RedisServer, prefix: str) -> AsyncIterator[list[Node]]:
    """Nodes A and B sharing the database and Redis; only pub/sub moves changes between them."""
    async with (
        node(schema, redis_server.url, prefix) as a,
        node(schema, redis_server.url, prefix) as b,
    ):
        await subscribed(redis_server.url, prefix, 2)
        yield [a, b]


def awareness(client_id: int, clock: int, state: dict[str, object] | None) -> bytes:
    return encode_awareness_update([AwarenessEntry(client_id, clock, state)])


def test_a_message_survives_the_round_trip_with_any_bytes() -> None:
    payload = bytes(range(256)) * 3
    message = decode_message(encode_message("node-1", "content:7", payload))
    assert (message.node_id, message.document_id, message.payload) == (
        "node-1",
        "content:7",
        payload,
    )


@pytest.mark.parametrize("data", [b"", b"\x06node-1", encode_message("n", "d", b"x") + b"!"])
def test_a_malformed_message_is_refused(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode_message(data)


async def test_an_update_made_on_one_node_reaches_the_room_on_the_other(
    pair: list[Node],
) -> None:
    a, b = pair
    document_id = next(_names)
    writer, reader = RecordingPeer(), RecordingPeer()
    room_b = await b.rooms.join(document_id, reader, "read")
    room_a = await a.rooms.join(document_id, writer, "write")
    await room_a.apply_update(writer, writer.edit("hello from A"))
    await eventually(lambda: str(reader.text) == "hello from A")
    assert text_of(room_b) == "hello from A"


async def test_an_update_another_node_relayed_is_not_published_again(
    pair: list[Node], redis_server: RedisServer, prefix: str
) -> None:
    a, b = pair
    document_id = next(_names)
    seen: list[str] = []
    async with Redis.from_url(redis_server.url) as redis, redis.pubsub() as listener:
        await listener.subscribe(f"{prefix}collab:updates")
        peer_a, peer_b = RecordingPeer(), RecordingPeer()
        room_b = await b.rooms.join(document_id, peer_b, "write")
        room_a = await a.rooms.join(document_id, peer_a, "write")
        await room_a.apply_update(peer_a, peer_a.edit("from A. "))
        await eventually(lambda: "from A" in str(peer_b.text))
        await room_b.apply_update(peer_b, peer_b.edit("from B."))
        async with asyncio.timeout(WAIT_SECONDS):
            while len(seen) < 2 or seen[-1] != b.relay.node_id:
                message = await listener.get_message(ignore_subscribe_messages=True, timeout=1)
                if message is not None:
                    seen.append(decode_message(message["data"]).node_id)
    # B's publisher queues in order: a re-published A update would come before B's own.
    assert seen == [a.relay.node_id, b.relay.node_id]


async def test_awareness_reaches_the_other_node_and_leaving_removes_it_there(
    pair: list[Node],
) -> None:
    a, b = pair
    document_id = next(_names)
    there, here = RecordingPeer(), RecordingPeer()
    room_b = await b.rooms.join(document_id, there, "read")
    room_a = await a.rooms.join(document_id, here, "read")
    await room_a.apply_awareness(here, awareness(501, 1, {"cursor": 3}))
    sent = stamped({"cursor": 3})
    await eventually(lambda: [AwarenessEntry(501, 1, sent)] in there.awareness)
    assert room_b.awareness_snapshot() == awareness(501, 1, sent)
    await a.rooms.leave(document_id, here)
    await eventually(lambda: [AwarenessEntry(501, 2, None)] in there.awareness)
    assert room_b.awareness_snapshot() == encode_awareness_update([])


async def test_a_client_id_that_moved_to_another_node_is_not_removed_by_its_old_peer(
    pair: list[Node],
) -> None:
    _, b = pair
    document_id = next(_names)
    stale, watcher = RecordingPeer(), RecordingPeer()
    room = await b.rooms.join(document_id, stale, "read")
    await b.rooms.join(document_id, watcher, "read")
    await room.apply_awareness(stale, awareness(601, 1, {"tab": "old"}))
    await room.apply_remote_awareness(awareness(601, 2, {"tab": "moved"}))
    await b.rooms.leave(document_id, stale)
    assert room.awareness_snapshot() == awareness(601, 2, {"tab": "moved"})
    assert watcher.awareness[-1] == [AwarenessEntry(601, 2, {"tab": "moved"})]


async def test_a_level_change_reaches_the_other_nodes_but_not_its_own(pair: list[Node]) -> None:
    a, b = pair
    await a.relay.publish_level_change("notes.levels", 42)
    await eventually(lambda: b.levels == [("notes.levels", 42)])
    await b.relay.publish_level_change("notes.levels", 7)
    # Redis delivers in publish order, so A has skipped its own message once B's arrives.
    await eventually(lambda: a.levels == [("notes.levels", 7)])
    assert b.levels == [("notes.levels", 42)]


async def test_an_update_whose_message_was_lost_is_caught_up_from_the_log(
    schema: str, redis_server: RedisServer, prefix: str
) -> None:
    document_id = next(_names)
    # B listens under another prefix, so every message A publishes is lost to it.
    async with (
        node(schema, redis_server.url, prefix) as a,
        node(schema, redis_server.url, "elsewhere-" + prefix, catchup_seconds=0.05) as b,
    ):
        writer, reader = RecordingPeer(), RecordingPeer()
        await b.rooms.join(document_id, reader, "read")
        room_a = await a.rooms.join(document_id, writer, "write")
        for word in ("lost ", "and ", "found"):
            await room_a.apply_update(writer, writer.edit(word))
        await eventually(lambda: str(reader.text) == "lost and found")


async def test_after_redis_restarts_a_node_resubscribes_and_catches_up(
    schema: str, prefix: str
) -> None:
    require_binaries(*RedisServer.BINARIES)
    document_id = next(_names)
    first = RedisServer().start()
    second: RedisServer | None = None
    try:
        async with node(schema, first.url, prefix) as a, node(schema, first.url, prefix) as b:
            await subscribed(first.url, prefix, 2)
            writer, reader = RecordingPeer(), RecordingPeer()
            await b.rooms.join(document_id, reader, "read")
            room_a = await a.rooms.join(document_id, writer, "write")
            await asyncio.to_thread(first.stop)
            # Durable, but its message is lost: only catching up on resubscribing brings it.
            await room_a.apply_update(writer, writer.edit("written while Redis was down. "))
            second = await asyncio.to_thread(RedisServer(port=first.port).start)
            await eventually(lambda: "while Redis was down" in str(reader.text))
            await subscribed(second.url, prefix, 2)
            await room_a.apply_update(writer, writer.edit("And after."))
            await eventually(lambda: str(reader.text).endswith("And after."))
    finally:
        first.stop()
        if second is not None:
            second.stop()


async def test_a_node_whose_redis_is_unreachable_keeps_serving_its_rooms(
    schema: str, prefix: str
) -> None:
    async with node(schema, "redis://127.0.0.1:1/0", prefix) as alone:
        peer = RecordingPeer()
        room = await alone.rooms.join(next(_names), peer, "write")
        await room.apply_update(peer, peer.edit("still durable"))
        await alone.relay.publish_level_change("notes.levels", 1)
        assert text_of(room) == "still durable"


async def test_without_redis_the_relay_adds_no_hooks(schema: str, prefix: str) -> None:
    async with node(schema, None, prefix) as embedded:
        hooks = embedded.rooms.hooks
        assert (hooks.on_change, hooks.on_awareness, hooks.on_unload) == ([], [], [])
        await embedded.relay.publish_level_change("notes.levels", 1)


async def test_a_relay_starts_only_once(schema: str, prefix: str) -> None:
    async with node(schema, None, prefix) as embedded:
        with pytest.raises(RuntimeError):
            await embedded.relay.__aenter__()
