"""Request and response shapes of background work: jobs, job types, queues, worker processes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from realtime_cms.jobs.queue import DEDUPE_MAX
from realtime_cms.jobs.registry import NAME_MAX


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
