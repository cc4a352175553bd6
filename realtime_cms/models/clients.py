"""Client records: seed area "Clients" (clients and their activity log)."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from realtime_cms.models.base import Base, created_at_column, enum, updated_at_column


class Client(Base):
    __tablename__ = "clients"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(sa.String(255))
    email: Mapped[str | None] = mapped_column(sa.String(255), index=True)
    phone: Mapped[str | None] = mapped_column(sa.String(50))
    address: Mapped[str | None] = mapped_column(sa.Text)
    status: Mapped[str | None] = mapped_column(
        enum("active", "inactive", "pending", name="clients_status"),
        default="active",
        server_default="active",
        index=True,
    )
    created_at: Mapped[datetime | None] = created_at_column()
    updated_at: Mapped[datetime | None] = updated_at_column()


class ClientActivity(Base):
    __tablename__ = "client_activities"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    client_id: Mapped[int] = mapped_column(
        sa.Integer, sa.ForeignKey("clients.id", ondelete="CASCADE")
    )
    user_id: Mapped[int | None] = mapped_column(
        sa.Integer, sa.ForeignKey("users.id", ondelete="SET NULL")
    )
    activity_type: Mapped[str] = mapped_column(sa.String(50))
    activity_details: Mapped[str | None] = mapped_column(sa.Text)
    ip_address: Mapped[str | None] = mapped_column(sa.String(45))
    user_agent: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime | None] = created_at_column()
