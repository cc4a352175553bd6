"""Database engine and sessions for SQLite (embedded) and MySQL/MariaDB (aiomysql).

A pooled connection costs no round trip of its own per transaction where it can be spared:
a server's is pinged on checkout only after `PING_AFTER_IDLE_SECONDS` unused (one in steady
use would fail its next statement as it would fail a ping), and any is rolled back on its
return only if a transaction may still be open (SQLAlchemy's default rolls back every
connection returned, after a commit too). On MariaDB those were two of the four round
trips of a one-statement transaction (docs/benchmarks.md, "Jobs").
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection, PoolResetState

SessionFactory = async_sessionmaker[AsyncSession]
# How long a SQLite writer waits for the write lock (busy_timeout), and a transaction of a
# one-connection engine for its connection: the same wait, in SQLite or in the process.
WAIT_SECONDS = 30
PING_AFTER_IDLE_SECONDS = 1.0
_RETURNED = "rcms_returned_at"
_COMMITTED = "rcms_committed"
_READ_COMMITTED = sa.text("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # Foreign keys are off by default in SQLite; WAL lets readers run beside one writer.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA busy_timeout={WAIT_SECONDS * 1000}")
    cursor.close()


def _mysql_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # Every DATETIME holds UTC, so CURRENT_TIMESTAMP defaults must be UTC too.
    cursor = dbapi_connection.cursor()
    cursor.execute("SET time_zone = '+00:00'")
    cursor.close()


def create_engine(url: str, *, echo: bool = False, pool_size: int = 10) -> AsyncEngine:
    """An async engine with the per-dialect connection settings the models rely on."""
    if url.startswith("sqlite"):
        return _engine(url, echo=echo)
    return _engine(url, echo=echo, pool_size=pool_size, max_overflow=pool_size, pool_recycle=3600)


def one_connection_engine(url: str, *, echo: bool = False) -> AsyncEngine:
    """An engine of a single connection, which its transactions take in turn (in order,
    waiting on the event loop up to `WAIT_SECONDS`). On SQLite, a process' writers sharing
    one connection queue here instead of meeting at the write lock, where each loser sleeps
    in the busy handler (1, 2, 5 ... 100 ms) before it tries again."""
    return _engine(url, echo=echo, pool_size=1, max_overflow=0, pool_timeout=WAIT_SECONDS)


def _engine(url: str, *, echo: bool, **pool: Any) -> AsyncEngine:
    if url.startswith("sqlite"):
        engine = create_async_engine(
            url,
            echo=echo,
            connect_args={"timeout": WAIT_SECONDS},
            pool_reset_on_return=None,
            **pool,
        )
        sync = engine.sync_engine
        event.listen(sync, "connect", _sqlite_on_connect)
        event.listen(sync, "reset", _rollback_if_open(_sqlite_in_transaction))
        return engine
    engine = create_async_engine(url, echo=echo, pool_reset_on_return=None, **pool)
    sync = engine.sync_engine
    event.listen(sync, "connect", _mysql_on_connect)
    event.listen(sync, "begin", _unmark_committed)
    event.listen(sync, "commit", _mark_committed)
    event.listen(sync, "reset", _rollback_if_open(_mysql_in_transaction))
    # A file cannot go away; a server's connection can, so it is pinged after idling.
    event.listen(sync, "checkin", _stamp_return)
    event.listen(sync, "checkout", _ping_if_idle(engine.dialect))
    return engine


InTransaction = Callable[[Any, ConnectionPoolEntry], bool]


def _rollback_if_open(
    in_transaction: InTransaction,
) -> Callable[[Any, ConnectionPoolEntry, PoolResetState], None]:
    """The pool's reset on return: a rollback if a transaction may still be open."""

    def reset(dbapi_connection: Any, record: ConnectionPoolEntry, state: PoolResetState) -> None:
        # Rolled back already as SQLAlchemy closed it; or not asyncio-safe (a connection
        # collected unreturned, which is not reused); or about to be closed.
        if state.transaction_was_reset or not state.asyncio_safe or state.terminate_only:
            return
        if in_transaction(dbapi_connection, record):
            dbapi_connection.rollback()

    return reset


def _sqlite_in_transaction(dbapi_connection: Any, _record: ConnectionPoolEntry) -> bool:
    # Exact: a failed COMMIT (a deferred foreign key) leaves the transaction open.
    return bool(dbapi_connection.driver_connection.in_transaction)


def _mysql_in_transaction(dbapi_connection: Any, record: ConnectionPoolEntry) -> bool:
    # Known closed only right after a COMMIT, whose reply carries the server's flags: after
    # a SELECT, aiomysql still holds older flags while MariaDB keeps the snapshot open.
    committed = record.info.pop(_COMMITTED, False)
    return not committed or bool(dbapi_connection.driver_connection.get_transaction_status())


def _mark_committed(conn: Connection) -> None:
    conn.info[_COMMITTED] = True


def _unmark_committed(conn: Connection) -> None:
    conn.info.pop(_COMMITTED, None)


def _stamp_return(_dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
    record.info[_RETURNED] = time.monotonic()


def _ping_if_idle(
    dialect: Dialect,
) -> Callable[[Any, ConnectionPoolEntry, PoolProxiedConnection], None]:
    def checkout(
        dbapi_connection: Any, record: ConnectionPoolEntry, _proxy: PoolProxiedConnection
    ) -> None:
        returned = record.info.pop(_RETURNED, None)
        if returned is None or time.monotonic() - returned < PING_AFTER_IDLE_SECONDS:
            return
        try:
            dialect.do_ping(dbapi_connection)
        except Exception as exc:
            if dialect.is_disconnect(exc, None, None):  # type: ignore[arg-type]
                # As SQLAlchemy's pre-ping: every older connection is presumed dead too,
                # and this checkout is tried again on a new one.
                raise sa.exc.InvalidatePoolError() from exc
            raise

    return checkout


def session_factory(engine: AsyncEngine) -> SessionFactory:
    """Sessions that keep loaded objects usable after commit (handlers render them)."""
    return async_sessionmaker(engine, expire_on_commit=False)


@asynccontextmanager
async def transaction(factory: SessionFactory) -> AsyncIterator[AsyncSession]:
    """One unit of work: commit on success, roll back on any error."""
    async with factory() as session, session.begin():
        yield session


async def ping(engine: AsyncEngine) -> None:
    """Raise if the database cannot answer a trivial query."""
    async with engine.connect() as conn:
        await conn.execute(sa.text("SELECT 1"))


async def read_committed(db: AsyncSession) -> None:
    """Run this transaction under READ COMMITTED on MariaDB (SQLite has one isolation).

    Call it before the transaction's first statement: `SET TRANSACTION` sets the next
    transaction only (one round trip; the connection option was two, set and then reset
    when the connection went back to the pool), and MariaDB refuses it inside one.
    """
    if db.get_bind().dialect.name != "sqlite":
        await db.execute(_READ_COMMITTED)
