"""Content and its taxonomy: seed area "Content Management" (types, items, terms, custom fields)."""

from __future__ import annotations

from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from realtime_cms.models.base import (
    Base,
    LongText,
    SiteId,
    UTCDateTime,
    created_at_column,
    enum,
    updated_at_column,
)


class ContentType(Base):
    __tablename__ = "content_types"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(sa.String(50), unique=True)
    slug: Mapped[str] = mapped_column(sa.String(50), unique=True)
    description: Mapped[str | None] = mapped_column(sa.Text)
    is_hierarchical: Mapped[bool] = mapped_column(sa.Boolean, default=False, server_default="0")
    has_tags: Mapped[bool] = mapped_column(sa.Boolean, default=True, server_default="1")
    has_categories: Mapped[bool] = mapped_column(sa.Boolean, default=True, server_default="1")
    created_at: Mapped[datetime | None] = created_at_column()
    updated_at: Mapped[datetime | None] = updated_at_column()


class ContentItem(Base):
    __tablename__ = "content_items"
    __table_args__ = (sa.Index(None, "slug", "content_type_id"),)

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    site_id: Mapped[int] = mapped_column(
        SiteId, sa.ForeignKey("sites.id", ondelete="CASCADE"), index=True
    )
    content_type_id: Mapped[int] = mapped_column(
        sa.Integer, sa.ForeignKey("content_types.id", ondelete="CASCADE")
    )
    author_id: Mapped[int] = mapped_column(
        sa.Integer, sa.ForeignKey("users.id", ondelete="RESTRICT"), index=True
    )
    parent_id: Mapped[int | None] = mapped_column(
        sa.Integer, sa.ForeignKey("content_items.id", ondelete="CASCADE")
    )
    title: Mapped[str] = mapped_column(sa.String(255))
    slug: Mapped[str] = mapped_column(sa.String(255))
    # Materialized text of the CRDT document `content:<id>` (see document_updates).
    content_body: Mapped[str | None] = mapped_column(LongText)
    excerpt: Mapped[str | None] = mapped_column(sa.Text)
    status: Mapped[str] = mapped_column(
        enum("draft", "scheduled", "published", "archived", "expired", name="content_items_status"),
        default="draft",
        server_default="draft",
        index=True,
    )
    visibility: Mapped[str] = mapped_column(
        sa.String(20), default="public", server_default="public"
    )
    # A password-protected item's password, stored as a hash like every other secret.
    password: Mapped[str | None] = mapped_column(sa.String(255))
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)
    archived_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)
    expired_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)
    created_at: Mapped[datetime | None] = created_at_column()
    updated_at: Mapped[datetime | None] = updated_at_column()
    publish_date: Mapped[date | None] = mapped_column(sa.Date)
    lifecycle_status: Mapped[str | None] = mapped_column(sa.String(50))


class Category(Base):
    __tablename__ = "categories"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(sa.String(100))
    slug: Mapped[str] = mapped_column(sa.String(100), unique=True)
    description: Mapped[str | None] = mapped_column(sa.Text)
    parent_id: Mapped[int | None] = mapped_column(
        sa.Integer, sa.ForeignKey("categories.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime | None] = created_at_column()
    updated_at: Mapped[datetime | None] = updated_at_column()


class Tag(Base):
    __tablename__ = "tags"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(sa.String(100))
    slug: Mapped[str] = mapped_column(sa.String(100), unique=True)
    created_at: Mapped[datetime | None] = created_at_column()
    updated_at: Mapped[datetime | None] = updated_at_column()


class ContentItemCategory(Base):
    __tablename__ = "content_item_categories"

    content_item_id: Mapped[int] = mapped_column(
        sa.Integer, sa.ForeignKey("content_items.id", ondelete="CASCADE"), primary_key=True
    )
    category_id: Mapped[int] = mapped_column(
        sa.Integer, sa.ForeignKey("categories.id", ondelete="CASCADE"), primary_key=True
    )
    created_at: Mapped[datetime | None] = created_at_column()


class ContentItemTag(Base):
    __tablename__ = "content_item_tags"

    content_item_id: Mapped[int] = mapped_column(
        sa.Integer, sa.ForeignKey("content_items.id", ondelete="CASCADE"), primary_key=True
    )
    tag_id: Mapped[int] = mapped_column(
        sa.Integer, sa.ForeignKey("tags.id", ondelete="CASCADE"), primary_key=True
    )
    created_at: Mapped[datetime | None] = created_at_column()


class CustomField(Base):
    """A field definition that every item of one content type may carry."""

    __tablename__ = "custom_fields"
    __table_args__ = (sa.UniqueConstraint("content_type_id", "field_name"),)

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    content_type_id: Mapped[int] = mapped_column(
        sa.Integer, sa.ForeignKey("content_types.id", ondelete="CASCADE")
    )
    field_name: Mapped[str] = mapped_column(sa.String(100))
    field_label: Mapped[str] = mapped_column(sa.String(255))
    field_type: Mapped[str] = mapped_column(sa.String(50))
    options: Mapped[str | None] = mapped_column(sa.Text)
    is_required: Mapped[bool] = mapped_column(sa.Boolean, default=False, server_default="0")
    created_at: Mapped[datetime | None] = created_at_column()
    updated_at: Mapped[datetime | None] = updated_at_column()


class CustomFieldValue(Base):
    __tablename__ = "custom_field_values"
    __table_args__ = (sa.Index(None, "content_item_id", "custom_field_id"),)

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    content_item_id: Mapped[int] = mapped_column(
        sa.Integer, sa.ForeignKey("content_items.id", ondelete="CASCADE")
    )
    custom_field_id: Mapped[int] = mapped_column(
        sa.Integer, sa.ForeignKey("custom_fields.id", ondelete="CASCADE")
    )
    field_value: Mapped[str | None] = mapped_column(LongText)
    created_at: Mapped[datetime | None] = created_at_column()
    updated_at: Mapped[datetime | None] = updated_at_column()
