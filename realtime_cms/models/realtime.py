"""Realtime state: seed area "Realtime & Presence" plus the CRDT update log and its snapshots."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import Mapped, mapped_column

from realtime_cms.models.base import (
    Base,
    BigInt,
    UTCDateTime,
    created_at_column,
    updated_at_column,
)

# BLOB caps at 64 KiB on MySQL/MariaDB; updates and snapshots can be far larger.
LongBlob = sa.LargeBinary().with_variant(mysql.LONGBLOB(), "mysql", "mariadb")


class UserSession(Base):
    __tablename__ = "user_sessions"

    # SHA-256 hex of the login token; the token itself only ever exists on the client.
    id: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    user_id: Mapped[int] = mapped_column(
        sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    ip_address: Mapped[str | None] = mapped_column(sa.String(45))
    user_agent: Mapped[str | None] = mapped_column(sa.Text)
    last_active: Mapped[datetime] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime | None] = created_at_column()


class DocumentPermission(Base):
    """A user's level (read, write, admin) on one named collaborative document."""

    __tablename__ = "document_permissions"

    # `content:<id>` names the body of content_items.<id>; other names are free documents.
    document_id: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    user_id: Mapped[int] = mapped_column(
        sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    permission_level: Mapped[str] = mapped_column(sa.String(20))
    granted_at: Mapped[datetime | None] = created_at_column()


class PresenceTracking(Base):
    """When a user was last seen on an entity (a document, a page)."""

    __tablename__ = "presence_tracking"
    __table_args__ = (sa.UniqueConstraint("user_id", "entity_type", "entity_id"),)

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"))
    entity_type: Mapped[str] = mapped_column(sa.String(50))
    entity_id: Mapped[str] = mapped_column(sa.String(255))
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime())


class DocumentUpdate(Base):
    """Added table: the append-only log of CRDT updates of every document, in insert order."""

    __tablename__ = "document_updates"
    # Serves both "updates of a document" and "updates after id N": no separate document_id index.
    __table_args__ = (sa.Index(None, "document_id", "id"),)

    id: Mapped[int] = mapped_column(BigInt, primary_key=True, autoincrement=True)
    document_id: Mapped[str] = mapped_column(sa.String(255))
    update: Mapped[bytes] = mapped_column(LongBlob)
    created_at: Mapped[datetime] = created_at_column(nullable=False)


class DocumentSnapshot(Base):
    """Added table: a document's log compacted into one state, up to `last_update_id`."""

    __tablename__ = "document_snapshots"

    document_id: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    state: Mapped[bytes] = mapped_column(LongBlob)
    state_vector: Mapped[bytes] = mapped_column(sa.LargeBinary)
    # The highest document_updates.id folded into `state`; later updates replay on top.
    last_update_id: Mapped[int] = mapped_column(sa.BigInteger, default=0, server_default="0")
    update_count: Mapped[int] = mapped_column(sa.Integer, default=0, server_default="0")
    updated_at: Mapped[datetime] = updated_at_column(nullable=False)
