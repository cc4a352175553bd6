"""Acknowledged means in the document: held updates, per-sender budgets, ack deadlines."""

from __future__ import annotations

import asyncio

import pytest

from realtime_cms.collab.store import UpdateStore
from realtime_cms.db import create_engine, session_factory
from realtime_cms.errors import Conflict, Invalid, Unavailable
from tests.collab.test_room import logged_text, new_room, seat, text_of


async def test_an_update_with_missing_dependencies_is_held_unapplied_and_its_sender_asked(
    store: UpdateStore,
) -> None:
    room = new_room(store)
    writer, other = seat(room), seat(room, user_id=2)
    writer.edit("one")
    ack = await room.accept_update(writer, writer.edit(" two"))
    await asyncio.sleep(0.05)
    assert not ack.done()
    assert (text_of(room), room.held_count, room.pending_count, other.updates) == ("", 1, 0, [])
    assert writer.sync_requests == [room.state_vector()]
    assert await logged_text(store, room) == ""


async def test_a_held_update_is_acknowledged_once_the_sender_answers_the_sync_request(
    store: UpdateStore,
) -> None:
    room = new_room(store)
    writer, other = seat(room), seat(room, user_id=2)
    writer.edit("one")
    ack = await room.accept_update(writer, writer.edit(" two"))
    answer = writer.doc.get_update(writer.sync_requests[-1])
    await room.apply_update(writer, answer)
    await asyncio.wait_for(ack, 5)
    assert (text_of(room), str(other.text), room.held_count) == ("one two", "one two", 0)
    assert await logged_text(store, room) == "one two"


async def test_held_updates_integrate_in_order_when_what_they_lack_arrives(
    store: UpdateStore,
) -> None:
    room = new_room(store)
    writer = seat(room)
    first = writer.edit("a")
    acks = [await room.accept_update(writer, writer.edit(c)) for c in "bcd"]
    assert writer.sync_requests and room.held_count == 3
    await room.apply_update(writer, first)
    await asyncio.wait_for(asyncio.gather(*acks), 5)
    assert text_of(room) == "abcd" == await logged_text(store, room)


async def test_a_held_update_whose_dependencies_never_come_fails_at_the_deadline(
    store: UpdateStore,
) -> None:
    room = new_room(store, ack_deadline_seconds=0.2)
    writer = seat(room)
    writer.edit("withheld")
    ack = await room.accept_update(writer, writer.edit("!"))
    with pytest.raises(Unavailable) as caught:
        await asyncio.wait_for(ack, 5)
    assert caught.value.code == "missing_dependencies"
    assert room.held_count == 0 and text_of(room) == ""


async def test_held_updates_are_budgeted_per_sender_and_nobody_else_is_locked_out(
    store: UpdateStore,
) -> None:
    room = new_room(store, max_pending=2)
    offender, honest = seat(room), seat(room, user_id=2)
    offender.edit("withheld")
    for mark in "!?":
        await room.accept_update(offender, offender.edit(mark))
    honest.edit("also withheld")
    await room.accept_update(honest, honest.edit("."))  # its own budget is untouched
    with pytest.raises(Invalid) as caught:
        await room.accept_update(offender, offender.edit("#"))
    assert caught.value.code == "too_many_pending"
    joiner = seat(room, user_id=3)
    await room.apply_update(joiner, joiner.edit("still open"))
    # The offender's held updates were all refused with it: it syncs again from scratch.
    assert text_of(room) == "still open" and room.held_count == 1
    await room.apply_update(offender, offender.doc.get_update(room.state_vector()))
    assert "withheld!?#" in text_of(room)


async def test_a_leaving_sender_takes_its_held_updates_along(store: UpdateStore) -> None:
    room = new_room(store)
    writer = seat(room)
    writer.edit("withheld")
    ack = await room.accept_update(writer, writer.edit("!"))
    await room.remove_peer(writer)
    with pytest.raises(Unavailable):
        await asyncio.wait_for(ack, 5)
    assert room.held_count == 0


async def test_a_caller_that_cannot_be_asked_is_refused_at_once(store: UpdateStore) -> None:
    room = new_room(store)
    writer = seat(room)
    writer.edit("withheld")
    with pytest.raises(Conflict) as caught:
        await room.accept_update(writer, writer.edit("!"), hold=False)
    assert caught.value.code == "missing_dependencies" and room.held_count == 0


async def test_an_update_not_committed_in_time_is_answered_store_unavailable_then_written(
    database_url: str, store: UpdateStore
) -> None:
    """A failing database is not a refusal: the ack says "not saved yet" by the deadline,
    the room keeps writing the update, and once the database is back it is in the log,
    once, and a resend of it is acknowledged."""
    engine = create_engine(database_url)
    sessions = session_factory(engine.execution_options(schema_translate_map={None: "gone"}))
    async with UpdateStore(sessions, commit_window=0) as flaky:
        room = new_room(flaky, ack_deadline_seconds=0.3)
        writer, other = seat(room), seat(room, user_id=2)
        update = writer.edit("retried")
        with pytest.raises(Unavailable) as caught:
            await room.apply_update(writer, update)
        assert caught.value.code == "store_unavailable"
        assert room.has_unwritten
        sessions.configure(bind=engine)  # the database is back; the room retries by itself
        for _ in range(100):
            if not room.has_unwritten:
                break
            await asyncio.sleep(0.05)
        await asyncio.wait_for(room.apply_update(writer, update), 5)
        rows, _ = await store.log_stats(room.document_id)
    await engine.dispose()
    assert text_of(room) == "retried" == str(other.text) == await logged_text(store, room)
    assert rows == 1


async def test_acks_after_a_failed_commit_wait_for_it_to_be_written(
    database_url: str, store: UpdateStore
) -> None:
    """An ack never says "saved" while a change applied before it is still unwritten."""
    engine = create_engine(database_url)
    sessions = session_factory(engine.execution_options(schema_translate_map={None: "gone"}))
    async with UpdateStore(sessions, commit_window=0) as flaky:
        room = new_room(flaky, ack_deadline_seconds=5)
        alice, bob = seat(room), seat(room, user_id=2)
        first = await room.accept_update(alice, alice.edit("first"))
        await asyncio.sleep(0.2)
        second = await room.accept_update(bob, bob.edit(" second"))
        await asyncio.sleep(0.2)
        assert not first.done() and not second.done()
        sessions.configure(bind=engine)
        await asyncio.wait_for(asyncio.gather(first, second), 10)
    await engine.dispose()
    assert await logged_text(store, room) == text_of(room) == "first second"
