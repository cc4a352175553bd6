"""Alembic environment (async); each applied revision is also recorded in `migrations`."""

from __future__ import annotations

import asyncio
from typing import Any

import sqlalchemy as sa
from alembic import context
from sqlalchemy.engine import Connection

from realtime_cms.db import create_engine
from realtime_cms.models import Base

config = context.config
target_metadata = Base.metadata


def _database_url() -> str:
    url = config.attributes.get("database_url")
    if url:
        return str(url)
    from realtime_cms.config import Settings

    return Settings().database_url


def _record_revision(ctx: Any, step: Any, heads: Any, run_args: Any) -> None:
    """Mirror Alembic's history into the seed's `migrations` table (name, batch, applied_at)."""
    connection: Connection = ctx.connection
    if not sa.inspect(connection).has_table("migrations"):
        return
    table = sa.table(
        "migrations", sa.column("migration"), sa.column("batch"), sa.column("applied_at")
    )
    if step.is_upgrade:
        batch = config.attributes.setdefault(
            "migration_batch",
            (connection.scalar(sa.select(sa.func.max(table.c.batch))) or 0) + 1,
        )
        name = f"{step.up_revision_id}_{step.up_revision.doc or ''}".strip("_")[:255]
        connection.execute(
            table.insert().values(
                migration=name, batch=batch, applied_at=sa.func.current_timestamp()
            )
        )
    else:
        connection.execute(table.delete().where(table.c.migration.like(f"{step.up_revision_id}%")))


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        render_as_batch=connection.dialect.name == "sqlite",
        on_version_apply=_record_revision,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_online() -> None:
    engine = create_engine(_database_url())
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
            await connection.commit()
    finally:
        await engine.dispose()


def _run_offline() -> None:
    context.configure(url=_database_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    _run_offline()
else:
    existing = config.attributes.get("connection")
    if existing is not None:
        _run(existing)
    else:
        asyncio.run(_run_online())
