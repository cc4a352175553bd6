"""notification digest items

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 02:11:19.266402
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "notification_digest_items",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("category_id", sa.Integer(), nullable=True),
        sa.Column("channel", sa.String(length=20), nullable=False),
        sa.Column("frequency", sa.String(length=20), nullable=False),
        sa.Column("due_at", sa.DateTime(), nullable=False),
        sa.Column("title", sa.String(length=255), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("type", sa.String(length=50), nullable=True),
        sa.Column("batch_id", sa.String(length=36), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(), server_default=sa.func.current_timestamp(), nullable=True
        ),
        sa.ForeignKeyConstraint(
            ["batch_id"],
            ["notification_batches.batch_id"],
            name=op.f("fk_notification_digest_items_batch_id_notification_batches"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["category_id"],
            ["notification_categories.id"],
            name=op.f("fk_notification_digest_items_category_id_notification_categories"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_notification_digest_items_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification_digest_items")),
        sqlite_autoincrement=True,
    )
    op.create_index(
        op.f("ix_notification_digest_items_batch_id_due_at"),
        "notification_digest_items",
        ["batch_id", "due_at"],
    )
    op.create_index(
        op.f("ix_notification_digest_items_user_id"), "notification_digest_items", ["user_id"]
    )


def downgrade() -> None:
    # The table's indexes go with it (MariaDB refuses to drop one a foreign key still uses).
    op.drop_table("notification_digest_items")
