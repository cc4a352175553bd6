"""Notifications with receipts, templates, categories, preferences: seed area "Notifications"."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from realtime_cms.models.base import (
    Base,
    UTCDateTime,
    created_at_column,
    updated_at_column,
    utcnow,
)


class Notification(Base):
    __tablename__ = "notifications"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    # The seed gives no ON DELETE rule: a user's notifications go with the user.
    user_id: Mapped[int] = mapped_column(sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"))
    # The seed gives no ON DELETE rule: deleting a category leaves its notifications uncategorised.
    category_id: Mapped[int | None] = mapped_column(
        sa.Integer, sa.ForeignKey("notification_categories.id", ondelete="SET NULL")
    )
    title: Mapped[str] = mapped_column(sa.String(255))
    message: Mapped[str] = mapped_column(sa.Text)
    is_read: Mapped[bool | None] = mapped_column(sa.Boolean, default=False, server_default="0")
    type: Mapped[str | None] = mapped_column(sa.String(50), index=True)
    view_count: Mapped[int] = mapped_column(sa.Integer, default=0, server_default="0")
    created_at: Mapped[datetime | None] = created_at_column()
    updated_at: Mapped[datetime | None] = updated_at_column()
    last_viewed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class ReadReceipt(Base):
    __tablename__ = "read_receipts"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    notification_id: Mapped[int] = mapped_column(
        sa.Integer, sa.ForeignKey("notifications.id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[int] = mapped_column(
        sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    read_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), default=utcnow, server_default=sa.func.current_timestamp()
    )


class NotificationTemplate(Base):
    __tablename__ = "notification_templates"

    template_id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(sa.String(100))
    description: Mapped[str | None] = mapped_column(sa.Text)
    type: Mapped[str] = mapped_column(sa.String(50), index=True)
    subject_template: Mapped[str] = mapped_column(sa.Text)
    body_template: Mapped[str] = mapped_column(sa.Text)
    variables: Mapped[Any | None] = mapped_column(sa.JSON)
    channels: Mapped[Any] = mapped_column(sa.JSON)


class NotificationCategory(Base):
    __tablename__ = "notification_categories"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(sa.String(100))
    description: Mapped[str | None] = mapped_column(sa.Text)
    color_code: Mapped[str | None] = mapped_column(
        sa.String(7), default="#3498db", server_default="#3498db"
    )
    is_system: Mapped[bool | None] = mapped_column(sa.Boolean, default=False, server_default="0")
    created_at: Mapped[datetime | None] = created_at_column()
    updated_at: Mapped[datetime | None] = updated_at_column()


class UserNotificationPreference(Base):
    __tablename__ = "user_notification_preferences"
    __table_args__ = (sa.UniqueConstraint("user_id", "category_id"),)

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    # The seed gives no ON DELETE rules: preferences go with their user and their category.
    user_id: Mapped[int] = mapped_column(sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"))
    # NULL means "every category" (the user's default).
    category_id: Mapped[int | None] = mapped_column(
        sa.Integer, sa.ForeignKey("notification_categories.id", ondelete="CASCADE")
    )
    channels: Mapped[Any] = mapped_column(sa.JSON)
    frequency: Mapped[str | None] = mapped_column(
        sa.String(20), default="immediate", server_default="immediate"
    )
    created_at: Mapped[datetime | None] = created_at_column()
    updated_at: Mapped[datetime | None] = updated_at_column()


class NotificationPreferenceCache(Base):
    __tablename__ = "notification_preference_cache"

    # Repaired: the seed's VARCHAR(255) becomes the INT key of the user it caches.
    user_id: Mapped[int] = mapped_column(
        sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    preferences: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    cached_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), default=utcnow, server_default=sa.func.current_timestamp()
    )
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


class NotificationDigestItem(Base):
    """Added: a notification held for an hourly or daily digest (one row per channel).

    The `notifications.digest` job claims a user's due rows of one channel into a
    `notification_batches` batch (`batch_id`) and delivers them as one digest; unclaimed rows
    have no batch.
    """

    __tablename__ = "notification_digest_items"
    __table_args__ = (sa.Index(None, "batch_id", "due_at"),)

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(
        sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    category_id: Mapped[int | None] = mapped_column(
        sa.Integer, sa.ForeignKey("notification_categories.id", ondelete="SET NULL")
    )
    channel: Mapped[str] = mapped_column(sa.String(20))
    frequency: Mapped[str] = mapped_column(sa.String(20))
    # The end of the window the row belongs to: the digest is due from then on.
    due_at: Mapped[datetime] = mapped_column(UTCDateTime())
    title: Mapped[str] = mapped_column(sa.String(255))
    message: Mapped[str] = mapped_column(sa.Text)
    type: Mapped[str | None] = mapped_column(sa.String(50))
    batch_id: Mapped[str | None] = mapped_column(
        sa.String(36), sa.ForeignKey("notification_batches.batch_id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime | None] = created_at_column()
