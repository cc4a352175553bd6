"""scheduling: the author's zone, the scheduling user, outcomes and `failed`/`cancelled` on scheduled_content

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-14 09:30:00

Why each column exists: docs/schema.md ("Scheduling").

SQLite cannot alter a CHECK constraint, and a table rebuild (Alembic's batch copy) would
drop the old table with foreign keys on (a migration runs in a transaction, where
`PRAGMA foreign_keys` cannot be turned off), which cascades into `workflow_monitoring`,
`worker_assignments` and the child occurrences. So on SQLite the columns are added in place
and the status CHECK is widened by editing its text in `sqlite_schema`, the procedure
SQLite documents for loosening a constraint ("Making Other Kinds Of Table Schema Changes");
the new `created_by` reference is added the same way (every row holds NULL there).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLE = "scheduled_content"
_SEED_STATUSES = ("scheduled", "published", "expired")
_ADDED_STATUSES = ("failed", "cancelled")
_CHECK = "ck_scheduled_content_scheduled_content_status"


def _status(*values: str) -> sa.Enum:
    return sa.Enum(*values, name="scheduled_content_status", create_constraint=True, length=None)


def _check_sql(values: Sequence[str]) -> str:
    listed = ", ".join(f"'{value}'" for value in values)
    return f"CONSTRAINT {_CHECK} CHECK (status IN ({listed}))"


# The reference as a table constraint, as `create_all` writes it (and reflection reads it).
_REFERENCE_SQL = (
    "CONSTRAINT fk_scheduled_content_created_by_users FOREIGN KEY(created_by)"
    " REFERENCES users (id) ON DELETE SET NULL"
)


def _columns() -> list[sa.Column[object]]:
    return [
        sa.Column("timezone", sa.String(length=64), server_default="UTC", nullable=False),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("lateness_seconds", sa.Float(), nullable=True),
        sa.Column("published_at", sa.DateTime(), nullable=True),
        sa.Column("expired_at", sa.DateTime(), nullable=True),
    ]


def _rewrite_schema(before: str, after: str) -> None:
    """Replace `before` with `after` in the table's CREATE text in SQLite's schema: only to
    loosen a CHECK, or to add a reference every row satisfies (the new column is NULL)."""
    bind = op.get_bind()
    sql = str(
        bind.scalar(
            sa.text("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = :name"),
            {"name": _TABLE},
        )
    )
    if sql.count(before) != 1:
        raise RuntimeError(f"{_TABLE}: expected {before!r} once in its schema")
    version = int(bind.scalar(sa.text("PRAGMA schema_version")) or 0)
    bind.execute(sa.text("PRAGMA writable_schema = ON"))
    bind.execute(
        sa.text("UPDATE sqlite_master SET sql = :sql WHERE type = 'table' AND name = :name"),
        {"sql": sql.replace(before, after), "name": _TABLE},
    )
    bind.execute(sa.text(f"PRAGMA schema_version = {version + 1}"))
    bind.execute(sa.text("PRAGMA writable_schema = OFF"))


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:
        for column in _columns():
            op.add_column(_TABLE, column)
        _rewrite_schema(
            _check_sql(_SEED_STATUSES),
            f"{_REFERENCE_SQL}, \n\t{_check_sql(_SEED_STATUSES + _ADDED_STATUSES)}",
        )
        op.create_index(op.f("ix_scheduled_content_created_by"), _TABLE, ["created_by"])
        return
    with op.batch_alter_table(_TABLE, schema=None) as batch_op:
        for column in _columns():
            batch_op.add_column(column)
        batch_op.create_index(batch_op.f("ix_scheduled_content_created_by"), ["created_by"])
        batch_op.create_foreign_key(
            batch_op.f("fk_scheduled_content_created_by_users"),
            "users",
            ["created_by"],
            ["id"],
            ondelete="SET NULL",
        )
        batch_op.alter_column(
            "status",
            existing_type=_status(*_SEED_STATUSES),
            type_=_status(*_SEED_STATUSES, *_ADDED_STATUSES),
            existing_server_default="scheduled",
            existing_nullable=True,
        )


def downgrade() -> None:
    op.execute("DELETE FROM scheduled_content WHERE status IN ('failed', 'cancelled')")
    # Backwards a rebuild is needed on SQLite too (a referenced column cannot be dropped in
    # place); it runs on what a downgrade leaves, as 0003's does.
    with op.batch_alter_table(
        _TABLE, schema=None, table_kwargs={"sqlite_autoincrement": True}
    ) as batch_op:
        batch_op.alter_column(
            "status",
            existing_type=_status(*_SEED_STATUSES, *_ADDED_STATUSES),
            type_=_status(*_SEED_STATUSES),
            existing_server_default="scheduled",
            existing_nullable=True,
        )
        batch_op.drop_constraint(
            batch_op.f("fk_scheduled_content_created_by_users"), type_="foreignkey"
        )
        batch_op.drop_index(batch_op.f("ix_scheduled_content_created_by"))
        for column in reversed(_columns()):
            batch_op.drop_column(column.name)
