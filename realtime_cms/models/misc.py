"""Seed area "Miscellaneous": migration log, media, shifts, settings, calendars, distribution."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from realtime_cms.models.base import (
    Base,
    BigInt,
    SiteId,
    UTCDateTime,
    created_at_column,
    enum,
    updated_at_column,
    utcnow,
)


class Migration(Base):
    """One applied schema revision; Alembic records each of its revisions here too."""

    __tablename__ = "migrations"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    migration: Mapped[str] = mapped_column(sa.String(255), unique=True)
    batch: Mapped[int] = mapped_column(sa.Integer)
    applied_at: Mapped[datetime | None] = created_at_column()


class Media(Base):
    """An uploaded file and its descriptive text."""

    __tablename__ = "media"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    uploader_id: Mapped[int | None] = mapped_column(
        sa.Integer, sa.ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    file_name: Mapped[str] = mapped_column(sa.String(255))
    file_path: Mapped[str] = mapped_column(sa.String(512))
    file_type: Mapped[str] = mapped_column(sa.String(100), index=True)
    file_size: Mapped[int] = mapped_column(sa.Integer)
    title: Mapped[str | None] = mapped_column(sa.String(255))
    caption: Mapped[str | None] = mapped_column(sa.Text)
    alt_text: Mapped[str | None] = mapped_column(sa.String(255))
    description: Mapped[str | None] = mapped_column(sa.Text)
    uploaded_at: Mapped[datetime | None] = created_at_column()
    updated_at: Mapped[datetime | None] = updated_at_column()


class Shift(Base):
    """A scheduled period of work for any worker (process or person)."""

    __tablename__ = "shifts"

    shift_id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    worker_id: Mapped[str] = mapped_column(
        sa.String(255), sa.ForeignKey("workers.worker_id", ondelete="CASCADE"), index=True
    )
    start_time: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    end_time: Mapped[datetime] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(
        enum("scheduled", "in_progress", "completed", "cancelled", name="shifts_status"),
        default="scheduled",
        server_default="scheduled",
        index=True,
    )
    location: Mapped[str | None] = mapped_column(sa.String(255))
    notes: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = created_at_column(nullable=False)
    # Unlike elsewhere, NULL until the first update.
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), onupdate=utcnow)


class Setting(Base):
    """One application setting; `data_type` says how to read `value`."""

    __tablename__ = "settings"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(sa.String(255), unique=True)
    value: Mapped[str | None] = mapped_column(sa.Text)
    data_type: Mapped[str] = mapped_column(
        enum("string", "number", "boolean", "json", name="settings_data_type"),
        default="string",
        server_default="string",
    )
    created_at: Mapped[datetime | None] = created_at_column()
    updated_at: Mapped[datetime | None] = updated_at_column()


class CalendarConnection(Base):
    """A user's link to an external calendar (Google, Outlook, iCal)."""

    __tablename__ = "calendar_connections"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"))
    provider_type: Mapped[str] = mapped_column(
        enum("google", "outlook", "ical", name="calendar_connections_provider_type")
    )
    # Replayed to the provider, so they cannot be hashed: the service must encrypt them.
    access_token: Mapped[str] = mapped_column(sa.Text)
    refresh_token: Mapped[str | None] = mapped_column(sa.Text)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    sync_enabled: Mapped[bool | None] = mapped_column(sa.Boolean, default=False, server_default="0")
    last_sync_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime | None] = created_at_column()
    updated_at: Mapped[datetime | None] = updated_at_column()


class ContentDistribution(Base):
    """A request to fan one content item out to sites of this installation."""

    __tablename__ = "content_distribution"

    id: Mapped[int] = mapped_column(BigInt, primary_key=True, autoincrement=True)
    content_id: Mapped[int] = mapped_column(
        sa.Integer, sa.ForeignKey("content_items.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime | None] = created_at_column()
    status: Mapped[str | None] = mapped_column(
        enum("pending", "processing", "completed", "failed", name="content_distribution_status"),
        default="pending",
        server_default="pending",
        index=True,
    )
    # `metadata` is reserved on declarative classes, hence the attribute name.
    metadata_: Mapped[str | None] = mapped_column("metadata", sa.Text)


class DistributedContent(Base):
    """Which version of a distribution landed on which site, and when."""

    __tablename__ = "distributed_content"
    __table_args__ = (sa.UniqueConstraint("distribution_id", "site_id"),)

    id: Mapped[int] = mapped_column(BigInt, primary_key=True, autoincrement=True)
    distribution_id: Mapped[int] = mapped_column(
        BigInt, sa.ForeignKey("content_distribution.id", ondelete="CASCADE"), index=True
    )
    site_id: Mapped[int] = mapped_column(
        SiteId, sa.ForeignKey("sites.id", ondelete="CASCADE"), index=True
    )
    version_id: Mapped[int] = mapped_column(
        sa.Integer, sa.ForeignKey("versions.id", ondelete="CASCADE")
    )
    synced_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class DistributionConflict(Base):
    __tablename__ = "distribution_conflicts"

    id: Mapped[int] = mapped_column(BigInt, primary_key=True, autoincrement=True)
    distribution_id: Mapped[int] = mapped_column(
        BigInt, sa.ForeignKey("content_distribution.id", ondelete="CASCADE"), index=True
    )
    conflict_details: Mapped[str] = mapped_column(sa.Text)
    resolution_strategy: Mapped[str | None] = mapped_column(sa.String(50))


class DistributionStatus(Base):
    """One status report of a distribution, newest by `updated_at`."""

    __tablename__ = "distribution_status"
    __table_args__ = (sa.Index(None, "updated_at"),)

    id: Mapped[int] = mapped_column(BigInt, primary_key=True, autoincrement=True)
    distribution_id: Mapped[int] = mapped_column(
        BigInt, sa.ForeignKey("content_distribution.id", ondelete="CASCADE"), index=True
    )
    status: Mapped[str] = mapped_column(sa.String(50))
    message: Mapped[str | None] = mapped_column(sa.Text)
    updated_at: Mapped[datetime | None] = updated_at_column()
