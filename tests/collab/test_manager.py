"""RoomManager: loading once, failed loads, idle unload, compaction, revocation, lifecycle."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pycrdt import Doc, Text
from sqlalchemy.exc import DBAPIError

from realtime_cms.collab.hooks import Hooks
from realtime_cms.collab.manager import RoomLimits, RoomManager
from realtime_cms.collab.room import DocumentRoom
from realtime_cms.collab.store import UpdateStore
from realtime_cms.db import SessionFactory, create_engine, session_factory
from realtime_cms.errors import Forbidden, Unavailable
from tests.collab.test_room import ROOT, RecordingPeer, text_of
from tests.support.harness import create_schema

# Generous: polling stops as soon as the condition holds; this only bounds a hang.
WAIT_SECONDS = 30.0
_names = (f"notes.manager-{n}" for n in itertools.count(1))


@pytest.fixture(scope="module")
async def sessions(database_url: str) -> AsyncIterator[SessionFactory]:
    await create_schema(database_url)
    engine = create_engine(database_url)
    yield session_factory(engine)
    await engine.dispose()


@pytest.fixture(scope="module")
async def store(sessions: SessionFactory) -> AsyncIterator[UpdateStore]:
    async with UpdateStore(sessions, commit_window=0) as store:
        yield store


def quick(**overrides: Any) -> RoomLimits:
    """Limits with a tiny grace period, so idle rooms unload within the test."""
    return RoomLimits(**{"idle_unload_seconds": 0.05, **overrides})


class Unloads:
    """An `on_unload` hook (the last step of an unload) that tests can wait on."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self._changed = asyncio.Event()

    async def __call__(self, document_id: str) -> None:
        self.ids.append(document_id)
        self._changed.set()

    async def wait_for(self, *document_ids: str) -> None:
        """Wait until those documents were unloaded; fail only after WAIT_SECONDS."""
        async with asyncio.timeout(WAIT_SECONDS):
            while not set(document_ids) <= set(self.ids):
                self._changed.clear()
                await self._changed.wait()


def unloading(limits: RoomLimits | None = None) -> tuple[Unloads, dict[str, Any]]:
    """An Unloads hook and the RoomManager keyword arguments that install it."""
    unloads = Unloads()
    return unloads, {"limits": limits or quick(), "hooks": Hooks(on_unload=[unloads])}


async def type_into(room: DocumentRoom, peer: RecordingPeer, change: str) -> None:
    before = peer.doc.get_state()
    text = peer.doc.get(ROOT, type=Text)
    text.insert(len(text), change)
    await room.apply_update(peer, peer.doc.get_update(before))


async def edit_until_unloaded(
    manager: RoomManager, unloads: Unloads, document_id: str, *changes: str
) -> DocumentRoom:
    """Join as a writer, type each change, leave, and wait until the room is unloaded."""
    writer = RecordingPeer()
    room = await manager.join(document_id, writer, "write")
    for change in changes:
        await type_into(room, writer, change)
    await manager.leave(document_id, writer)
    await unloads.wait_for(document_id)
    return room


async def test_concurrent_joins_of_an_unloaded_document_load_it_once(store: UpdateStore) -> None:
    loads: list[str] = []

    async def on_load(document_id: str, room: DocumentRoom) -> None:
        loads.append(document_id)

    document_id = next(_names)
    async with RoomManager(store, hooks=Hooks(on_load=[on_load])) as manager:
        peers = [RecordingPeer(user_id=n) for n in range(20)]
        rooms = await asyncio.gather(*(manager.join(document_id, p, "write") for p in peers))
        assert loads == [document_id]
        assert all(room is rooms[0] for room in rooms) and len(rooms[0].peers) == 20


async def test_a_rejoin_after_unload_reads_the_same_text_from_the_log(store: UpdateStore) -> None:
    document_id = next(_names)
    unloads, options = unloading()
    async with RoomManager(store, **options) as manager:
        first = await edit_until_unloaded(manager, unloads, document_id, "persisted")
        assert manager.get(document_id) is None
        again = await manager.join(document_id, RecordingPeer(), "read")
    assert again is not first and text_of(again) == "persisted"


async def test_a_failed_load_raises_and_leaves_no_room(database_url: str) -> None:
    engine = create_engine(database_url).execution_options(
        schema_translate_map={None: "rcms_missing_schema"}
    )
    async with UpdateStore(session_factory(engine)) as broken, RoomManager(broken) as manager:
        with pytest.raises(DBAPIError):
            await manager.join("notes.unreachable", RecordingPeer(), "write")
        assert manager.get("notes.unreachable") is None and manager.rooms == {}
    await engine.dispose()


async def test_a_load_that_failed_is_tried_again_on_the_next_join(
    sessions: SessionFactory, database_url: str
) -> None:
    engine = create_engine(database_url)
    flaky = session_factory(engine.execution_options(schema_translate_map={None: "gone"}))
    async with UpdateStore(flaky) as store, RoomManager(store) as manager:
        with pytest.raises(DBAPIError):
            await manager.join("notes.flaky", RecordingPeer(), "write")
        flaky.configure(bind=engine)  # the database is back
        room = await manager.join("notes.flaky", RecordingPeer(), "write")
        assert manager.get("notes.flaky") is room
    await engine.dispose()


async def test_an_idle_room_is_unloaded_and_an_occupied_one_is_kept(store: UpdateStore) -> None:
    idle_id, busy_id, peer = next(_names), next(_names), RecordingPeer()
    unloads, options = unloading()
    async with RoomManager(store, **options) as manager:
        await manager.join(idle_id, peer, "write")
        busy = await manager.join(busy_id, RecordingPeer(), "write")
        await manager.leave(idle_id, peer)
        await unloads.wait_for(idle_id)
        assert manager.get(idle_id) is None and manager.get(busy_id) is busy
        assert unloads.ids == [idle_id]


async def test_a_room_emptied_without_the_manager_is_unloaded_too(store: UpdateStore) -> None:
    document_id, peer = next(_names), RecordingPeer()
    unloads, options = unloading()
    async with RoomManager(store, **options) as manager:
        room = await manager.join(document_id, peer, "write")
        await room.set_level(peer.id, None)  # as a transport re-checking access does
        await unloads.wait_for(document_id)
        assert manager.get(document_id) is None


async def test_a_long_log_is_compacted_on_unload_and_keeps_the_text(store: UpdateStore) -> None:
    document_id, changes = next(_names), [f"{n}," for n in range(20)]
    unloads, options = unloading(quick(compact_min_rows=5))
    async with RoomManager(store, **options) as manager:
        await edit_until_unloaded(manager, unloads, document_id, *changes)
        assert (await store.log_stats(document_id))[0] == 0
        again = await manager.join(document_id, RecordingPeer(), "read")
    assert text_of(again) == "".join(changes)


async def test_a_short_log_is_not_compacted_on_unload(store: UpdateStore) -> None:
    document_id = next(_names)
    unloads, options = unloading()
    async with RoomManager(store, **options) as manager:
        await edit_until_unloaded(manager, unloads, document_id, "short", " log")
    assert (await store.log_stats(document_id))[0] == 2


async def test_a_failing_compaction_is_logged_and_the_room_still_unloads(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    engine = create_engine(database_url)
    sessions = session_factory(engine)
    document_id, writer = next(_names), RecordingPeer()
    unloads, options = unloading(quick(compact_min_rows=1))
    async with (
        UpdateStore(sessions) as store,
        RoomManager(store, **options) as rooms,
    ):
        room = await rooms.join(document_id, writer, "write")
        await type_into(room, writer, "kept in the log")
        sessions.configure(bind=engine.execution_options(schema_translate_map={None: "gone"}))
        await rooms.leave(document_id, writer)
        await unloads.wait_for(document_id)
        sessions.configure(bind=engine)
        assert text_of(await rooms.join(document_id, RecordingPeer(), "read")) == "kept in the log"
    await engine.dispose()
    assert f"compacting document {document_id} failed" in caplog.text


async def test_two_hundred_documents_opened_and_left_are_all_unloaded(store: UpdateStore) -> None:
    names = [next(_names) for _ in range(200)]
    unloads, options = unloading()
    async with RoomManager(store, **options) as manager:
        for document_id in names:
            peer = RecordingPeer()
            room = await manager.join(document_id, peer, "write")
            await type_into(room, peer, document_id)
            await manager.leave(document_id, peer)
        await unloads.wait_for(*names)
        assert manager.rooms == {}


async def test_revoking_to_read_stops_writes_and_tells_every_peer_of_the_user(
    store: UpdateStore,
) -> None:
    document_id = next(_names)
    tab1, tab2, other = RecordingPeer(user_id=5), RecordingPeer(user_id=5), RecordingPeer(user_id=6)
    async with RoomManager(store) as manager:
        for peer in (tab1, tab2, other):
            room = await manager.join(document_id, peer, "write")
        await manager.revoke(document_id, 5, "read")
        with pytest.raises(Forbidden):
            await type_into(room, tab1, "no")
        await type_into(room, other, "yes")
    assert (tab1.levels, tab2.levels, other.levels) == (["read"], ["read"], [])


async def test_revoking_access_removes_the_users_peers(store: UpdateStore) -> None:
    document_id, gone, stays = next(_names), RecordingPeer(user_id=5), RecordingPeer(user_id=6)
    async with RoomManager(store) as manager:
        await manager.join(document_id, gone, "write")
        room = await manager.join(document_id, stays, "read")
        await manager.revoke(document_id, 5, None)
        assert gone.levels == [None] and room.peers == [stays]


async def test_a_remote_update_reaches_the_peers_without_being_logged(store: UpdateStore) -> None:
    document_id, reader = next(_names), RecordingPeer()
    async with RoomManager(store) as manager:
        await manager.apply_remote(document_id, b"\x00\x00")  # not loaded here: ignored
        await manager.join(document_id, reader, "read")
        origin: Doc = Doc()
        origin.get(ROOT, type=Text).insert(0, "from node 2")
        await manager.apply_remote(document_id, origin.get_update())
    assert str(reader.doc.get(ROOT, type=Text)) == "from node 2"
    assert await store.log_stats(document_id) == (0, 0)


async def test_stopping_unloads_every_room_and_refuses_new_joins(store: UpdateStore) -> None:
    names = [next(_names) for _ in range(3)]
    unloads, options = unloading(RoomLimits())
    manager = RoomManager(store, **options)
    async with manager:
        for document_id in names:
            await manager.join(document_id, RecordingPeer(), "write")
    assert sorted(unloads.ids) == sorted(names) and manager.rooms == {}
    with pytest.raises(Unavailable) as caught:
        await manager.join(names[0], RecordingPeer(), "write")
    assert caught.value.code == "collab_stopped"


async def test_a_manager_starts_only_once(store: UpdateStore) -> None:
    manager = RoomManager(store)
    async with manager:
        with pytest.raises(RuntimeError):
            await manager.__aenter__()
