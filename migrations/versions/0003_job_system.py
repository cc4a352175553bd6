"""job system: queue, priority, run_at, last_error, dedupe_key and `cancelled` on worker_jobs

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07 11:40:00

Why each column exists: docs/schema.md ("Job system").
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SEED_STATUSES = ("queued", "processing", "completed", "failed")


def _status(*values: str) -> sa.Enum:
    return sa.Enum(*values, name="worker_jobs_status", create_constraint=True, length=None)


_SECONDS = sa.DateTime()
_MICROSECONDS = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def _heartbeats(old: sa.types.TypeEngine[object], new: sa.types.TypeEngine[object]) -> None:
    for table in ("worker_processes", "workers"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column(
                "last_heartbeat", existing_type=old, type_=new, existing_nullable=True
            )


def upgrade() -> None:
    _heartbeats(_SECONDS, _MICROSECONDS)
    with op.batch_alter_table("worker_jobs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("queue", sa.String(length=50), server_default="default", nullable=False)
        )
        batch_op.add_column(
            sa.Column("priority", sa.SmallInteger(), server_default="0", nullable=False)
        )
        batch_op.add_column(
            sa.Column(
                "run_at", sa.DateTime(), server_default=sa.func.current_timestamp(), nullable=False
            )
        )
        batch_op.add_column(sa.Column("last_error", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("dedupe_key", sa.String(length=191), nullable=True))
        batch_op.alter_column(
            "status",
            existing_type=_status(*_SEED_STATUSES),
            type_=_status(*_SEED_STATUSES, "cancelled"),
            existing_server_default="queued",
            existing_nullable=False,
        )
        batch_op.drop_index("ix_worker_jobs_status_created_at")
        batch_op.create_index(
            batch_op.f("ix_worker_jobs_status_priority_run_at_queue"),
            ["status", "priority", "run_at", "queue"],
            unique=False,
        )
        batch_op.create_unique_constraint(batch_op.f("uq_worker_jobs_dedupe_key"), ["dedupe_key"])


def downgrade() -> None:
    _heartbeats(_MICROSECONDS, _SECONDS)
    op.execute("DELETE FROM worker_jobs WHERE status = 'cancelled'")
    with op.batch_alter_table("worker_jobs", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_worker_jobs_dedupe_key"), type_="unique")
        batch_op.drop_index(batch_op.f("ix_worker_jobs_status_priority_run_at_queue"))
        batch_op.create_index(
            "ix_worker_jobs_status_created_at", ["status", "created_at"], unique=False
        )
        batch_op.alter_column(
            "status",
            existing_type=_status(*_SEED_STATUSES, "cancelled"),
            type_=_status(*_SEED_STATUSES),
            existing_server_default="queued",
            existing_nullable=False,
        )
        batch_op.drop_column("dedupe_key")
        batch_op.drop_column("last_error")
        batch_op.drop_column("run_at")
        batch_op.drop_column("priority")
        batch_op.drop_column("queue")
