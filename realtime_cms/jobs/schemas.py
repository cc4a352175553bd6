"""Request and response shapes of background work: jobs, job types, queues, worker processes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
)

from realtime_cms.jobs.batches import MAX_ITEMS
from realtime_cms.jobs.queue import DEDUPE_MAX
from realtime_cms.jobs.registry import NAME_MAX, QUEUE_MAX


class JobOut(BaseModel):
    """A job as listed: what it is, where it stands, and its last error."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    type: str
    queue: str
    status: str
    priority: int
    attempts: int
    max_attempts: int
    created_at: datetime | None
    # Not before this time (a retry's backoff, a schedule's slot).
    run_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    last_error: str | None
    # The process holding (or that last held) the job.
    process_id: str | None
    batch_job_id: int | None
    dedupe_key: str | None


class JobDetailOut(JobOut):
    """One job with its payload, its output and how late it started."""

    # Null when this process does not know the job type (nor so its secret fields).
    payload: dict[str, Any] | None
    # Payload fields the job type marks secret (`writeOnly`), shown as null.
    redacted_fields: list[str]
    output: str | None
    # started_at - run_at, in seconds (null until the job first started).
    lateness_seconds: float | None


class JobEnqueue(BaseModel):
    """A job of an operator job type (`GET /api/v1/job-types`, `operator: true`)."""

    model_config = ConfigDict(extra="forbid")

    type: str = Field(min_length=1, max_length=NAME_MAX)
    payload: dict[str, Any] = Field(default_factory=dict)
    # Not before this time (default now; a past time means now); at most a year ahead.
    run_at: datetime | None = None
    # Lower runs first; default the job type's.
    priority: int | None = Field(default=None, ge=-1000, le=1000)
    # While a job with this key is queued or running, another is refused (409 job_duplicate).
    dedupe_key: str | None = Field(default=None, min_length=1, max_length=DEDUPE_MAX)


class JobTypeOut(BaseModel):
    """A job type this process can run and its payload's JSON Schema."""

    name: str
    queue: str
    description: str
    # Whether operators may enqueue it (`POST /api/v1/jobs`).
    operator: bool
    priority: int
    max_attempts: int
    timeout_seconds: float
    payload_schema: dict[str, Any]


class QueueDepthOut(BaseModel):
    """How much work waits on a queue. Ended jobs are counted by listing them
    (`GET /api/v1/jobs?filter[status]=completed`, `meta.total`)."""

    queue: str
    # Queued in all; `due` of them may run now, the rest wait for their run_at.
    queued: int
    due: int
    processing: int
    failed: int
    # The run_at of the longest-waiting due job: how far behind the queue's workers are.
    oldest_due_at: datetime | None
    # Whether a job type of this process uses the queue.
    registered: bool


class ActivityOut(BaseModel):
    """One lifecycle event of a worker process (`worker_activity_logs`)."""

    id: int
    action: str
    details: dict[str, Any] | None
    timestamp: datetime


class WorkerOut(BaseModel):
    """A job worker process (`worker_processes`) with its health (`workers`)."""

    id: str
    kind: str
    # idle | working | stopped | failed (declared dead when it stopped heartbeating).
    status: str
    # Live and heartbeating within the stale window.
    alive: bool
    pid: int | None
    hostname: str | None
    memory_mb: int | None
    memory_limit_mb: int
    last_heartbeat: datetime | None
    heartbeat_age_seconds: float | None
    current_workload: int | None
    max_workload: int | None
    health_score: int | None
    failure_count: int | None
    last_failure_time: datetime | None
    last_job_id: str | None
    created_at: datetime | None


class WorkerDetailOut(WorkerOut):
    """A worker process with its latest activity, newest first."""

    activity: list[ActivityOut]


# --- heartbeat alerts, alert configurations, scaling rules (realtime_cms/jobs/monitoring.py) --
# The values the monitor and the autoscaler understand (tests check them against
# `alerts.CHANNELS` and the `scaling_rules` enums).
Channel = Literal["in_app", "email"]
Condition = Literal["queue_length", "worker_load", "time_of_day"]
Action = Literal["scale_up", "scale_down"]
MAX_ALERT_LEVEL = 100
# A year and a day: longer silences are not worth a level of their own.
MAX_MINUTES = 366 * 24 * 60
MAX_WORKER_COUNT = 1000
# Queue lengths beyond this are not a threshold anyone means (the column is a FLOAT).
MAX_THRESHOLD = 1e9

Minutes = Annotated[int, Field(ge=1, le=MAX_MINUTES)]


def _distinct(channels: list[str]) -> list[str]:
    if len(set(channels)) != len(channels):
        raise ValueError("each channel at most once")
    return channels


Channels = Annotated[list[Channel], Field(min_length=1), AfterValidator(_distinct)]


class _Partial(BaseModel):
    """A partial update: absent fields stay as they are; only `NULLABLE` ones take null."""

    model_config = ConfigDict(extra="forbid")
    NULLABLE: ClassVar[frozenset[str]] = frozenset()

    @field_validator("*")
    @classmethod
    def _not_null(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None and info.field_name not in cls.NULLABLE:
            raise ValueError("may not be null")
        return value

    def changes(self) -> dict[str, Any]:
        """The fields the caller sent."""
        return self.model_dump(exclude_unset=True)


class AlertOut(BaseModel):
    """An open heartbeat alert (`heartbeat_alerts`) with its worker process' host and beat."""

    id: int
    worker_id: str
    hostname: str | None
    pid: int | None
    # The process' last heartbeat: it has been silent since.
    last_heartbeat: datetime | None
    # How many levels fired, the last one at `last_failure`.
    failure_count: int | None
    last_failure: datetime | None
    # The level to fire next (the last one fired is the level before it).
    next_alert_level: int | None
    # Acknowledged: nobody is told of it again; its escalation is still recorded.
    is_suppressed: bool


class AlertUpdate(BaseModel):
    """Acknowledge (suppress) an alert, or let it notify again."""

    model_config = ConfigDict(extra="forbid")

    suppressed: bool


class AlertConfigurationCreate(BaseModel):
    """A level of heartbeat alerts: when it fires, how it escalates, whom it tells how."""

    model_config = ConfigDict(extra="forbid")

    # Unique among the configurations; levels fire lowest first.
    alert_level: int = Field(ge=1, le=MAX_ALERT_LEVEL)
    # Fires once a process is silent this long...
    threshold_minutes: Minutes
    # ...or this long after it fired, for the next level (null: no escalation by time).
    escalation_after_minutes: Minutes | None = None
    notification_channels: Channels
    is_active: bool = True


class AlertConfigurationUpdate(_Partial):
    NULLABLE: ClassVar[frozenset[str]] = frozenset({"escalation_after_minutes"})

    alert_level: int | None = Field(default=None, ge=1, le=MAX_ALERT_LEVEL)
    threshold_minutes: Minutes | None = None
    escalation_after_minutes: Minutes | None = None
    notification_channels: Channels | None = None
    is_active: bool | None = None


class AlertConfigurationOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    alert_level: int
    threshold_minutes: int
    escalation_after_minutes: int | None
    notification_channels: list[str]
    # Null counts as active, as the monitor reads it.
    is_active: bool | None


class ScalingRuleCreate(BaseModel):
    """When `condition_type` passes `threshold_value`, scale up or down to `worker_count`.

    `queue_length`: due jobs (>= 0); `worker_load`: percent of live capacity (0-100);
    `time_of_day`: an hour in UTC (0 <= hour < 24, 9.5 is 09:30)."""

    model_config = ConfigDict(extra="forbid")

    condition_type: Condition
    threshold_value: float = Field(ge=0, le=MAX_THRESHOLD)
    action: Action
    worker_count: int = Field(ge=0, le=MAX_WORKER_COUNT)
    is_active: bool = True


class ScalingRuleUpdate(_Partial):
    condition_type: Condition | None = None
    threshold_value: float | None = Field(default=None, ge=0, le=MAX_THRESHOLD)
    action: Action | None = None
    worker_count: int | None = Field(default=None, ge=0, le=MAX_WORKER_COUNT)
    is_active: bool | None = None


class ScalingRuleOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    condition_type: str
    threshold_value: float
    action: str
    worker_count: int
    # Null counts as active, as the autoscaler reads it.
    is_active: bool | None
    created_at: datetime | None


class ScalingDecisionOut(BaseModel):
    """What the scaling rules ask for now (`rcms_workers_desired` on /metrics)."""

    desired: int
    live_workers: int
    # Queued jobs that are due now.
    due_jobs: int
    # Jobs running on live workers, and the sum of their `max_workload`.
    running: int
    capacity: int
    load_percent: float
    # The active rules that match now (of the time-of-day rules, the one in force).
    matched_rule_ids: list[int]
    # The rule whose count won; null when none matched and the live count stands.
    decided_by: ScalingRuleOut | None


# --- batches (realtime_cms/jobs/batches.py) ---------------------------------------------------


class BatchCallbackIn(BaseModel):
    """The job to enqueue once every item has ended (an operator job type)."""

    model_config = ConfigDict(extra="forbid")

    type: str = Field(min_length=1, max_length=NAME_MAX)
    payload: dict[str, Any] = Field(default_factory=dict)


class BatchCreate(BaseModel):
    """A batch of jobs of one operator job type: one job per item payload."""

    model_config = ConfigDict(extra="forbid")

    type: str = Field(min_length=1, max_length=NAME_MAX)
    items: list[dict[str, Any]] = Field(min_length=1, max_length=MAX_ITEMS)
    callback: BatchCallbackIn | None = None
    # Default the job type's.
    queue: str | None = Field(default=None, min_length=1, max_length=QUEUE_MAX)
    priority: int | None = Field(default=None, ge=-1000, le=1000)


class BatchCallbackOut(BaseModel):
    type: str
    # The callback job, enqueued once the last item ended (null until then).
    job_id: str | None


class BatchOut(BaseModel):
    """A batch and its progress: `pending` items have not ended yet."""

    id: int
    # The job type of its items.
    type: str
    # pending (no item claimed yet) | processing | completed | failed (an item failed).
    status: str
    total: int
    completed: int
    failed: int
    pending: int
    callback: BatchCallbackOut | None
    created_at: datetime | None
    started_at: datetime | None
    completed_at: datetime | None


class BatchItemOut(BaseModel):
    """One item of a batch and its outcome, counted at its job's first end."""

    id: int
    # The item's job (`GET /api/v1/jobs/{job_id}`, until it is pruned).
    job_id: str
    # pending | completed | failed.
    status: str
    # `{"output": ...}` of a completed job, `{"error": ...}` of a failed one.
    result: dict[str, Any] | None
    processed_at: datetime | None
