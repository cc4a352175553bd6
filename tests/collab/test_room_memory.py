"""A quiet room drops its shadow copy: the memory comes back, and the next update behaves.

The shadow holds as much history as the live document (pycrdt's Rust heap, which neither
Python's cycle collector nor tracemalloc sees), so memory is read from glibc's `mallinfo2`.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import random

import pytest
from pycrdt import Doc, Text

from realtime_cms.collab.manager import RoomLimits, RoomManager
from realtime_cms.collab.store import UpdateStore
from tests.collab.test_room import ROOT, RecordingPeer, logged_text, new_room, seat, text_of
from tests.support.live import eventually

QUIET = 5.0
ROOMS = 10


class _Mallinfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost"
        ).split()
    ]


def heap_in_use() -> int:
    """Bytes malloc has handed out and not had back (every arena), after a collection."""
    libc = ctypes.CDLL(None)
    if not hasattr(libc, "mallinfo2"):
        pytest.skip("not glibc: no mallinfo2 to read the heap with")
    libc.mallinfo2.restype = _Mallinfo2
    gc.collect()
    info = libc.mallinfo2()
    return int(info.uordblks + info.hblkhd)


def history(edits: int = 6000, seed: int = 1) -> bytes:
    """A text typed a character at a time at scattered places, with deletions: one update
    that leaves a document holding thousands of items for 4,000 characters."""
    doc: Doc = Doc()
    text = doc.get(ROOT, type=Text)
    rng = random.Random(seed)
    for i in range(edits):
        if len(text) > 4000:
            start = rng.randint(0, len(text) - 40)
            del text[start : start + 40]
        else:
            text.insert(rng.randint(0, len(text)), "abcdefgh"[i % 8])
    return doc.get_update()


def copy_bytes(update: bytes, copies: int = 5) -> float:
    """What one Doc holding `update` costs on the heap, measured on `copies` of them."""
    before = heap_in_use()
    docs = []
    for _ in range(copies):
        doc: Doc = Doc()
        doc.apply_update(update)
        docs.append(doc)
    cost = (heap_in_use() - before) / copies
    del docs, doc
    return cost


def now() -> float:
    return asyncio.get_running_loop().time()


async def test_a_room_quiet_for_the_limit_drops_its_shadow_and_not_before(
    store: UpdateStore,
) -> None:
    room = new_room(store, shadow_idle_seconds=QUIET)
    writer = seat(room)
    assert not room.holds_shadow  # built on the first update, not on load
    await room.apply_update(writer, writer.edit("typed"))
    assert room.holds_shadow
    assert not room.shed_shadow(now() + QUIET * 0.9)
    assert room.holds_shadow
    assert room.shed_shadow(now() + QUIET)
    assert not room.holds_shadow
    assert not room.shed_shadow(now() + QUIET)  # nothing left to drop


async def test_the_next_update_after_a_drop_is_applied_sent_and_logged(
    store: UpdateStore,
) -> None:
    room = new_room(store, shadow_idle_seconds=QUIET)
    writer, other = seat(room), seat(room, user_id=2)
    await room.apply_update(writer, writer.edit("before"))
    assert room.shed_shadow(now() + QUIET)
    await room.apply_update(writer, writer.edit(" after"))
    assert room.holds_shadow
    assert text_of(room) == "before after" == str(other.text) == await logged_text(store, room)


async def test_a_repeated_update_after_a_drop_is_not_logged_or_sent_again(
    store: UpdateStore,
) -> None:
    room = new_room(store, shadow_idle_seconds=QUIET)
    writer, other = seat(room), seat(room, user_id=2)
    update = writer.edit("once")
    await room.apply_update(writer, update)
    rows = await store.log_stats(room.document_id)
    assert room.shed_shadow(now() + QUIET)
    await room.apply_update(writer, update)
    assert room.shed_shadow(now() + QUIET)
    await room.apply_update(writer, writer.doc.get_update())
    assert await store.log_stats(room.document_id) == rows
    assert len(other.updates) == 1


async def test_a_held_update_integrates_when_its_dependency_comes_after_a_drop(
    store: UpdateStore,
) -> None:
    room = new_room(store, shadow_idle_seconds=QUIET)
    writer, other = seat(room), seat(room, user_id=2)
    withheld = writer.edit("one")
    ack = await room.accept_update(writer, writer.edit(" two"))
    await room.apply_update(other, other.edit("x"))  # the shadow is built again
    assert room.held_count == 1 and room.shed_shadow(now() + QUIET)
    await room.apply_update(writer, withheld)
    await asyncio.wait_for(ack, 5)
    assert room.held_count == 0
    assert "one two" in text_of(room) and "x" in text_of(room)
    assert text_of(room) == str(other.text) == await logged_text(store, room)


async def test_a_pending_row_is_kept_across_a_drop_and_integrates_later(
    store: UpdateStore,
) -> None:
    room = new_room(store, shadow_idle_seconds=QUIET)
    reader = seat(room, "read")
    elsewhere = RecordingPeer()
    first = elsewhere.edit("first")
    await room.apply_remote(elsewhere.edit(" second"))
    assert room.pending_count == 1 and room.shed_shadow(now() + QUIET)
    # Rebuilt from the live document and the pending row: the row is not taken for new.
    await room.apply_remote(elsewhere.edit(" third"))
    assert room.pending_count == 2 and text_of(room) == ""
    await room.apply_remote(first)
    assert room.pending_count == 0
    assert text_of(room) == "first second third" == str(reader.text)


async def test_the_sweep_drops_quiet_rooms_shadows_and_their_memory_comes_back(
    store: UpdateStore,
) -> None:
    """Rooms whose peers stay seated are never unloaded: their shadows go all the same."""
    update = history()
    copy = copy_bytes(update)
    expected: Doc = Doc()
    expected.apply_update(update)
    limits = RoomLimits(shadow_idle_seconds=1.0, idle_unload_seconds=600)
    async with RoomManager(store, limits) as manager:
        seated = []
        for n in range(ROOMS):
            writer = RecordingPeer()
            writer.doc.apply_update(update)
            room = await manager.join(f"notes.quiet-{n}-{id(manager)}", writer, "write")
            await room.apply_update(writer, update)
            seated.append((room, writer))
        # Opening takes a commit per room: touch every shadow again at once (the commits
        # are not waited for) so that none is quiet yet when the heap is read.
        acks = [await room.accept_update(writer, writer.edit("!")) for room, writer in seated]
        held = heap_in_use()
        assert all(room.holds_shadow for room, _ in seated)
        await asyncio.gather(*acks)
        await eventually(lambda: not any(room.holds_shadow for room, _ in seated))
        freed = held - heap_in_use()
        assert len(manager.rooms) == ROOMS
        texts = {text_of(room) for room, _ in seated}
    print(
        f"\nquiet rooms: one copy {copy / 1e6:.2f} MB; {ROOMS} shadows dropped {freed / 1e6:.2f} MB"
    )
    assert copy > 0
    assert freed > 0.75 * ROOMS * copy
    assert texts == {str(expected.get(ROOT, type=Text)) + "!"}
