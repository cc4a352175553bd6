"""REST for background work: jobs, job types, queue depth and the worker processes."""

from __future__ import annotations

from datetime import datetime

from aiohttp import web

from handlers import keys
from handlers.api import Call, Routes
from realtime_cms.jobs import service
from realtime_cms.jobs.registry import Registry
from realtime_cms.jobs.schemas import (
    JobDetailOut,
    JobEnqueue,
    JobOut,
    JobTypeOut,
    QueueDepthOut,
    WorkerDetailOut,
    WorkerOut,
)
from realtime_cms.listing import Field, Listing, Page
from realtime_cms.models.workers import Worker, WorkerJob, WorkerProcess
from realtime_cms.runtime import Runtime

routes = Routes("background work")

JOBS = "/api/v1/jobs"
JOB = JOBS + "/{job_id}"
WORKERS = "/api/v1/workers"

JOB_LISTING = Listing(
    fields={
        "id": Field(WorkerJob.id),
        "type": Field(WorkerJob.type),
        "queue": Field(WorkerJob.queue),
        "status": Field(WorkerJob.status),
        "priority": Field(WorkerJob.priority, int),
        "attempts": Field(WorkerJob.attempts, int),
        "process_id": Field(WorkerJob.process_id),
        "batch_job_id": Field(WorkerJob.batch_job_id, int),
        "dedupe_key": Field(WorkerJob.dedupe_key),
        "created_at": Field(WorkerJob.created_at, datetime),
        "run_at": Field(WorkerJob.run_at, datetime),
        "started_at": Field(WorkerJob.started_at, datetime),
        "completed_at": Field(WorkerJob.completed_at, datetime),
    },
    default_sort="-created_at,id",
)
WORKER_LISTING = Listing(
    fields={
        "id": Field(WorkerProcess.id),
        "kind": Field(WorkerProcess.type),
        "status": Field(WorkerProcess.status),
        "pid": Field(WorkerProcess.pid, int),
        "hostname": Field(Worker.hostname),
        "last_heartbeat": Field(WorkerProcess.last_heartbeat, datetime),
        "health_score": Field(Worker.health_score, int),
        "failure_count": Field(Worker.failure_count, int),
        "created_at": Field(WorkerProcess.created_at, datetime),
    },
    default_sort="-created_at,id",
)


def runtime_of(app: web.Application) -> Runtime:
    return app[keys.RUNTIME]


def _registry(call: Call) -> Registry:
    return runtime_of(call.app).jobs


def _stale_after(call: Call) -> float:
    """Seconds without a heartbeat after which a process is dead (as workers judge it)."""
    settings = call.app[keys.SETTINGS]
    return settings.job_stale_after_seconds or settings.job_heartbeat_seconds * 2.5


@routes.get(JOBS, "List jobs", permission="jobs.view", response=JobOut, listing=JOB_LISTING)
async def list_jobs(call: Call) -> Page[WorkerJob]:
    """Newest first by default. Filter on `status`, `type`, `queue`, and time ranges with
    `filter[created_at][gte]=...&filter[created_at][lt]=...` (also `run_at`, `started_at`,
    `completed_at`)."""
    assert call.query is not None
    return await service.list_jobs(call.db, call.principal, call.query)


@routes.post(
    JOBS,
    "Enqueue a job",
    permission="jobs.manage",
    body=JobEnqueue,
    response=JobDetailOut,
    status=201,
)
async def enqueue_job(call: Call) -> JobDetailOut:
    """Only job types marked `operator` (see `GET /api/v1/job-types`): another type is 422
    naming `type`, a payload its schema refuses is 422 naming `payload.<field>`. A taken
    `dedupe_key` is 409 `job_duplicate`."""
    body: JobEnqueue = call.body
    return await service.enqueue_job(call.db, call.principal, _registry(call), body)


@routes.get(JOB, "Read a job", permission="jobs.view", response=JobDetailOut)
async def get_job(call: Call) -> JobDetailOut:
    """With its payload (fields the job type marks secret are null and named in
    `redacted_fields`), output, last error and lateness (`started_at - run_at`)."""
    return await service.get_job(call.db, call.principal, _registry(call), call.path_str("job_id"))


@routes.post(JOB + "/retry", "Retry a job", permission="jobs.manage", response=JobDetailOut)
async def retry_job(call: Call) -> JobDetailOut:
    """A failed or cancelled job is queued again now with its attempts reset; any other
    state is 409 `job_not_retryable`."""
    registry = _registry(call)
    return await service.retry_job(call.db, call.principal, registry, call.path_str("job_id"))


@routes.post(JOB + "/cancel", "Cancel a job", permission="jobs.manage", response=JobDetailOut)
async def cancel_job(call: Call) -> JobDetailOut:
    """Only a queued job: a running one is 409 `job_running`, an ended one 409 `job_ended`."""
    registry = _registry(call)
    return await service.cancel_job(call.db, call.principal, registry, call.path_str("job_id"))


@routes.delete(JOB, "Discard a job", permission="jobs.manage")
async def discard_job(call: Call) -> None:
    """Deletes an ended job (completed, failed or cancelled); any other is 409 `job_not_ended`."""
    await service.discard_job(call.db, call.principal, call.path_str("job_id"))


@routes.get("/api/v1/job-types", "List job types", permission="jobs.view", response=JobTypeOut)
async def list_job_types(call: Call) -> Page[JobTypeOut]:
    """Every job type this server knows, with its queue and its payload's JSON Schema."""
    found = service.job_types(call.principal, _registry(call))
    return Page(items=found, total=len(found), limit=len(found), offset=0)


@routes.get("/api/v1/queues", "Read queue depth", permission="jobs.view", response=QueueDepthOut)
async def queue_depth(call: Call) -> Page[QueueDepthOut]:
    """Per queue: jobs queued (and due now), processing and failed, and since when the
    oldest due job waits. Every queue a job type uses is listed, idle or not."""
    found = await service.queue_depth(call.db, call.principal, _registry(call))
    return Page(items=found, total=len(found), limit=len(found), offset=0)


@routes.get(
    WORKERS,
    "List worker processes",
    permission="workers.view",
    response=WorkerOut,
    listing=WORKER_LISTING,
)
async def list_workers(call: Call) -> Page[WorkerOut]:
    """Every process that ran jobs (until pruned): status, heartbeat, memory, workload and
    health. `alive` is false once a process misses its heartbeats."""
    assert call.query is not None
    return await service.list_workers(
        call.db, call.principal, call.query, stale_after=_stale_after(call)
    )


@routes.get(
    WORKERS + "/{process_id}",
    "Read a worker process",
    permission="workers.view",
    response=WorkerDetailOut,
)
async def get_worker(call: Call) -> WorkerDetailOut:
    """With its latest lifecycle events (started, job_failed, reclaimed, stopped...)."""
    return await service.get_worker(
        call.db, call.principal, call.path_str("process_id"), stale_after=_stale_after(call)
    )
