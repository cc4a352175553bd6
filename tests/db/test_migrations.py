"""Migrations build the whole seed schema on SQLite and MariaDB, match the models, undo cleanly."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from realtime_cms import migrate
from realtime_cms.db import create_engine
from realtime_cms.models import Base

SEED = Path(__file__).resolve().parents[3] / "shared" / "seed" / "000_57053add1885b266.txt"
ADDED_TABLES = {
    "api_tokens",
    "email_verification_tokens",
    "document_updates",
    "document_snapshots",
    "notification_digest_items",
}


def seed_tables() -> set[str]:
    if not SEED.exists():
        pytest.fail(f"the seed schema is missing: expected {SEED} (../shared beside the checkout)")
    return set(re.findall(r"^### `([a-z_0-9]+)`", SEED.read_text(), flags=re.MULTILINE))


def _inspect(database_url: str, probe: Any) -> Any:
    async def run() -> Any:
        engine = create_engine(database_url)
        try:
            async with engine.connect() as conn:
                return await conn.run_sync(probe)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def _tables(conn: sa.Connection) -> set[str]:
    return set(sa.inspect(conn).get_table_names())


def _drift(conn: sa.Connection) -> list[Any]:
    context = MigrationContext.configure(
        conn, opts={"compare_type": True, "compare_server_default": True}
    )
    return list(compare_metadata(context, Base.metadata))


def _recorded(conn: sa.Connection) -> list[tuple[str, int]]:
    rows = conn.execute(sa.text("SELECT migration, batch FROM migrations ORDER BY id"))
    return [(str(name), int(batch)) for name, batch in rows]


@pytest.fixture(scope="module")
def migrated_url(database_url: str) -> str:
    migrate.upgrade(database_url)
    return database_url


def test_seed_lists_94_tables() -> None:
    assert len(seed_tables()) == 94


def test_every_seed_table_exists_after_upgrade(migrated_url: str) -> None:
    tables = _inspect(migrated_url, _tables)
    missing = seed_tables() - {"client_activity_logs"} - tables
    assert not missing
    assert ADDED_TABLES <= tables


def test_migrated_database_matches_the_models(migrated_url: str) -> None:
    assert _inspect(migrated_url, _drift) == []


def test_applied_revisions_are_recorded_in_the_seed_migrations_table(migrated_url: str) -> None:
    recorded = _inspect(migrated_url, _recorded)
    assert [name.split("_")[0] for name, _ in recorded] == ["0001", "0002", "0003", "0004", "0005"]
    assert recorded[0][1] == 1


def test_downgrade_to_base_then_upgrade_again(migrated_url: str) -> None:
    migrate.downgrade(migrated_url, "base")
    assert _inspect(migrated_url, _tables) <= {"alembic_version"}
    migrate.upgrade(migrated_url)
    tables = _inspect(migrated_url, _tables)
    assert seed_tables() - {"client_activity_logs"} <= tables
    assert _inspect(migrated_url, _drift) == []


def _job_statuses_accepted(conn: sa.Connection) -> dict[str, bool]:
    accepted = {}
    for status in ("cancelled", "bogus"):
        savepoint = conn.begin_nested() if conn.in_transaction() else conn.begin()
        try:
            conn.execute(
                sa.text(
                    "INSERT INTO worker_jobs (id, type, payload, status, run_at)"
                    " VALUES (:id, 'x', '{}', :status, CURRENT_TIMESTAMP)"
                ),
                {"id": f"status-{status}", "status": status},
            )
            accepted[status] = True
        except sa.exc.DBAPIError:
            accepted[status] = False
        finally:
            savepoint.rollback()
    return accepted


def test_upgraded_job_status_takes_cancelled_and_nothing_else(migrated_url: str) -> None:
    assert _inspect(migrated_url, _job_statuses_accepted) == {"cancelled": True, "bogus": False}


def _schedule_statuses_accepted(conn: sa.Connection) -> dict[str, bool]:
    # No content item to point at: references are not what is under test here.
    sqlite_db = conn.dialect.name == "sqlite"
    conn.execute(sa.text("PRAGMA foreign_keys=OFF" if sqlite_db else "SET FOREIGN_KEY_CHECKS=0"))
    accepted = {}
    try:
        for status in ("failed", "cancelled", "bogus"):
            savepoint = conn.begin_nested() if conn.in_transaction() else conn.begin()
            try:
                conn.execute(
                    sa.text(
                        "INSERT INTO scheduled_content (content_id, publish_time, status)"
                        " VALUES (999999, CURRENT_TIMESTAMP, :status)"
                    ),
                    {"status": status},
                )
                accepted[status] = True
            except sa.exc.DBAPIError:
                accepted[status] = False
            finally:
                savepoint.rollback()
    finally:
        conn.execute(sa.text("PRAGMA foreign_keys=ON" if sqlite_db else "SET FOREIGN_KEY_CHECKS=1"))
    return accepted


def test_upgraded_schedule_status_takes_failed_and_cancelled(migrated_url: str) -> None:
    found = _inspect(migrated_url, _schedule_statuses_accepted)
    assert found == {"failed": True, "cancelled": True, "bogus": False}
