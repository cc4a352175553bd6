"""The SQLite update-log writer: commits in line, waits on its thread when the database is
busy, and checkpoints the WAL off the event loop. Real SQLite files, no fakes."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from realtime_cms.collab import log_writers
from realtime_cms.collab.log_writers import SqliteWriter
from realtime_cms.models.realtime import DocumentUpdate

ROWS = [("doc-a", b"\x01"), ("doc-b", b"\x02\x03")]


@pytest.fixture
def database(tmp_path: Path) -> Path:
    path = tmp_path / "log.sqlite3"
    engine = sa.create_engine(f"sqlite:///{path}")
    DocumentUpdate.__table__.create(engine)
    engine.dispose()
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA journal_mode=WAL")
    return path


@pytest.fixture
def writer(database: Path) -> Iterator[SqliteWriter]:
    writer = SqliteWriter(str(database))
    yield writer
    writer.close()


def logged(path: Path, *, wal: bool = True) -> list[tuple[int, str, bytes]]:
    """The log's rows; without `wal`, only what was checkpointed into the database file."""
    uri = f"file:{path}?mode=ro" + ("" if wal else "&immutable=1")
    with sqlite3.connect(uri, uri=True) as connection:
        query = 'SELECT id, document_id, "update" FROM document_updates ORDER BY id'
        return [(int(i), str(d), bytes(u)) for i, d, u in connection.execute(query)]


async def test_a_batch_commits_in_line_in_one_transaction(
    writer: SqliteWriter, database: Path
) -> None:
    ids = await writer.insert(ROWS)
    assert (writer.inline_commits, writer.thread_commits) == (1, 0)
    assert logged(database) == [(ids[0], *ROWS[0]), (ids[1], *ROWS[1])]
    assert ids[1] == ids[0] + 1


async def test_a_busy_database_sends_the_batch_to_the_thread_which_waits_for_the_lock(
    writer: SqliteWriter, database: Path
) -> None:
    other = sqlite3.connect(database, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another writer holds the lock
    pending = asyncio.ensure_future(writer.insert(ROWS))
    await asyncio.sleep(0.3)
    assert not pending.done()  # waiting on the thread, not failing and not blocking the loop
    other.execute("COMMIT")
    other.close()
    ids = await asyncio.wait_for(pending, 30)
    assert (writer.inline_commits, writer.thread_commits) == (0, 1)
    assert [row[0] for row in logged(database)] == ids
    await writer.insert(ROWS[:1])  # the lock is free again: back in line
    assert writer.inline_commits == 1


async def test_a_failing_insert_rolls_the_whole_batch_back(
    writer: SqliteWriter, database: Path
) -> None:
    with sqlite3.connect(database) as connection:
        connection.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON document_updates "
            "WHEN NEW.document_id = 'refused' BEGIN SELECT RAISE(ABORT, 'refused'); END"
        )
    with pytest.raises(sqlite3.IntegrityError):
        await writer.insert([ROWS[0], ("refused", b"\x09")])
    assert logged(database) == []
    await writer.insert(ROWS)  # the connection is usable afterwards
    assert len(logged(database)) == 2


async def test_commits_in_line_are_checkpointed_on_the_thread(
    writer: SqliteWriter, database: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(log_writers, "CHECKPOINT_EVERY", 3)
    for _ in range(2):
        await writer.insert(ROWS[:1])
    assert logged(database, wal=False) == []  # in the WAL only: the loop never checkpoints
    await writer.insert(ROWS[:1])
    await asyncio.get_running_loop().run_in_executor(
        None, writer._thread.submit(lambda: None).result
    )
    assert len(logged(database, wal=False)) == 3
