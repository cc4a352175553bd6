"""job batches: progress counters and the callback job on batch_jobs

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-09 10:20:00

Why each column exists: docs/schema.md ("Job system", batches).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COUNTERS = ("total", "completed", "failed")


def upgrade() -> None:
    with op.batch_alter_table("batch_jobs", schema=None) as batch_op:
        for name in _COUNTERS:
            batch_op.add_column(sa.Column(name, sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("callback_job_id", sa.String(length=36), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("batch_jobs", schema=None) as batch_op:
        batch_op.drop_column("callback_job_id")
        for name in reversed(_COUNTERS):
            batch_op.drop_column(name)
