"""Workers, worker accounts and background jobs: seed area "Workers & Background Jobs"."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import Mapped, mapped_column

from realtime_cms.models.base import (
    Base,
    IntUnsigned,
    PreciseUTCDateTime,
    TinyInt,
    UTCDateTime,
    created_at_column,
    enum,
    updated_at_column,
    utcnow,
)

# TINYINT UNSIGNED (0-255) on MySQL/MariaDB; SMALLINT elsewhere. Not in base: only used here.
TinyIntUnsigned = sa.SmallInteger().with_variant(mysql.TINYINT(unsigned=True), "mysql", "mariadb")

_JOB_STATUSES = ("pending", "processing", "completed", "failed")


class Worker(Base):
    """Anything that can be assigned work: job processes and people (type `human`)."""

    __tablename__ = "workers"

    worker_id: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    type: Mapped[str] = mapped_column(sa.String(50))
    status: Mapped[str] = mapped_column(sa.String(20), default="active", server_default="active")
    hostname: Mapped[str | None] = mapped_column(sa.String(255))
    pid: Mapped[int | None] = mapped_column(sa.Integer)
    # To the microsecond (migration 0003): staleness is judged within a heartbeat or two.
    last_heartbeat: Mapped[datetime | None] = mapped_column(PreciseUTCDateTime())
    created_at: Mapped[datetime | None] = created_at_column()
    updated_at: Mapped[datetime | None] = updated_at_column()
    health_score: Mapped[int | None] = mapped_column(
        TinyIntUnsigned, default=100, server_default="100"
    )
    failure_count: Mapped[int | None] = mapped_column(IntUnsigned, default=0, server_default="0")
    last_failure_time: Mapped[datetime | None] = mapped_column(UTCDateTime())
    recovery_attempts: Mapped[int | None] = mapped_column(
        TinyIntUnsigned, default=0, server_default="0"
    )
    current_workload: Mapped[int] = mapped_column(
        sa.Integer, default=0, server_default="0", index=True
    )
    max_workload: Mapped[int] = mapped_column(sa.Integer, default=10, server_default="10")


class HumanWorker(Base):
    """Accounts of the worker system's staff, separate from CMS `users`."""

    __tablename__ = "human_workers"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(sa.String(50), unique=True)
    password: Mapped[str] = mapped_column(sa.String(255))
    email: Mapped[str] = mapped_column(sa.String(100), unique=True)
    first_name: Mapped[str] = mapped_column(sa.String(50))
    last_name: Mapped[str] = mapped_column(sa.String(50))
    phone: Mapped[str | None] = mapped_column(sa.String(20))
    profile_picture: Mapped[str | None] = mapped_column(sa.String(255))
    role: Mapped[str] = mapped_column(
        sa.String(30), default="worker", server_default="worker", index=True
    )
    last_password_change: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Holds a hash of the reset token (e.g. SHA-256 hex, 64 chars), never the token.
    password_reset_token: Mapped[str | None] = mapped_column(sa.String(100))
    password_reset_expires: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), default=utcnow, server_default=sa.func.current_timestamp()
    )
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime(),
        default=utcnow,
        onupdate=utcnow,
        server_default=sa.func.current_timestamp(),
    )


class WorkerRole(Base):
    __tablename__ = "worker_roles"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(sa.String(50), unique=True)
    description: Mapped[str | None] = mapped_column(sa.Text)
    parent_id: Mapped[int | None] = mapped_column(
        sa.Integer, sa.ForeignKey("worker_roles.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime | None] = created_at_column()
    updated_at: Mapped[datetime | None] = updated_at_column()


class WorkerPermission(Base):
    __tablename__ = "worker_permissions"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(sa.String(100), unique=True)
    description: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime | None] = created_at_column()
    updated_at: Mapped[datetime | None] = updated_at_column()


class WorkerRolePermission(Base):
    __tablename__ = "worker_role_permissions"

    role_id: Mapped[int] = mapped_column(
        sa.Integer, sa.ForeignKey("worker_roles.id", ondelete="CASCADE"), primary_key=True
    )
    permission_id: Mapped[int] = mapped_column(
        sa.Integer, sa.ForeignKey("worker_permissions.id", ondelete="CASCADE"), primary_key=True
    )
    created_at: Mapped[datetime | None] = created_at_column()


class WorkerUserRole(Base):
    """Worker roles of `human_workers` (the seed left the `user_id` target ambiguous)."""

    __tablename__ = "worker_user_roles"

    user_id: Mapped[int] = mapped_column(
        sa.Integer, sa.ForeignKey("human_workers.id", ondelete="CASCADE"), primary_key=True
    )
    role_id: Mapped[int] = mapped_column(
        sa.Integer, sa.ForeignKey("worker_roles.id", ondelete="CASCADE"), primary_key=True
    )
    created_at: Mapped[datetime | None] = created_at_column()


class WorkerActivityLog(Base):
    __tablename__ = "worker_activity_logs"

    log_id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    worker_id: Mapped[str] = mapped_column(
        sa.String(255), sa.ForeignKey("workers.worker_id", ondelete="CASCADE"), index=True
    )
    action_type: Mapped[str] = mapped_column(sa.String(50))
    details: Mapped[str | None] = mapped_column(sa.Text)
    timestamp: Mapped[datetime] = mapped_column(
        UTCDateTime(), default=utcnow, server_default=sa.func.current_timestamp(), index=True
    )


class HeartbeatAlert(Base):
    __tablename__ = "heartbeat_alerts"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    worker_id: Mapped[str] = mapped_column(
        sa.String(255), sa.ForeignKey("workers.worker_id", ondelete="CASCADE")
    )
    failure_count: Mapped[int | None] = mapped_column(sa.Integer, default=1, server_default="1")
    last_failure: Mapped[datetime | None] = mapped_column(
        UTCDateTime(), default=utcnow, server_default=sa.func.current_timestamp()
    )
    next_alert_level: Mapped[int | None] = mapped_column(sa.Integer, default=1, server_default="1")
    is_suppressed: Mapped[bool | None] = mapped_column(
        sa.Boolean, default=False, server_default="0"
    )


class AlertConfiguration(Base):
    __tablename__ = "alert_configurations"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    alert_level: Mapped[int] = mapped_column(sa.Integer)
    threshold_minutes: Mapped[int] = mapped_column(sa.Integer)
    notification_channels: Mapped[list[Any]] = mapped_column(sa.JSON)
    escalation_after_minutes: Mapped[int | None] = mapped_column(sa.Integer)
    is_active: Mapped[bool | None] = mapped_column(sa.Boolean, default=True, server_default="1")


class NotificationBatch(Base):
    __tablename__ = "notification_batches"

    batch_id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    status: Mapped[str] = mapped_column(
        enum(*_JOB_STATUSES, name="notification_batches_status"),
        default="pending",
        server_default="pending",
        index=True,
    )
    created_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), default=utcnow, server_default=sa.func.current_timestamp(), index=True
    )
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    notification_count: Mapped[int] = mapped_column(sa.Integer, default=0, server_default="0")


class WorkerNotification(Base):
    __tablename__ = "worker_notifications"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    worker_id: Mapped[str] = mapped_column(
        sa.String(255), sa.ForeignKey("workers.worker_id", ondelete="CASCADE"), index=True
    )
    message: Mapped[str] = mapped_column(sa.Text)
    type: Mapped[str] = mapped_column(sa.String(50), default="info", server_default="info")
    read_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Seed has no FK here; enforced (SET NULL) since it can only name a notification batch.
    batch_id: Mapped[str | None] = mapped_column(
        sa.String(36),
        sa.ForeignKey("notification_batches.batch_id", ondelete="SET NULL"),
        index=True,
    )
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    priority: Mapped[int] = mapped_column(TinyInt, default=3, server_default="3", index=True)
    created_at: Mapped[datetime | None] = created_at_column()
    updated_at: Mapped[datetime | None] = updated_at_column()


class WorkerMetric(Base):
    __tablename__ = "worker_metrics"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    worker_id: Mapped[str] = mapped_column(
        sa.String(255), sa.ForeignKey("workers.worker_id", ondelete="CASCADE"), index=True
    )
    cpu_usage: Mapped[float] = mapped_column(sa.Float)
    memory_usage: Mapped[float] = mapped_column(sa.Float)
    jobs_processed: Mapped[int] = mapped_column(sa.Integer)
    timestamp: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


class ScalingRule(Base):
    __tablename__ = "scaling_rules"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    condition_type: Mapped[str] = mapped_column(
        enum("queue_length", "worker_load", "time_of_day", name="scaling_rules_condition_type")
    )
    threshold_value: Mapped[float] = mapped_column(sa.Float)
    action: Mapped[str] = mapped_column(enum("scale_up", "scale_down", name="scaling_rules_action"))
    worker_count: Mapped[int] = mapped_column(sa.Integer)
    is_active: Mapped[bool | None] = mapped_column(sa.Boolean, default=True, server_default="1")
    created_at: Mapped[datetime | None] = created_at_column()


class WorkerProcess(Base):
    __tablename__ = "worker_processes"

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    type: Mapped[str] = mapped_column(sa.String(50), index=True)
    status: Mapped[str] = mapped_column(
        enum("idle", "working", "stopped", "failed", name="worker_processes_status"),
        default="idle",
        server_default="idle",
        index=True,
    )
    pid: Mapped[int | None] = mapped_column(sa.Integer)
    memory_limit: Mapped[int] = mapped_column(sa.Integer, default=128, server_default="128")
    current_memory: Mapped[int | None] = mapped_column(sa.Integer, default=0, server_default="0")
    # The lease of the process' jobs; to the microsecond (migration 0003).
    last_heartbeat: Mapped[datetime | None] = mapped_column(PreciseUTCDateTime())
    # Deliberately not an FK (the seed has none): a finished job may be purged first.
    last_job_id: Mapped[str | None] = mapped_column(sa.String(36))
    created_at: Mapped[datetime | None] = created_at_column()
    # Seed: NULL on insert, CURRENT_TIMESTAMP on update.
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), onupdate=utcnow)


class BatchJob(Base):
    """A batch of jobs of one type (realtime_cms/jobs/batches.py): one `worker_jobs` row and
    one `batch_job_items` row per item, and a callback job enqueued once the last item ends.

    Added to the seed's columns (docs/schema.md, migration 0004): the progress counters
    `total`, `completed` and `failed`, each moved by an atomic UPDATE in the transaction of an
    item's own end, and `callback_job_id`, set once when the batch ends.
    """

    __tablename__ = "batch_jobs"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    type: Mapped[str] = mapped_column(sa.String(50), index=True)
    status: Mapped[str] = mapped_column(
        enum(*_JOB_STATUSES, name="batch_jobs_status"),
        default="pending",
        server_default="pending",
        index=True,
    )
    payload: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    created_at: Mapped[datetime | None] = created_at_column()
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    total: Mapped[int] = mapped_column(sa.Integer, default=0, server_default="0")
    completed: Mapped[int] = mapped_column(sa.Integer, default=0, server_default="0")
    failed: Mapped[int] = mapped_column(sa.Integer, default=0, server_default="0")
    # Not an FK (like `worker_processes.last_job_id`): the callback job may be pruned first.
    callback_job_id: Mapped[str | None] = mapped_column(sa.String(36))


JOB_STATUSES = ("queued", "processing", "completed", "failed", "cancelled")
CLAIM_INDEX = "ix_worker_jobs_status_priority_run_at_queue"


class WorkerJob(Base):
    """A job of the job system (realtime_cms/jobs): claimed with SKIP LOCKED on MariaDB and
    a compare-and-set UPDATE on SQLite, leased by its process' heartbeat.

    Added to the seed's columns (docs/schema.md, migration 0003): `queue`, `priority`
    (lower runs first), `run_at` (not before), `last_error`, `dedupe_key` (unique while the
    job is queued or processing, cleared when it ends) and the `cancelled` status.
    """

    __tablename__ = "worker_jobs"
    # The claim query: `WHERE status = 'queued' AND queue IN (...) AND run_at <= now
    # ORDER BY priority, run_at`, read in this index's order so that a locking read stops
    # at its LIMIT (queue last: any set of queues is read in order, no filesort).
    __table_args__ = (sa.Index(CLAIM_INDEX, "status", "priority", "run_at", "queue"),)

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    # The lease holder while `processing`; completion is fenced on it.
    process_id: Mapped[str | None] = mapped_column(
        sa.String(36), sa.ForeignKey("worker_processes.id", ondelete="SET NULL"), index=True
    )
    # Repaired: the seed's VARCHAR(36) pointed at the INT key of batch_jobs.
    batch_job_id: Mapped[int | None] = mapped_column(
        sa.Integer, sa.ForeignKey("batch_jobs.id", ondelete="CASCADE"), index=True
    )
    type: Mapped[str] = mapped_column(sa.String(50))
    payload: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    status: Mapped[str] = mapped_column(
        enum(*JOB_STATUSES, name="worker_jobs_status"),
        default="queued",
        server_default="queued",
        index=True,
    )
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0, server_default="0")
    max_attempts: Mapped[int] = mapped_column(sa.Integer, default=3, server_default="3")
    output: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime | None] = created_at_column()
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    queue: Mapped[str] = mapped_column(sa.String(50), default="default", server_default="default")
    priority: Mapped[int] = mapped_column(sa.SmallInteger, default=0, server_default="0")
    run_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), default=utcnow, server_default=sa.func.current_timestamp()
    )
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    dedupe_key: Mapped[str | None] = mapped_column(sa.String(191), unique=True)


class BatchJobItem(Base):
    """One item of a batch. The seed's names read oddly here: `job_id` is the batch
    (`batch_jobs.id`) and `item_id` the item's own job (`worker_jobs.id`, not an FK: the job
    may be pruned, the item keeps its outcome in `status`, `result` and `processed_at`)."""

    __tablename__ = "batch_job_items"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[int] = mapped_column(
        sa.Integer, sa.ForeignKey("batch_jobs.id", ondelete="CASCADE"), index=True
    )
    item_id: Mapped[str] = mapped_column(sa.String(255), index=True)
    status: Mapped[str] = mapped_column(
        enum(*_JOB_STATUSES, name="batch_job_items_status"),
        default="pending",
        server_default="pending",
        index=True,
    )
    result: Mapped[Any] = mapped_column(sa.JSON, nullable=True)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class WorkerAssignment(Base):
    """Assignment of a scheduled event (`scheduled_content`) to a worker."""

    __tablename__ = "worker_assignments"
    __table_args__ = (sa.Index(None, "worker_id", "status"),)

    assignment_id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    worker_id: Mapped[str] = mapped_column(
        sa.String(255), sa.ForeignKey("workers.worker_id", ondelete="CASCADE")
    )
    event_id: Mapped[int] = mapped_column(
        sa.Integer, sa.ForeignKey("scheduled_content.id", ondelete="CASCADE")
    )
    assigned_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), default=utcnow, server_default=sa.func.current_timestamp()
    )
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(
        enum(*_JOB_STATUSES, name="worker_assignments_status"),
        default="pending",
        server_default="pending",
    )
