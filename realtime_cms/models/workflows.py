"""Scheduled publishing and content workflows: seed area "Scheduling & Workflows"."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from realtime_cms.models.base import (
    Base,
    IntUnsigned,
    SiteId,
    TinyInt,
    UTCDateTime,
    created_at_column,
    enum,
    updated_at_column,
    utcnow,
)

SCHEDULE_STATUSES = ("scheduled", "published", "expired", "failed", "cancelled")


class ScheduledContent(Base):
    """Scheduled publish/expire of a content item; the seed's `scheduled_events` are these rows.

    Added to the seed's columns (docs/schema.md, migration 0005): `timezone` (the author's
    IANA zone; times stay UTC), `created_by` (the scheduling user, whom transitions run as),
    `last_error`, `lateness_seconds`, `published_at` and `expired_at` (what really happened),
    and the statuses `failed` and `cancelled`.
    """

    __tablename__ = "scheduled_content"
    # Added index: the publisher's due scan, `status = 'scheduled' AND publish_time <= now`.
    __table_args__ = (sa.Index(None, "status", "publish_time"),)

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    site_id: Mapped[int | None] = mapped_column(
        SiteId, sa.ForeignKey("sites.id", ondelete="CASCADE")
    )
    content_id: Mapped[int] = mapped_column(
        sa.Integer, sa.ForeignKey("content_items.id", ondelete="CASCADE")
    )
    publish_time: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    expire_time: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)
    priority: Mapped[int | None] = mapped_column(TinyInt, default=0, server_default="0", index=True)
    status: Mapped[str | None] = mapped_column(
        enum(*SCHEDULE_STATUSES, name="scheduled_content_status"),
        default="scheduled",
        server_default="scheduled",
        index=True,
    )
    created_at: Mapped[datetime | None] = created_at_column()
    updated_at: Mapped[datetime | None] = updated_at_column()
    recurrence_pattern: Mapped[str | None] = mapped_column(sa.String(20))
    recurrence_end_date: Mapped[date | None] = mapped_column(sa.Date)
    recurrence_interval: Mapped[int | None] = mapped_column(
        sa.Integer, default=1, server_default="1"
    )
    recurrence_byday: Mapped[str | None] = mapped_column(sa.String(20))
    recurrence_bymonthday: Mapped[int | None] = mapped_column(sa.Integer)
    parent_event_id: Mapped[int | None] = mapped_column(
        sa.Integer, sa.ForeignKey("scheduled_content.id", ondelete="CASCADE")
    )
    is_recurring: Mapped[bool | None] = mapped_column(sa.Boolean, default=False, server_default="0")
    assigned_worker_id: Mapped[str | None] = mapped_column(
        sa.String(255), sa.ForeignKey("workers.worker_id", ondelete="SET NULL"), index=True
    )
    timezone: Mapped[str] = mapped_column(sa.String(64), default="UTC", server_default="UTC")
    created_by: Mapped[int | None] = mapped_column(
        sa.Integer, sa.ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    # Seconds from the due time to the start of the run that published it.
    lateness_seconds: Mapped[float | None] = mapped_column(sa.Float)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    expired_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Workflow(Base):
    __tablename__ = "workflows"

    id: Mapped[int] = mapped_column(IntUnsigned, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(sa.String(255), unique=True)
    description: Mapped[str | None] = mapped_column(sa.Text)
    is_active: Mapped[bool] = mapped_column(sa.Boolean, default=True, server_default="1")
    created_at: Mapped[datetime | None] = created_at_column()
    updated_at: Mapped[datetime | None] = updated_at_column()


class WorkflowEvent(Base):
    __tablename__ = "workflow_events"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    workflow_id: Mapped[int] = mapped_column(
        IntUnsigned, sa.ForeignKey("workflows.id", ondelete="CASCADE")
    )
    event_type: Mapped[str] = mapped_column(sa.String(50))
    details: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    status: Mapped[str] = mapped_column(sa.String(20))
    created_at: Mapped[datetime | None] = created_at_column()


class WorkflowTrigger(Base):
    __tablename__ = "workflow_triggers"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    workflow_id: Mapped[int] = mapped_column(
        IntUnsigned, sa.ForeignKey("workflows.id", ondelete="CASCADE")
    )
    trigger_type: Mapped[str] = mapped_column(sa.String(50))
    trigger_config: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    created_at: Mapped[datetime | None] = created_at_column()
    updated_at: Mapped[datetime | None] = updated_at_column()


class WorkflowAction(Base):
    __tablename__ = "workflow_actions"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    workflow_id: Mapped[int] = mapped_column(
        IntUnsigned, sa.ForeignKey("workflows.id", ondelete="CASCADE")
    )
    action_type: Mapped[str] = mapped_column(sa.String(50))
    action_config: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    execution_order: Mapped[int] = mapped_column(sa.Integer)
    created_at: Mapped[datetime | None] = created_at_column()
    updated_at: Mapped[datetime | None] = updated_at_column()


class WorkflowState(Base):
    __tablename__ = "workflow_states"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(sa.String(255), unique=True)
    label: Mapped[str] = mapped_column(sa.String(255))
    description: Mapped[str | None] = mapped_column(sa.Text)
    is_initial: Mapped[bool] = mapped_column(sa.Boolean, default=False, server_default="0")
    is_terminal: Mapped[bool] = mapped_column(sa.Boolean, default=False, server_default="0")
    # Seed: Laravel-style timestamps without a server default; the ORM fills them.
    created_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime | None] = mapped_column(
        UTCDateTime(), default=utcnow, onupdate=utcnow
    )


class ContentWorkflow(Base):
    """Current workflow state of a content item (seed FKs were commented out; enforced here)."""

    __tablename__ = "content_workflow"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    content_id: Mapped[int] = mapped_column(
        sa.Integer, sa.ForeignKey("content_items.id", ondelete="CASCADE"), unique=True
    )
    workflow_state_id: Mapped[int] = mapped_column(
        sa.Integer, sa.ForeignKey("workflow_states.id", ondelete="RESTRICT"), index=True
    )
    user_id: Mapped[int | None] = mapped_column(
        sa.Integer, sa.ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    assigned_to_user_id: Mapped[int | None] = mapped_column(
        sa.Integer, sa.ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    notes: Mapped[str | None] = mapped_column(sa.Text)
    # Seed: Laravel-style timestamps without a server default; the ORM fills them.
    created_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime | None] = mapped_column(
        UTCDateTime(), default=utcnow, onupdate=utcnow
    )


class ContentWorkflowHistory(Base):
    """Transitions of content items between workflow states (FKs enforced, INT like targets)."""

    __tablename__ = "content_workflow_history"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    content_id: Mapped[int] = mapped_column(
        sa.Integer, sa.ForeignKey("content_items.id", ondelete="CASCADE"), index=True
    )
    from_workflow_state_id: Mapped[int | None] = mapped_column(
        sa.Integer, sa.ForeignKey("workflow_states.id", ondelete="SET NULL"), index=True
    )
    to_workflow_state_id: Mapped[int] = mapped_column(
        sa.Integer, sa.ForeignKey("workflow_states.id", ondelete="RESTRICT"), index=True
    )
    user_id: Mapped[int | None] = mapped_column(
        sa.Integer, sa.ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    notes: Mapped[str | None] = mapped_column(sa.Text)
    transitioned_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), default=utcnow, server_default=sa.func.current_timestamp(), index=True
    )


class WorkflowMonitoring(Base):
    """State changes of scheduled events, with who made them."""

    __tablename__ = "workflow_monitoring"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    # Seed gives no ON DELETE: CASCADE so deleting a content item (which cascades to its
    # scheduled_content rows) is not blocked by their monitoring history.
    event_id: Mapped[int] = mapped_column(
        sa.Integer, sa.ForeignKey("scheduled_content.id", ondelete="CASCADE"), index=True
    )
    from_state: Mapped[str] = mapped_column(sa.String(50))
    to_state: Mapped[str] = mapped_column(sa.String(50))
    # Seed gives no ON DELETE (MySQL's default, RESTRICT); kept explicit: NOT NULL audit column.
    changed_by: Mapped[int] = mapped_column(
        sa.Integer, sa.ForeignKey("users.id", ondelete="RESTRICT"), index=True
    )
    changed_at: Mapped[datetime | None] = created_at_column()
    notes: Mapped[str | None] = mapped_column(sa.Text)
