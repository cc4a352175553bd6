"""Sites of this installation and node-to-node federation: seed area "Multi-site & Federation"."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from realtime_cms.models.base import Base, SiteId, UTCDateTime, created_at_column, updated_at_column


class Site(Base):
    __tablename__ = "sites"

    id: Mapped[int] = mapped_column(SiteId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(sa.String(255), unique=True)
    domain: Mapped[str] = mapped_column(sa.String(255), unique=True)
    is_active: Mapped[bool] = mapped_column(sa.Boolean, default=True, server_default="1")
    created_at: Mapped[datetime | None] = created_at_column()
    updated_at: Mapped[datetime | None] = updated_at_column()


class SiteUser(Base):
    __tablename__ = "site_users"

    site_id: Mapped[int] = mapped_column(
        SiteId, sa.ForeignKey("sites.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(
        sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )


class SiteContent(Base):
    __tablename__ = "site_content"

    site_id: Mapped[int] = mapped_column(
        SiteId, sa.ForeignKey("sites.id", ondelete="CASCADE"), primary_key=True
    )
    content_id: Mapped[int] = mapped_column(
        sa.Integer, sa.ForeignKey("content_items.id", ondelete="CASCADE"), primary_key=True
    )


class FederationNode(Base):
    __tablename__ = "federation_nodes"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    node_url: Mapped[str] = mapped_column(sa.String(255), unique=True)
    node_name: Mapped[str | None] = mapped_column(sa.String(100))
    # The credential exchanged with the peer node. It must be presented to the peer, so unlike
    # our own tokens it cannot be a one-way hash; keep it out of logs and API responses.
    api_key: Mapped[str] = mapped_column(sa.String(255))
    status: Mapped[str] = mapped_column(
        sa.String(20), default="inactive", server_default="inactive"
    )
    last_sync: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime | None] = created_at_column()
    updated_at: Mapped[datetime | None] = updated_at_column()


class FederationOutgoing(Base):
    __tablename__ = "federation_outgoing"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    node_id: Mapped[int] = mapped_column(
        sa.Integer, sa.ForeignKey("federation_nodes.id", ondelete="CASCADE")
    )
    entity_type: Mapped[str] = mapped_column(sa.String(50))
    entity_id: Mapped[str] = mapped_column(sa.String(255))
    status: Mapped[str] = mapped_column(sa.String(20), default="pending", server_default="pending")
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0, server_default="0")
    last_attempt: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime | None] = created_at_column()
    updated_at: Mapped[datetime | None] = updated_at_column()


class FederationIncoming(Base):
    __tablename__ = "federation_incoming"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    source_node_id: Mapped[int] = mapped_column(
        sa.Integer, sa.ForeignKey("federation_nodes.id", ondelete="CASCADE")
    )
    entity_type: Mapped[str] = mapped_column(sa.String(50))
    source_entity_id: Mapped[str] = mapped_column(sa.String(255))
    local_entity_id: Mapped[str | None] = mapped_column(sa.String(255))
    payload: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    status: Mapped[str] = mapped_column(sa.String(20), default="pending", server_default="pending")
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime | None] = created_at_column()


class FederationConflict(Base):
    __tablename__ = "federation_conflicts"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    incoming_id: Mapped[int] = mapped_column(
        sa.Integer, sa.ForeignKey("federation_incoming.id", ondelete="CASCADE")
    )
    conflict_type: Mapped[str] = mapped_column(sa.String(50))
    details: Mapped[str] = mapped_column(sa.Text)
    resolved_status: Mapped[str] = mapped_column(
        sa.String(20), default="unresolved", server_default="unresolved"
    )
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime | None] = created_at_column()
