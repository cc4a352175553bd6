"""UpdateStore on SQLite and MariaDB: group-committed appends, reloads, compaction, catch-up."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator

import pycrdt
import pytest
import sqlalchemy as sa
from pycrdt import Doc, Text
from sqlalchemy.ext.asyncio import AsyncEngine

import realtime_cms.models  # noqa: F401  (registers every table)
from realtime_cms.collab.store import (
    CorruptUpdateError,
    StoredDocument,
    UpdateStore,
    apply_rows,
)
from realtime_cms.db import create_engine, session_factory, transaction
from realtime_cms.models.base import Base
from realtime_cms.models.realtime import DocumentSnapshot, DocumentUpdate
from tests.support.servers import MariaDBServer


def new_document() -> str:
    return f"doc-{uuid.uuid4().hex[:12]}"


def edits(count: int, doc: Doc | None = None) -> tuple[list[bytes], str]:
    """`count` one-character edits (inserts, some deletes) as updates, and the final text."""
    doc = doc or Doc()
    text = doc.get("body", type=Text)
    updates: list[bytes] = []
    subscription = doc.observe(lambda event: updates.append(event.update))
    for i in range(count):
        if i % 7 == 6:
            del text[len(text) // 2]
        else:
            text.insert((i * 31) % (len(text) + 1), chr(ord("a") + i % 26))
    doc.unobserve(subscription)
    return updates, str(text)


def text_of(stored: StoredDocument) -> str:
    """Rebuild a document the way a room does: the snapshot, then the log rows."""
    doc = Doc()
    assert stored.apply_to(doc) == []
    return str(doc.get("body", type=Text))


def text_after(updates: list[bytes]) -> str:
    doc = Doc()
    assert apply_rows(doc, list(enumerate(updates))) == []
    return str(doc.get("body", type=Text))


@pytest.fixture(scope="module")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    yield engine
    await engine.dispose()


@pytest.fixture
async def other_engine(database_url: str, engine: AsyncEngine) -> AsyncIterator[AsyncEngine]:
    """A second engine on the same database: another process, as far as the store can tell."""
    other = create_engine(database_url)
    yield other
    await other.dispose()


@pytest.fixture
async def store(engine: AsyncEngine) -> AsyncIterator[UpdateStore]:
    async with UpdateStore(session_factory(engine)) as store:
        yield store


async def row_count(engine: AsyncEngine, document_id: str) -> int:
    query = sa.select(sa.func.count()).where(DocumentUpdate.document_id == document_id)
    async with transaction(session_factory(engine)) as session:
        return int(await session.scalar(query) or 0)


async def test_an_acknowledged_append_is_visible_from_another_engine(
    store: UpdateStore, other_engine: AsyncEngine
) -> None:
    document_id = new_document()
    updates, _ = edits(1)
    row_id = await store.append(document_id, updates[0])
    query = sa.select(DocumentUpdate.update).where(DocumentUpdate.id == row_id)
    async with transaction(session_factory(other_engine)) as session:
        assert await session.scalar(query) == updates[0]


async def test_two_hundred_concurrent_appends_share_one_transaction(
    other_engine: AsyncEngine,
) -> None:
    document_id = new_document()
    updates, _ = edits(200)
    async with UpdateStore(session_factory(other_engine)) as store:
        ids = await asyncio.gather(*(store.append(document_id, u) for u in updates))
    assert len(set(ids)) == 200
    assert store.batches_committed == 1
    assert await row_count(other_engine, document_id) == 200


async def test_a_batch_holds_at_most_max_batch_appends(
    other_engine: AsyncEngine,
) -> None:
    document_id = new_document()
    updates, _ = edits(200)
    async with UpdateStore(session_factory(other_engine), max_batch=50) as store:
        await asyncio.gather(*(store.append(document_id, u) for u in updates))
    assert store.batches_committed == 4


async def test_ids_ascend_per_document_in_call_order(store: UpdateStore) -> None:
    documents = [new_document() for _ in range(3)]
    calls = [(documents[i % 3], bytes([i % 256])) for i in range(90)]
    ids = await asyncio.gather(*(store.append(d, u) for d, u in calls))
    for document_id in documents:
        mine = [row_id for (d, _), row_id in zip(calls, ids, strict=True) if d == document_id]
        assert mine == sorted(mine) and len(set(mine)) == 30


async def test_a_new_store_on_a_new_engine_rebuilds_the_text_of_500_edits(
    store: UpdateStore, other_engine: AsyncEngine
) -> None:
    document_id = new_document()
    updates, text = edits(500)
    await asyncio.gather(*(store.append(document_id, u) for u in updates))
    async with UpdateStore(session_factory(other_engine)) as restarted:
        stored = await restarted.load(document_id)
    assert stored.snapshot is None and len(stored.updates) == 500
    assert text_of(stored) == text


@pytest.mark.parametrize("seed", range(5))
def test_apply_rows_rebuilds_the_text_from_rows_in_any_order(seed: int) -> None:
    updates, text = edits(30)
    rows = list(enumerate(updates))
    random.Random(seed).shuffle(rows)
    doc = Doc()
    assert apply_rows(doc, rows) == []
    assert str(doc.get("body", type=Text)) == text


async def test_an_unknown_document_loads_as_empty(store: UpdateStore) -> None:
    assert await store.load(new_document()) == StoredDocument(None, [], 0)


async def test_compaction_keeps_the_text_and_empties_the_log(store: UpdateStore) -> None:
    document_id = new_document()
    updates, text = edits(300)
    await asyncio.gather(*(store.append(document_id, u) for u in updates))
    result = await store.compact(document_id)
    assert result is not None and (result.folded, result.kept) == (300, 0)
    assert await store.log_stats(document_id) == (0, 0)
    stored = await store.load(document_id)
    assert stored.updates == [] and stored.last_id == result.last_update_id
    assert text_of(stored) == text


async def test_compacting_an_empty_log_writes_nothing(store: UpdateStore) -> None:
    document_id = new_document()
    assert await store.compact(document_id) is None
    assert await store.initialise(document_id, Doc().get_update()) is True


async def test_appends_racing_compactions_are_not_lost(
    store: UpdateStore, other_engine: AsyncEngine
) -> None:
    document_id = new_document()
    updates, text = edits(400)
    compactor = UpdateStore(session_factory(other_engine))
    for start in range(0, 400, 80):
        chunk = updates[start : start + 80]
        await asyncio.gather(
            compactor.compact(document_id), *(store.append(document_id, u) for u in chunk)
        )
        assert text_of(await store.load(document_id)) == text_after(updates[: start + 80])
    await compactor.compact(document_id)
    assert text_of(await store.load(document_id)) == text
    assert await store.log_stats(document_id) == (0, 0)


async def test_a_row_committed_during_a_compaction_is_not_lost(
    backend: str, store: UpdateStore, other_engine: AsyncEngine
) -> None:
    document_id = new_document()
    updates, text = edits(20)
    for update in updates[:-1]:
        await store.append(document_id, update)
    async with other_engine.connect() as conn:
        late = await conn.begin()
        await conn.execute(
            sa.insert(DocumentUpdate).values(document_id=document_id, update=updates[-1])
        )
        compaction = asyncio.create_task(store.compact(document_id))
        if backend == "mariadb":
            # MariaDB compacts without waiting: the uncommitted row is invisible, not deleted.
            result = await compaction
            assert result is not None and result.folded == 19
        await late.commit()
    await compaction
    assert text_of(await store.load(document_id)) == text


async def test_concurrent_compactions_fold_every_row_once(
    store: UpdateStore, other_engine: AsyncEngine
) -> None:
    document_id = new_document()
    updates, text = edits(100)
    await asyncio.gather(*(store.append(document_id, u) for u in updates))
    elsewhere = UpdateStore(session_factory(other_engine))
    results = await asyncio.gather(store.compact(document_id), elsewhere.compact(document_id))
    assert sorted(r.folded for r in results if r is not None) == [100]
    query = sa.select(DocumentSnapshot.update_count).where(
        DocumentSnapshot.document_id == document_id
    )
    async with transaction(session_factory(other_engine)) as session:
        assert await session.scalar(query) == 100
    assert text_of(await store.load(document_id)) == text


async def test_rows_waiting_for_a_missing_dependency_stay_in_the_log(store: UpdateStore) -> None:
    document_id = new_document()
    updates, text = edits(10)
    # Update 3 is not stored yet: the rows that build on it are pending in pycrdt.
    for update in updates[:3] + updates[4:]:
        await store.append(document_id, update)
    result = await store.compact(document_id)
    assert result is not None and result.kept > 0 and result.folded + result.kept == 9
    await store.append(document_id, updates[3])
    assert text_of(await store.load(document_id)) == text
    await store.compact(document_id)
    assert await store.log_stats(document_id) == (0, 0)
    assert text_of(await store.load(document_id)) == text


async def test_a_pending_delete_is_not_folded_away(store: UpdateStore) -> None:
    document_id = new_document()
    doc = Doc()
    inserted, _ = edits(1, doc)
    deleted, text = edits(7, doc)  # the seventh edit deletes a character
    await store.append(document_id, deleted[-1])
    result = await store.compact(document_id)
    assert result is None
    for update in inserted + deleted[:-1]:
        await store.append(document_id, update)
    await store.compact(document_id)
    assert text_of(await store.load(document_id)) == text


async def test_a_corrupt_row_aborts_compaction_and_keeps_the_log(store: UpdateStore) -> None:
    document_id = new_document()
    updates, _ = edits(5)
    for update in [*updates, b"\xff\xff\xff\xff"]:
        await store.append(document_id, update)
    before = await store.log_stats(document_id)
    assert await store.compact(document_id) is None
    assert await store.log_stats(document_id) == before
    assert (await store.load(document_id)).snapshot is None


class FakePanic(BaseException):
    """Stands in for pyo3_runtime.PanicException, which no known input triggers."""


async def test_a_pycrdt_panic_aborts_compaction_and_keeps_the_log(
    store: UpdateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    document_id = new_document()
    updates, _ = edits(5)
    marker = b"\x00\x00panic"
    original = pycrdt.Doc.apply_update

    def apply_update(self: Doc, update: bytes) -> None:
        if update == marker:
            raise FakePanic("called `Option::unwrap()` on a `None` value")
        original(self, update)

    monkeypatch.setattr(pycrdt.Doc, "apply_update", apply_update)
    for update in [*updates, marker]:
        await store.append(document_id, update)
    assert await store.compact(document_id) is None
    assert await store.log_stats(document_id) == (6, sum(map(len, updates)) + len(marker))


async def _refuse_inserts_for(engine: AsyncEngine, document_id: str, refuse: bool) -> None:
    """A trigger that makes the database refuse the document's rows (a real failure of the
    INSERT inside the store's transaction, whichever writer the store uses)."""
    sqlite = engine.dialect.name == "sqlite"
    async with engine.begin() as conn:
        await conn.execute(sa.text("DROP TRIGGER IF EXISTS refuse_updates"))
        if not refuse:
            return
        if sqlite:
            body = "SELECT RAISE(ABORT, 'disk full');"
            when = f"WHEN NEW.document_id = '{document_id}' "
            create = f"CREATE TRIGGER refuse_updates BEFORE INSERT ON document_updates {when}"
            await conn.execute(sa.text(f"{create}BEGIN {body} END"))
        else:
            await conn.execute(
                sa.text(
                    "CREATE TRIGGER refuse_updates BEFORE INSERT ON document_updates "
                    f"FOR EACH ROW IF NEW.document_id = '{document_id}' THEN "
                    "SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'disk full'; END IF"
                )
            )


async def test_a_failing_insert_fails_every_append_of_the_batch(
    engine: AsyncEngine, other_engine: AsyncEngine
) -> None:
    refused, bystander = new_document(), new_document()
    updates, _ = edits(30)
    await _refuse_inserts_for(engine, refused, True)
    try:
        async with UpdateStore(session_factory(other_engine)) as store:
            outcomes = await asyncio.gather(
                *(store.append(d, u) for u in updates for d in (bystander, refused)),
                return_exceptions=True,
            )
            assert all(isinstance(o, Exception) and "disk full" in str(o) for o in outcomes)
            assert await store.log_stats(refused) == (0, 0)
            assert await store.log_stats(bystander) == (0, 0)
            await _refuse_inserts_for(engine, refused, False)
            assert await store.append(refused, updates[0]) > 0
    finally:
        await _refuse_inserts_for(engine, refused, False)


async def test_load_errors_propagate(engine: AsyncEngine) -> None:
    missing = engine.execution_options(schema_translate_map={None: "rcms_no_such_schema"})
    store = UpdateStore(session_factory(missing))
    with pytest.raises(sa.exc.DBAPIError):
        await store.load(new_document())


async def test_initialise_races_have_exactly_one_winner(
    engine: AsyncEngine, other_engine: AsyncEngine
) -> None:
    document_id = new_document()
    seeded = Doc()
    seeded.get("body", type=Text).insert(0, "seeded from SQL")
    state = seeded.get_update()
    stores = [UpdateStore(session_factory(e)) for e in (engine, other_engine, engine)]
    won = await asyncio.gather(*(s.initialise(document_id, state) for s in stores))
    assert sorted(won) == [False, False, True]
    assert (await stores[0].load(document_id)).snapshot == state


async def test_initialise_refuses_a_document_that_has_log_rows(store: UpdateStore) -> None:
    document_id = new_document()
    updates, _ = edits(1)
    await store.append(document_id, updates[0])
    assert await store.initialise(document_id, Doc().get_update()) is False
    assert (await store.load(document_id)).snapshot is None


async def test_initialise_rejects_bytes_pycrdt_cannot_apply(store: UpdateStore) -> None:
    with pytest.raises(CorruptUpdateError):
        await store.initialise(new_document(), b"\xff\xff\xff")


async def test_updates_since_rereads_an_overlap_for_rows_committed_late(
    store: UpdateStore, engine: AsyncEngine
) -> None:
    document_id = new_document()
    updates, text = edits(3)
    ids = [await store.append(document_id, u) for u in updates]
    # Take the middle row away, read, then put it back under its id: a row that became
    # visible after a higher id had already been read.
    async with transaction(session_factory(engine)) as session:
        await session.execute(sa.delete(DocumentUpdate).where(DocumentUpdate.id == ids[1]))
    cursor = (await store.load(document_id)).last_id
    async with transaction(session_factory(engine)) as session:
        late = {"id": ids[1], "document_id": document_id, "update": updates[1]}
        await session.execute(sa.insert(DocumentUpdate).values(late))
    assert [row_id for row_id, _ in await store.updates_since(document_id, cursor)] == ids
    without_overlap = UpdateStore(session_factory(engine), catchup_overlap=0)
    assert await without_overlap.updates_since(document_id, cursor) == []
    assert text_after([u for _, u in await store.updates_since(document_id, cursor)]) == text


@pytest.fixture(scope="module")
async def mariadb_url(mariadb_server: MariaDBServer) -> AsyncIterator[str]:
    """A database of its own on MariaDB, where commits can land out of id order."""
    url = mariadb_server.create_database(f"rcms_lag_{uuid.uuid4().hex[:8]}")
    engine = create_engine(url)
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    await engine.dispose()
    yield url


async def test_updates_since_returns_a_row_whose_commit_lagged_behind_a_higher_id(
    mariadb_url: str,
) -> None:
    # MariaDB only: SQLite has one writer, so no row there commits after a higher id is visible.
    engine, other_engine = create_engine(mariadb_url), create_engine(mariadb_url)
    document_id = new_document()
    updates, text = edits(2)
    try:
        async with UpdateStore(session_factory(engine)) as store:
            async with other_engine.connect() as conn:
                lagging = await conn.begin()
                await conn.execute(
                    sa.insert(DocumentUpdate).values(document_id=document_id, update=updates[0])
                )
                later_id = await store.append(document_id, updates[1])
                ids = [row_id for row_id, _ in await store.updates_since(document_id, 0)]
                assert ids == [later_id]
                await lagging.commit()
            caught_up = await store.updates_since(document_id, later_id)
    finally:
        await engine.dispose()
        await other_engine.dispose()
    assert len(caught_up) == 2 and caught_up[0][0] < later_id
    assert text_after([u for _, u in caught_up]) == text


async def test_updates_since_starts_with_the_snapshot_once_rows_were_folded(
    store: UpdateStore,
) -> None:
    document_id = new_document()
    updates, text = edits(50)
    cursor = await store.append(document_id, updates[0])
    await asyncio.gather(*(store.append(document_id, u) for u in updates[1:40]))
    result = await store.compact(document_id)
    assert result is not None
    ids = [await store.append(document_id, u) for u in updates[40:]]
    caught_up = await store.updates_since(document_id, cursor)
    assert [row_id for row_id, _ in caught_up] == [result.last_update_id, *ids]
    assert text_after([updates[0], *(u for _, u in caught_up)]) == text


async def test_log_stats_counts_rows_and_bytes(store: UpdateStore) -> None:
    document_id = new_document()
    for update in (b"\x00\x00", b"abc", b"\x01" * 70_000):
        await store.append(document_id, update)
    assert await store.log_stats(document_id) == (3, 2 + 3 + 70_000)


async def test_delete_removes_the_log_and_the_snapshot(store: UpdateStore) -> None:
    document_id = new_document()
    updates, _ = edits(10)
    for update in updates:
        await store.append(document_id, update)
    await store.compact(document_id)
    await store.append(document_id, updates[0])
    await store.delete(document_id)
    assert await store.load(document_id) == StoredDocument(None, [], 0)


async def test_leaving_the_store_writes_the_pending_appends(
    engine: AsyncEngine, other_engine: AsyncEngine
) -> None:
    document_id = new_document()
    updates, text = edits(25)
    async with UpdateStore(session_factory(engine), commit_window=60) as store:
        pending = [asyncio.create_task(store.append(document_id, u)) for u in updates]
        await asyncio.sleep(0)
    assert all(task.done() and task.result() > 0 for task in pending)
    assert await row_count(other_engine, document_id) == 25


async def test_a_store_starts_once_and_refuses_appends_after_it_stopped(
    engine: AsyncEngine,
) -> None:
    store = UpdateStore(session_factory(engine))
    async with store:
        with pytest.raises(RuntimeError):
            await store.__aenter__()
    with pytest.raises(RuntimeError):
        await store.append(new_document(), b"\x00\x00")
