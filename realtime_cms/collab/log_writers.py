"""How the update log's batches reach the database: one transaction per batch.

`writer_for` picks the SQLite writer (in line, or one thread hop when the database is
busy) for a plain engine on an SQLite file, SQLAlchemy's otherwise. `UpdateStore` owns the
batching; writers only write.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from typing import cast

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from realtime_cms.db import SessionFactory, transaction
from realtime_cms.models.base import utcnow
from realtime_cms.models.realtime import DocumentUpdate

logger = logging.getLogger(__name__)

_LOG = cast(sa.Table, DocumentUpdate.__table__)
_PRAGMAS = ("foreign_keys=ON", "journal_mode=WAL", "synchronous=NORMAL")
# Commits in line between two checkpoints of the WAL, which run on the writer's thread.
CHECKPOINT_EVERY = 500
_INSERT = sa.insert(_LOG).returning(_LOG.c.id, sort_by_parameter_order=True)


class SqlAlchemyWriter:
    """Writes a batch through SQLAlchemy: a cached Core insert, run as an executemany that
    SQLAlchemy folds into multi-row INSERT ... RETURNING (MariaDB, or SQLite with options)."""

    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions

    async def insert(self, rows: list[tuple[str, bytes]]) -> list[int]:
        now = utcnow()
        values = [
            {"document_id": document_id, "update": update, "created_at": now}
            for document_id, update in rows
        ]
        async with transaction(self._sessions) as session:
            connection = await session.connection()
            result = await connection.execute(_INSERT, values)
            return [int(row_id) for row_id in result.scalars()]

    def close(self) -> None:
        pass


class _Busy(Exception):
    """Another connection holds SQLite's write lock: the batch goes to the thread."""


class SqliteWriter:
    """Writes a batch on SQLite with connections of its own: BEGIN IMMEDIATE, one INSERT per
    row, COMMIT.

    In WAL mode with synchronous=NORMAL a commit appends to the WAL without flushing, which
    costs tens of microseconds: less than handing the batch to a thread. So a batch is
    written in line, on a connection that never waits for the write lock (busy_timeout 0)
    and never checkpoints. When another connection holds the lock, the batch goes to this
    writer's thread, whose connection waits for it (busy_timeout 30 s) as the engine's do;
    the thread also checkpoints the WAL every CHECKPOINT_EVERY commits in line, so the file
    flushes never stall the event loop. Through aiosqlite and SQLAlchemy a one-row
    transaction costs about a dozen thread round trips (~2 ms of CPU); here none or one.
    Commits are as durable as the engine's (same pragmas).
    """

    _SQL = 'INSERT INTO document_updates (document_id, "update", created_at) VALUES (?, ?, ?)'

    def __init__(self, path: str) -> None:
        self._path = path
        self._inline: sqlite3.Connection | None = None
        self._connection: sqlite3.Connection | None = None
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="update-log")
        self._since_checkpoint = 0
        self.inline_commits = 0
        self.thread_commits = 0

    async def insert(self, rows: list[tuple[str, bytes]]) -> list[int]:
        now = utcnow().replace(tzinfo=None, microsecond=0).isoformat(" ")
        try:
            ids = self._write(self._inline_connection(), rows, now)
        except _Busy:
            loop = asyncio.get_running_loop()
            ids = await loop.run_in_executor(self._thread, self._write_waiting, rows, now)
            self.thread_commits += 1
            return ids
        self.inline_commits += 1
        self._since_checkpoint += 1
        if self._since_checkpoint >= CHECKPOINT_EVERY:
            self._since_checkpoint = 0
            self._thread.submit(self._checkpoint)
        return ids

    def _write_waiting(self, rows: list[tuple[str, bytes]], now: str) -> list[int]:
        return self._write(self._thread_connection(), rows, now)

    def _write(
        self, connection: sqlite3.Connection, rows: list[tuple[str, bytes]], now: str
    ) -> list[int]:
        cursor = connection.cursor()
        try:
            try:
                cursor.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY:
                    raise _Busy from exc
                raise
            try:
                ids = []
                for document_id, update in rows:
                    cursor.execute(self._SQL, (document_id, update, now))
                    ids.append(int(cursor.lastrowid or 0))
                cursor.execute("COMMIT")
            except BaseException:
                if connection.in_transaction:
                    connection.rollback()
                raise
        finally:
            cursor.close()
        return ids

    def _checkpoint(self) -> None:
        try:
            self._thread_connection().execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error:
            logger.exception("checkpointing the update log's WAL failed")

    def _inline_connection(self) -> sqlite3.Connection:
        if self._inline is None:
            self._inline = self._open("busy_timeout=0", "wal_autocheckpoint=0")
        return self._inline

    def _thread_connection(self) -> sqlite3.Connection:
        if self._connection is None:
            self._connection = self._open("busy_timeout=30000")
        return self._connection

    def _open(self, *pragmas: str) -> sqlite3.Connection:
        # Used from the loop's thread and from the writer's thread, each its own connection.
        connection = sqlite3.connect(
            self._path, timeout=0, isolation_level=None, check_same_thread=False
        )
        for pragma in (*_PRAGMAS, *pragmas):
            connection.execute(f"PRAGMA {pragma}")
        return connection

    def close(self) -> None:
        def shut() -> None:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

        self._thread.submit(shut).result()
        self._thread.shutdown()
        if self._inline is not None:
            self._inline.close()
            self._inline = None


def writer_for(sessions: SessionFactory) -> SqlAlchemyWriter | SqliteWriter:
    """The SQLite writer for a plain engine on an SQLite file; SQLAlchemy's otherwise (other
    databases, and engines with execution options such as a schema translation)."""
    bind = sessions.kw.get("bind")
    if not isinstance(bind, AsyncEngine) or bind.get_execution_options():
        return SqlAlchemyWriter(sessions)
    url = bind.url
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return SqlAlchemyWriter(sessions)
    if url.database.startswith("file:") or url.query:
        return SqlAlchemyWriter(sessions)
    return SqliteWriter(url.database)
