"""Version control: seed area "Version Control" (content versions, restores, generic change log)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from realtime_cms.models.base import (
    Base,
    MediumText,
    SiteId,
    UTCDateTime,
    created_at_column,
    enum,
    updated_at_column,
)


class Version(Base):
    """One saved version of a content item; its body lives in `version_content`."""

    __tablename__ = "versions"
    __table_args__ = (
        sa.Index(None, "content_id", "version_number"),
        sa.Index(None, "created_at"),
    )

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    content_id: Mapped[int] = mapped_column(
        sa.Integer, sa.ForeignKey("content_items.id", ondelete="CASCADE")
    )
    user_id: Mapped[int | None] = mapped_column(
        sa.Integer, sa.ForeignKey("users.id", ondelete="SET NULL")
    )
    version_number: Mapped[int] = mapped_column(sa.Integer)
    created_at: Mapped[datetime | None] = created_at_column()
    notes: Mapped[str | None] = mapped_column(sa.Text)
    is_autosave: Mapped[bool] = mapped_column(
        sa.Boolean, default=False, server_default="0", index=True
    )
    publish_date: Mapped[date | None] = mapped_column(sa.Date)
    lifecycle_status: Mapped[str | None] = mapped_column(sa.String(50))


class VersionMetadata(Base):
    __tablename__ = "version_metadata"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    version_id: Mapped[int] = mapped_column(
        sa.Integer, sa.ForeignKey("versions.id", ondelete="CASCADE"), unique=True
    )
    meta_key: Mapped[str] = mapped_column(sa.String(255), index=True)
    meta_value: Mapped[str | None] = mapped_column(sa.Text)
    change_type: Mapped[str | None] = mapped_column(sa.String(50), index=True)
    previous_version_id: Mapped[int | None] = mapped_column(
        sa.Integer, sa.ForeignKey("versions.id", ondelete="SET NULL"), index=True
    )
    tags: Mapped[list[Any] | None] = mapped_column(sa.JSON)
    seo_title: Mapped[str | None] = mapped_column(sa.String(255))
    seo_description: Mapped[str | None] = mapped_column(sa.Text)
    seo_keywords: Mapped[str | None] = mapped_column(sa.String(255))
    author_id: Mapped[int | None] = mapped_column(
        sa.Integer, sa.ForeignKey("users.id", ondelete="SET NULL")
    )
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)
    status: Mapped[str | None] = mapped_column(
        enum("draft", "pending_review", "published", "archived", name="version_metadata_status"),
        default="draft",
        server_default="draft",
        index=True,
    )
    visibility: Mapped[str | None] = mapped_column(
        enum("public", "private", "password_protected", name="version_metadata_visibility"),
        default="public",
        server_default="public",
        index=True,
    )
    created_at: Mapped[datetime | None] = created_at_column()
    updated_at: Mapped[datetime | None] = updated_at_column()


class VersionContent(Base):
    """The body of a version: full text, or a diff against `previous_version_id`."""

    __tablename__ = "version_content"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    version_id: Mapped[int] = mapped_column(
        sa.Integer, sa.ForeignKey("versions.id", ondelete="CASCADE"), unique=True
    )
    content: Mapped[str] = mapped_column(MediumText)
    content_hash: Mapped[str] = mapped_column(sa.String(64))
    diff_content: Mapped[str | None] = mapped_column(MediumText)
    diff_format: Mapped[str | None] = mapped_column(sa.String(20))
    previous_version_id: Mapped[int | None] = mapped_column(
        sa.Integer, sa.ForeignKey("versions.id", ondelete="SET NULL"), index=True
    )
    is_full_content: Mapped[bool | None] = mapped_column(
        sa.Boolean, default=True, server_default="1"
    )


class RestorationAuditLog(Base):
    """One restore of a content item to an earlier version."""

    __tablename__ = "restoration_audit_log"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    site_id: Mapped[int | None] = mapped_column(
        SiteId, sa.ForeignKey("sites.id", ondelete="CASCADE")
    )
    content_id: Mapped[int] = mapped_column(
        sa.Integer, sa.ForeignKey("content_items.id", ondelete="CASCADE"), index=True
    )
    version_id: Mapped[int] = mapped_column(
        sa.Integer, sa.ForeignKey("versions.id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[int] = mapped_column(sa.Integer, sa.ForeignKey("users.id", ondelete="RESTRICT"))
    restored_at: Mapped[datetime | None] = created_at_column()
    status: Mapped[str] = mapped_column(sa.String(20))
    details: Mapped[str | None] = mapped_column(sa.Text)
    previous_data: Mapped[str | None] = mapped_column(sa.Text)


class VersionHistory(Base):
    """Generic change log: one entry per create, update or delete of any entity."""

    __tablename__ = "version_history"
    __table_args__ = (
        sa.Index(None, "entity_type", "entity_id"),
        sa.Index(None, "created_at"),
    )

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    entity_type: Mapped[str] = mapped_column(sa.String(100))
    entity_id: Mapped[int] = mapped_column(sa.Integer)
    version_number: Mapped[int] = mapped_column(sa.Integer)
    # The seed only implies this FK; the log outlives the user who made the change.
    user_id: Mapped[int | None] = mapped_column(
        sa.Integer, sa.ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    change_type: Mapped[str] = mapped_column(
        enum("create", "update", "delete", name="version_history_change_type")
    )
    old_value: Mapped[str | None] = mapped_column(sa.Text)
    new_value: Mapped[str | None] = mapped_column(sa.Text)
    change_reason: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime | None] = created_at_column()


class ConflictResolution(Base):
    """How a conflict between two versions of the same content was settled."""

    __tablename__ = "conflict_resolution"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    version_a_id: Mapped[int] = mapped_column(
        sa.Integer, sa.ForeignKey("versions.id", ondelete="CASCADE"), index=True
    )
    version_b_id: Mapped[int] = mapped_column(
        sa.Integer, sa.ForeignKey("versions.id", ondelete="CASCADE"), index=True
    )
    conflict_type: Mapped[str] = mapped_column(sa.String(50))
    resolution_method: Mapped[str] = mapped_column(sa.String(50))
    resolved_by: Mapped[int] = mapped_column(
        sa.Integer, sa.ForeignKey("users.id", ondelete="RESTRICT"), index=True
    )
    resolved_at: Mapped[datetime | None] = created_at_column()
    notes: Mapped[str | None] = mapped_column(sa.Text)
