"""DocumentRoom: convergence, access, untrusted updates, pending bounds, awareness, durability."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
from pycrdt import Doc, Text

from realtime_cms.collab.access import Level
from realtime_cms.collab.hooks import Hooks
from realtime_cms.collab.peer import Peer, RoomLimits
from realtime_cms.collab.protocol import AwarenessEntry, decode_awareness_update
from realtime_cms.collab.protocol import encode_awareness_update as encode
from realtime_cms.collab.room import DocumentRoom
from realtime_cms.collab.store import UpdateStore
from realtime_cms.db import create_engine, session_factory
from realtime_cms.errors import CMSError, Forbidden, Invalid, PayloadTooLarge, Unavailable
from realtime_cms.principal import Principal

ROOT = "body"
_ids = iter(range(1, 1_000_000))


@dataclass(eq=False)
class RecordingPeer:
    """What a transport is to a room: it records what it was sent and keeps a client Doc.

    Updates it receives are applied to `doc`, as the browser behind a transport would.
    Not a stand-in for any of our code: transports implement `Peer` exactly like this.
    """

    user_id: int | None = 1
    id: str = field(default_factory=lambda: f"peer-{next(_ids)}")
    doc: Doc = field(default_factory=Doc)
    updates: list[bytes] = field(default_factory=list)
    awareness: list[list[AwarenessEntry]] = field(default_factory=list)
    levels: list[Level | None] = field(default_factory=list)
    sync_requests: list[bytes] = field(default_factory=list)
    notices: list[dict[str, Any]] = field(default_factory=list)
    full_name: str = ""

    @property
    def principal(self) -> Principal:
        return Principal(
            user_id=self.user_id, username=f"user{self.user_id}", full_name=self.full_name
        )

    @property
    def text(self) -> Text:
        return self.doc.get(ROOT, type=Text)

    async def send_update(self, document_id: str, update: bytes) -> None:
        self.updates.append(update)
        self.doc.apply_update(update)

    async def send_awareness(self, document_id: str, awareness_update: bytes) -> None:
        self.awareness.append(decode_awareness_update(awareness_update, max_state_bytes=1 << 20))

    async def send_level(self, document_id: str, level: Level | None) -> None:
        self.levels.append(level)

    async def send_sync_request(self, document_id: str, state_vector: bytes) -> None:
        self.sync_requests.append(state_vector)

    async def send_notice(self, document_id: str, notice: Mapping[str, Any]) -> None:
        self.notices.append(dict(notice))

    def edit(self, change: str, at: int | None = None) -> bytes:
        """Type `change` into the client doc; returns the update the browser would send."""
        before = self.doc.get_state()
        self.text.insert(len(self.text) if at is None else at, change)
        return self.doc.get_update(before)


@pytest.fixture(scope="module")
async def broken_store(database_url: str) -> AsyncIterator[UpdateStore]:
    """A running store whose every statement fails: it names a schema that does not exist."""
    engine = create_engine(database_url).execution_options(
        schema_translate_map={None: "rcms_missing_schema"}
    )
    async with UpdateStore(session_factory(engine), commit_window=0) as store:
        yield store
    await engine.dispose()


_doc_ids = (f"notes.room-{n}" for n in range(1, 1_000_000))


def new_room(store: UpdateStore, **limits: float) -> DocumentRoom:
    return DocumentRoom(
        next(_doc_ids), Doc(), store=store, limits=RoomLimits(**limits), hooks=Hooks()
    )


def seat(room: DocumentRoom, level: Level = "write", user_id: int = 1) -> RecordingPeer:
    peer = RecordingPeer(user_id=user_id)
    room.add_peer(peer, level)
    return peer


def text_of(room: DocumentRoom) -> str:
    doc: Doc = Doc()
    doc.apply_update(room.sync_step1_reply(b"\x00"))
    return str(doc.get(ROOT, type=Text))


async def logged_text(store: UpdateStore, room: DocumentRoom) -> str:
    doc: Doc = Doc()
    (await store.load(room.document_id)).apply_to(doc)
    return str(doc.get(ROOT, type=Text))


async def test_two_writers_converge_and_the_log_holds_the_result(store: UpdateStore) -> None:
    room = new_room(store)
    alice, bob = seat(room), seat(room, user_id=2)
    await room.apply_update(alice, alice.edit("hello"))
    first, second = alice.edit(" world"), bob.edit("Hey, ", at=0)
    await asyncio.gather(room.apply_update(alice, first), room.apply_update(bob, second))
    assert str(alice.text) == str(bob.text) == text_of(room) == "Hey, hello world"
    assert await logged_text(store, room) == "Hey, hello world"


async def test_the_sender_is_not_sent_its_own_update(store: UpdateStore) -> None:
    room = new_room(store)
    alice, bob = seat(room), seat(room, user_id=2)
    await room.apply_update(alice, alice.edit("x"))
    assert (len(alice.updates), len(bob.updates)) == (0, 1)


async def test_sync_step1_reply_is_what_the_peer_is_missing(store: UpdateStore) -> None:
    room = new_room(store)
    alice = seat(room)
    await room.apply_update(alice, alice.edit("abc"))
    late: Doc = Doc()
    late.apply_update(room.sync_step1_reply(late.get_state()))
    assert str(late.get(ROOT, type=Text)) == "abc"
    assert room.state_vector() == late.get_state()


@pytest.mark.parametrize("vector", [b"", b"\x01", b"\x01\x05", b"\x00junk", b"\xff" * 9])
async def test_a_malformed_state_vector_is_invalid(store: UpdateStore, vector: bytes) -> None:
    with pytest.raises(Invalid) as caught:
        new_room(store).sync_step1_reply(vector)
    assert caught.value.code == "invalid_state_vector"


async def test_a_notice_reaches_every_seated_peer_and_no_one_who_left(
    store: UpdateStore,
) -> None:
    room = new_room(store)
    reader, writer, gone = seat(room, "read"), seat(room, user_id=2), seat(room, user_id=3)
    await room.remove_peer(gone)
    await room.send_notice({"kind": "schedule", "status": "scheduled"})
    assert reader.notices == writer.notices == [{"kind": "schedule", "status": "scheduled"}]
    assert gone.notices == []


async def test_a_reader_cannot_write_and_nothing_changes(store: UpdateStore) -> None:
    room = new_room(store)
    writer, reader = seat(room), seat(room, "read", user_id=2)
    await room.apply_update(writer, writer.edit("kept"))
    with pytest.raises(Forbidden) as caught:
        await room.apply_update(reader, reader.edit("NO"))
    assert caught.value.code == "read_only"
    assert text_of(room) == "kept" and len(writer.updates) == 0
    assert await logged_text(store, room) == "kept"


async def test_a_peer_that_has_not_joined_cannot_write(store: UpdateStore) -> None:
    stranger = RecordingPeer()
    with pytest.raises(Forbidden) as caught:
        await new_room(store).apply_update(stranger, stranger.edit("x"))
    assert caught.value.code == "not_joined"


async def test_an_oversized_update_is_refused_unread(store: UpdateStore) -> None:
    room = new_room(store, max_update_bytes=64)
    writer = seat(room)
    with pytest.raises(PayloadTooLarge) as caught:
        await room.apply_update(writer, writer.edit("y" * 100))
    assert caught.value.code == "update_too_large" and text_of(room) == ""


async def test_every_truncation_of_an_update_is_refused(store: UpdateStore) -> None:
    room = new_room(store)
    writer = seat(room)
    await room.apply_update(writer, writer.edit("base"))
    update = writer.edit(" and more", at=2)
    for end in range(len(update)):
        with pytest.raises(Invalid):
            await room.apply_update(writer, update[:end])
    assert text_of(room) == "base"
    await room.apply_update(writer, update)
    assert text_of(room) == "ba and morese"


def mutations(updates: list[bytes], count: int, seed: int) -> Iterator[bytes]:
    """Bit flips, byte swaps, cuts, splices and junk over real updates."""
    rng = random.Random(seed)
    for _ in range(count):
        data = bytearray(rng.choice(updates))
        for _ in range(rng.randint(1, 4)):
            pos = rng.randrange(len(data) + 1)
            match rng.randrange(5):
                case 0 if pos < len(data):
                    data[pos] ^= 1 << rng.randrange(8)
                case 1 if pos < len(data):
                    data[pos] = rng.choice([0, 1, 0x7F, 0x80, 0xFF, rng.randrange(256)])
                case 2:
                    del data[pos:]
                case 3:
                    data[pos:pos] = rng.randbytes(rng.randint(1, 8))
                case _:
                    data[pos:pos] = rng.choice(updates)[: rng.randint(1, 12)]
        yield bytes(data)


async def fuzz(room: DocumentRoom, count: int) -> int:
    """Send `count` mutations of a writer's real updates; returns how many were refused.

    Each refusal must leave the text as it was, and nothing but a CMSError may come out:
    a pycrdt panic (a BaseException) would fail the test. Variants that are valid updates
    (a flipped client id makes a new client) are applied like any other.
    """
    writer = seat(room)
    real = [writer.edit(word, at=0) for word in ("alpha ", "beta ", "gamma ")]
    for update in real:
        await room.apply_update(writer, update)
    del writer.text[0:3]
    real.append(writer.doc.get_update())
    refused, before = 0, text_of(room)
    for variant in mutations(real, count, seed=7):
        try:
            # Not awaited: a variant that lacks dependencies is held until the deadline.
            await room.accept_update(writer, variant)
        except CMSError:
            refused += 1
            assert text_of(room) == before
        before = text_of(room)
    await room.drain()  # every accepted variant is in the log
    return refused


async def test_refused_mutated_updates_change_nothing(store: UpdateStore) -> None:
    assert await fuzz(new_room(store), 2000) > 1000


async def test_the_log_reproduces_the_room_after_mutated_updates(store: UpdateStore) -> None:
    """Without pending updates: with them, forged duplicate ids may integrate in another
    order on replay (Yjs assumes ids are never reused), so the texts could differ."""
    room = new_room(store, max_pending=0)
    await fuzz(room, 2000)
    assert await logged_text(store, room) == text_of(room)


async def test_a_repeated_update_is_not_logged_again(store: UpdateStore) -> None:
    room = new_room(store)
    writer, other = seat(room), seat(room, user_id=2)
    update = writer.edit("once")
    await room.apply_update(writer, update)
    rows = await store.log_stats(room.document_id)
    await room.apply_update(writer, writer.doc.get_update())
    await room.apply_update(writer, update)
    assert await store.log_stats(room.document_id) == rows
    assert len(other.updates) == 1


async def test_a_stopped_store_refuses_the_update_and_changes_nothing(database_url: str) -> None:
    engine = create_engine(database_url)
    async with UpdateStore(session_factory(engine), commit_window=0) as stopping:
        room = new_room(stopping)
        writer, other = seat(room), seat(room, user_id=2)
        await room.apply_update(writer, writer.edit("kept"))
    await engine.dispose()
    with pytest.raises(Unavailable) as caught:
        await room.apply_update(writer, writer.edit(" refused"))
    assert caught.value.code == "store_failed"
    assert text_of(room) == "kept" == str(other.text)
    # The twin forgot the refused edit too: a change made on top of it waits for it.
    await room.apply_remote(writer.edit(" on top"))
    assert room.pending_count == 1 and text_of(room) == "kept"


async def test_a_cancelled_sender_does_not_abandon_its_update(store: UpdateStore) -> None:
    room = new_room(store)
    writer, other = seat(room), seat(room, user_id=2)
    sending = asyncio.create_task(room.apply_update(writer, writer.edit("durable")))
    await asyncio.sleep(0)
    sending.cancel()
    await room.drain()
    assert text_of(room) == "durable" == str(other.text) == await logged_text(store, room)


async def test_change_hooks_run_in_order_and_a_failing_one_is_only_logged(
    store: UpdateStore, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[tuple[str, str, str | None]] = []

    async def fails(document_id: str, update: bytes, peer: Peer | None) -> None:
        raise RuntimeError("hook down")

    async def records(document_id: str, update: bytes, peer: Peer | None) -> None:
        seen.append((document_id, update.hex(), peer.id if peer else None))

    hooks = Hooks(on_change=[fails, records])
    room = DocumentRoom("notes.hooked", Doc(), store=store, limits=RoomLimits(), hooks=hooks)
    writer = seat(room)
    update = writer.edit("hooked")
    await room.apply_update(writer, update)
    assert seen == [("notes.hooked", update.hex(), writer.id)]
    assert "hook down" in caplog.text


async def test_change_hooks_get_every_room_s_commits_in_commit_order(store: UpdateStore) -> None:
    seen: list[tuple[str, bytes]] = []

    async def records(document_id: str, update: bytes, peer: Peer | None) -> None:
        seen.append((document_id, update))

    hooks = Hooks(on_change=[records])
    rooms = [
        DocumentRoom(next(_doc_ids), Doc(), store=store, limits=RoomLimits(), hooks=hooks)
        for _ in range(2)
    ]
    first, second = seat(rooms[0]), seat(rooms[1])
    one, two = first.edit("one"), second.edit("two")
    # Queued together: one group commit settles both.
    durable = [await rooms[0].accept_update(first, one), await rooms[1].accept_update(second, two)]
    await asyncio.gather(*durable)
    three = first.edit("three")
    await rooms[0].apply_update(first, three)
    ids = [room.document_id for room in rooms]
    assert seen == [(ids[0], one), (ids[1], two), (ids[0], three)]


async def test_a_remote_update_is_applied_and_sent_but_not_logged(store: UpdateStore) -> None:
    room = new_room(store)
    reader = seat(room, "read")
    elsewhere = RecordingPeer()
    await room.apply_remote(elsewhere.edit("relayed"))
    assert text_of(room) == "relayed" == str(reader.text)
    assert await store.log_stats(room.document_id) == (0, 0)


def awareness(client_id: int, clock: int, state: dict[str, object] | None = None) -> bytes:
    return encode([AwarenessEntry(client_id, clock, state)])


def stamped(state: dict[str, object], user_id: int = 1) -> dict[str, object]:
    """A state as the room sends it on: the sender's identity in `user`."""
    return {**state, "user": {"id": user_id, "name": f"user{user_id}"}}


async def test_awareness_carries_the_senders_identity_whatever_it_claims(
    store: UpdateStore,
) -> None:
    room = new_room(store)
    mallory, other = seat(room, "read", user_id=6), seat(room, user_id=2)
    claim = {"user": {"id": 1, "name": "admin", "color": "#f00"}, "cursor": 1}
    await room.apply_awareness(mallory, awareness(11, 1, claim))
    sent = {"user": {"id": 6, "name": "user6", "color": "#f00"}, "cursor": 1}
    assert other.awareness == [[AwarenessEntry(11, 1, sent)]]
    assert decode_awareness_update(room.awareness_snapshot(), max_state_bytes=1024) == [
        AwarenessEntry(11, 1, sent)
    ]


async def test_awareness_carries_the_senders_full_name_when_the_account_has_one(
    store: UpdateStore,
) -> None:
    room = new_room(store)
    ada, other = seat(room, user_id=3), seat(room, user_id=2)
    ada.full_name = "Ada Lovelace"
    await room.apply_awareness(ada, awareness(11, 1, {"user": {"name": "Grace"}}))
    assert other.awareness == [[AwarenessEntry(11, 1, {"user": {"id": 3, "name": "Ada Lovelace"}})]]


async def test_awareness_is_sent_to_the_others_and_kept_for_joiners(store: UpdateStore) -> None:
    room = new_room(store)
    reader, other = seat(room, "read"), seat(room, user_id=2)
    await room.apply_awareness(reader, awareness(11, 1, {"cursor": 3}))
    assert other.awareness == [[AwarenessEntry(11, 1, stamped({"cursor": 3}))]]
    assert reader.awareness == []
    assert decode_awareness_update(room.awareness_snapshot(), max_state_bytes=1024) == [
        AwarenessEntry(11, 1, stamped({"cursor": 3}))
    ]


async def test_a_peer_cannot_overwrite_another_users_client_id(store: UpdateStore) -> None:
    room = new_room(store)
    alice, mallory = seat(room), seat(room, user_id=2)
    await room.apply_awareness(alice, awareness(11, 1, {"name": "alice"}))
    with pytest.raises(Forbidden) as caught:
        await room.apply_awareness(
            mallory, encode([AwarenessEntry(12, 1, {}), AwarenessEntry(11, 2, None)])
        )
    assert caught.value.code == "awareness_not_owned"
    assert decode_awareness_update(room.awareness_snapshot(), max_state_bytes=1024) == [
        AwarenessEntry(11, 1, stamped({"name": "alice"}))
    ]


async def test_a_reconnecting_tab_of_the_same_user_takes_its_client_id_over(
    store: UpdateStore,
) -> None:
    room = new_room(store)
    old_tab, new_tab, other = seat(room), seat(room), seat(room, user_id=2)
    await room.apply_awareness(old_tab, awareness(11, 1, {"v": 1}))
    await room.apply_awareness(new_tab, awareness(11, 2, {"v": 2}))
    await room.remove_peer(old_tab)
    assert other.awareness[-1] == [AwarenessEntry(11, 2, stamped({"v": 2}))]


async def test_stale_awareness_is_ignored(store: UpdateStore) -> None:
    room = new_room(store)
    alice, other = seat(room), seat(room, user_id=2)
    await room.apply_awareness(alice, awareness(11, 5, {"v": 5}))
    await room.apply_awareness(alice, awareness(11, 4, {"v": 4}))
    assert other.awareness == [[AwarenessEntry(11, 5, stamped({"v": 5}))]]


async def test_awareness_is_bounded_in_size_and_client_ids(store: UpdateStore) -> None:
    room = new_room(store, max_awareness_bytes=64, max_awareness_clients=2)
    alice = seat(room)
    with pytest.raises(PayloadTooLarge):
        await room.apply_awareness(alice, awareness(1, 1, {"x": "y" * 80}))
    with pytest.raises(Invalid) as caught:
        await room.apply_awareness(alice, encode([AwarenessEntry(n, 1, {}) for n in (1, 2, 3)]))
    assert caught.value.code == "too_many_awareness_clients"
    with pytest.raises(Invalid):
        await room.apply_awareness(alice, b"\x01\x01\x01\x03[1]")


async def test_a_leaving_peer_leaves_no_ghost_cursor(store: UpdateStore) -> None:
    left: list[str] = []

    async def on_disconnect(document_id: str, peer: Peer) -> None:
        left.append(peer.id)

    hooks = Hooks(on_disconnect=[on_disconnect])
    room = DocumentRoom("notes.ghosts", Doc(), store=store, limits=RoomLimits(), hooks=hooks)
    alice, bob = seat(room), seat(room, user_id=2)
    await room.apply_awareness(
        alice, encode([AwarenessEntry(11, 3, {"c": 1}), AwarenessEntry(12, 1, None)])
    )
    await room.remove_peer(alice)
    assert bob.awareness[-1] == [AwarenessEntry(11, 4, None)]
    assert decode_awareness_update(room.awareness_snapshot(), max_state_bytes=64) == []
    assert [peer.id for peer in room.peers] == [bob.id] and left == [alice.id]


async def test_set_level_changes_a_live_peers_rights_and_tells_it(store: UpdateStore) -> None:
    room = new_room(store)
    peer = seat(room, "read")
    await room.set_level(peer.id, "write")
    await room.apply_update(peer, peer.edit("now allowed"))
    assert peer.levels == ["write"] and text_of(room) == "now allowed"


async def test_set_level_none_drops_the_peer_and_tells_it(store: UpdateStore) -> None:
    room = new_room(store)
    peer, other = seat(room), seat(room, user_id=2)
    await room.apply_awareness(peer, awareness(11, 1, {}))
    await room.set_level(peer.id, None)
    assert peer.levels == [None] and room.level_of(peer.id) is None
    assert other.awareness[-1] == [AwarenessEntry(11, 2, None)]
    with pytest.raises(Forbidden):
        await room.apply_update(peer, peer.edit("too late"))


async def test_a_closed_room_refuses_updates(store: UpdateStore) -> None:
    room = new_room(store)
    writer = seat(room)
    await room.drain()
    room.close()
    with pytest.raises(Unavailable) as caught:
        await room.apply_update(writer, writer.edit("late"))
    assert caught.value.code == "room_closed"
