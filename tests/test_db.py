"""Engines: a pooled connection comes back with no transaction open, a one-connection engine
runs its transactions in turn, READ COMMITTED holds for one transaction, and a server
connection dropped while idle is replaced on checkout."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from realtime_cms import db as db_module
from realtime_cms.db import (
    create_engine,
    one_connection_engine,
    read_committed,
    session_factory,
    transaction,
)

COUNTER = sa.text("SELECT v FROM db_probe WHERE id = 1")
BUMP = sa.text("UPDATE db_probe SET v = v + 1 WHERE id = 1")


@pytest.fixture(scope="module")
async def other(database_url: str) -> AsyncIterator[AsyncEngine]:
    """Another engine on the same database, with a one-row table whose counter it bumps."""
    engine = create_engine(database_url)
    async with engine.begin() as conn:
        await conn.execute(sa.text("CREATE TABLE db_probe (id INTEGER PRIMARY KEY, v INTEGER)"))
        await conn.execute(sa.text("INSERT INTO db_probe VALUES (1, 0)"))
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
async def single(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = one_connection_engine(database_url)
    try:
        yield engine
    finally:
        await engine.dispose()


async def _bump(other: AsyncEngine) -> None:
    async with other.begin() as conn:
        await conn.execute(BUMP)


async def _read(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(COUNTER)).scalar_one())


async def test_a_connection_used_past_sqlalchemy_comes_back_with_no_snapshot(
    single: AsyncEngine, other: AsyncEngine, backend: str
) -> None:
    # A read the pool knows nothing of opens a transaction (a snapshot) on the connection.
    async with single.connect() as conn:
        raw = await conn.get_raw_connection()
        cursor = await raw.driver_connection.cursor()
        if backend == "sqlite":
            await cursor.execute("BEGIN")
        await cursor.execute("SELECT v FROM db_probe WHERE id = 1")
        before = (await cursor.fetchone())[0]
        await cursor.close()
    await _bump(other)
    # The next user of that connection sees the bump: the snapshot was rolled back.
    assert await _read(single) == before + 1


async def test_the_next_transaction_after_a_commit_sees_what_others_committed(
    single: AsyncEngine, other: AsyncEngine
) -> None:
    sessions = session_factory(single)
    async with transaction(sessions) as db:
        before = int((await db.execute(COUNTER)).scalar_one())
        await db.execute(BUMP)
    await _bump(other)
    assert await _read(single) == before + 2


@pytest.mark.only_backend("sqlite")  # MariaDB has no deferred constraint to fail a COMMIT
async def test_a_failed_commit_leaves_no_transaction_on_the_connection(
    single: AsyncEngine,
) -> None:
    async with single.begin() as conn:
        await conn.execute(sa.text("CREATE TABLE db_parent (id INTEGER PRIMARY KEY)"))
        await conn.execute(
            sa.text(
                "CREATE TABLE db_child (id INTEGER PRIMARY KEY, parent INTEGER"
                " REFERENCES db_parent (id) DEFERRABLE INITIALLY DEFERRED)"
            )
        )
    with pytest.raises(sa.exc.IntegrityError):
        async with transaction(session_factory(single)) as db:
            await db.execute(sa.text("INSERT INTO db_child VALUES (1, 99)"))
    async with single.connect() as conn:
        raw = await conn.get_raw_connection()
        assert not raw.driver_connection.in_transaction
        assert (await conn.execute(sa.text("SELECT count(*) FROM db_child"))).scalar() == 0


async def test_a_one_connection_engine_runs_its_transactions_in_turn(
    single: AsyncEngine,
) -> None:
    order: list[str] = []

    async def unit(name: str) -> None:
        async with single.connect() as conn:
            order.append(f"{name} began")
            await conn.execute(sa.text("SELECT 1"))
            await asyncio.sleep(0.05)
            order.append(f"{name} ended")

    await asyncio.gather(unit("a"), unit("b"), unit("c"))
    assert order == ["a began", "a ended", "b began", "b ended", "c began", "c ended"]


async def _reads_committed(single: AsyncEngine, other: AsyncEngine, *, asked: bool) -> bool:
    """Whether a transaction sees a commit made after its first read."""
    async with transaction(session_factory(single)) as db:
        if asked:
            await read_committed(db)
        first = (await db.execute(COUNTER)).scalar_one()
        await _bump(other)
        return bool((await db.execute(COUNTER)).scalar_one() != first)


@pytest.mark.only_backend("mariadb")  # SQLite has one isolation level
async def test_read_committed_holds_for_its_own_transaction_only(
    single: AsyncEngine, other: AsyncEngine
) -> None:
    assert not await _reads_committed(single, other, asked=False)
    assert await _reads_committed(single, other, asked=True)
    # The same (only) connection is back at MariaDB's REPEATABLE READ.
    assert not await _reads_committed(single, other, asked=False)


@pytest.mark.only_backend("mariadb")  # a database file has no connection to lose
async def test_a_server_connection_dropped_while_idle_is_replaced_on_checkout(
    single: AsyncEngine, other: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db_module, "PING_AFTER_IDLE_SECONDS", 0.0)
    connection_id = sa.text("SELECT CONNECTION_ID()")
    async with single.connect() as conn:
        dropped = (await conn.execute(connection_id)).scalar_one()
    async with other.connect() as conn:
        await conn.execute(sa.text(f"KILL CONNECTION {int(dropped)}"))
    async with single.connect() as conn:
        assert (await conn.execute(connection_id)).scalar_one() != dropped
