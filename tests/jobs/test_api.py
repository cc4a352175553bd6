"""REST for background work on a live server: who may, filters, enqueue rules, state rules.

Jobs of the test types sit on the queue `api-idle`, which the server's embedded worker does
not take (its queues were fixed when it started), so they stay where the test put them;
`jobs.prune` is a real operator type the worker runs.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from pydantic import BaseModel, Field

from handlers import keys
from handlers.jobs import runtime_of
from realtime_cms.db import transaction
from realtime_cms.jobs.registry import JobContext, JobType
from realtime_cms.models.analytics import AuditLog
from realtime_cms.models.base import utcnow
from realtime_cms.models.workers import WorkerJob
from tests.support.harness import Harness
from tests.support.jobs import settle_jobs

IDLE = "api-idle"
JOBS = "/api/v1/jobs"


class Echo(BaseModel):
    model_config = {"extra": "forbid"}
    count: int = Field(ge=1)
    # A secret the handler needs and nobody reads back (like a mailed link's token).
    secret: str = Field(default="", json_schema_extra={"writeOnly": True})


async def _echo(context: JobContext, payload: Echo) -> str:
    return f"echo {payload.count}"


ECHO = JobType("api.echo", Echo, _echo, queue=IDLE, operator=True, description="Echo a count")
INTERNAL = JobType("api.internal", Echo, _echo, queue=IDLE)


@pytest.fixture(scope="module", autouse=True)
def test_types(harness: Harness) -> None:
    registry = runtime_of(harness.app).jobs
    for job_type in (ECHO, INTERNAL):
        if job_type.name not in registry:
            registry.add(job_type)


async def insert_job(harness: Harness, **values: Any) -> str:
    """A job row as a test needs it (defaults: a queued `api.echo` on the idle queue). A
    processing job is held by the server's own live worker process: a job held by nobody
    would be taken back (queued again) by its reclaim."""
    job_id = str(uuid.uuid4())
    if values.get("status") == "processing":
        worker = runtime_of(harness.app).worker
        assert worker is not None
        values.setdefault("process_id", worker.process_id)
    row: dict[str, Any] = {
        "id": job_id,
        "type": ECHO.name,
        "queue": IDLE,
        "payload": {"count": 1, "secret": ""},
        "status": "queued",
        "attempts": 0,
        "max_attempts": 3,
        "priority": 0,
        "run_at": utcnow(),
        **values,
    }
    async with transaction(harness.app[keys.SESSIONS]) as db:
        db.add(WorkerJob(**row))
    return job_id


async def answer(response: Any, status: int) -> dict[str, Any]:
    body: dict[str, Any] = await response.json(content_type=None) if response.status != 204 else {}
    assert response.status == status, (response.status, body)
    return body


async def call(
    harness: Harness, method: str, path: str, status: int, *, role: str = "admin", **kw: Any
) -> dict[str, Any]:
    return await answer(await harness.call(method, path, role=role, **kw), status)


def fields_of(problem: dict[str, Any]) -> list[str]:
    return [error["field"] for error in problem["errors"]]


# --- who may -------------------------------------------------------------------------------


READS = [
    ("GET", JOBS),
    ("GET", "/api/v1/job-types"),
    ("GET", "/api/v1/queues"),
    ("GET", "/api/v1/workers"),
]


@pytest.mark.parametrize("role", ["viewer", "author", "editor"])
async def test_only_holders_of_the_permissions_read_or_change_background_work(
    harness: Harness, role: str
) -> None:
    job_id = await insert_job(harness, status="failed")
    for method, path in [
        *READS,
        ("GET", f"{JOBS}/{job_id}"),
        ("POST", f"{JOBS}/{job_id}/retry"),
        ("POST", f"{JOBS}/{job_id}/cancel"),
        ("DELETE", f"{JOBS}/{job_id}"),
    ]:
        problem = await call(harness, method, path, 403, role=role)
        assert problem["code"] == "permission_denied", (method, path)
    body = {"type": ECHO.name, "payload": {"count": 1}}
    problem = await call(harness, "POST", JOBS, 403, role=role, json=body)
    assert problem["code"] == "permission_denied"
    stored = await harness.scalar(sa.select(WorkerJob.status).where(WorkerJob.id == job_id))
    assert stored == "failed"


async def test_an_admin_reads_every_collection(harness: Harness) -> None:
    for method, path in READS:
        body = await call(harness, method, path, 200)
        assert isinstance(body["data"], list) and "total" in body["meta"], path


async def test_anonymous_callers_are_asked_to_sign_in(harness: Harness) -> None:
    for method, path in READS:
        problem = await answer(await harness.call(method, path), 401)
        assert problem["code"] == "unauthorized"


# --- listing -------------------------------------------------------------------------------


async def test_jobs_filter_on_status_type_queue_and_time_ranges(harness: Harness) -> None:
    queue = f"api-filter-{uuid.uuid4().hex[:8]}"
    day = datetime(2030, 5, 1, 12, tzinfo=UTC)
    failed = await insert_job(harness, queue=queue, status="failed", created_at=day)
    later = await insert_job(
        harness, queue=queue, status="queued", created_at=day + timedelta(hours=2)
    )
    other = await insert_job(
        harness, queue=queue, type=INTERNAL.name, status="queued", run_at=day + timedelta(days=1)
    )

    async def ids(query: str) -> list[str]:
        body = await call(harness, "GET", f"{JOBS}?filter[queue]={queue}&{query}", 200)
        assert body["meta"]["total"] == len(body["data"])
        return [job["id"] for job in body["data"]]

    assert await ids("filter[status]=failed") == [failed]
    assert sorted(await ids("filter[status][in]=queued,failed")) == sorted([failed, later, other])
    assert await ids(f"filter[type]={INTERNAL.name}") == [other]
    window = "filter[created_at][gte]=2030-05-01T11:00:00Z&filter[created_at][lt]=2030-05-01T13:00Z"
    assert await ids(window) == [failed]
    assert await ids("filter[run_at][gt]=2030-05-01T18:00:00Z") == [other]
    assert await ids("sort=created_at") == [other, failed, later]
    page = await call(harness, "GET", f"{JOBS}?filter[queue]={queue}&limit=1&offset=1", 200)
    assert page["meta"] == {"total": 3, "limit": 1, "offset": 1} and len(page["data"]) == 1


async def test_bad_list_queries_are_refused(harness: Harness) -> None:
    for query in ("filter[payload]=x", "sort=payload", "filter[created_at][gte]=yesterday"):
        problem = await call(harness, "GET", f"{JOBS}?{query}", 400)
        assert problem["code"] in ("invalid_filter", "invalid_sort"), query


# --- reading a job -------------------------------------------------------------------------


async def test_a_job_reads_with_payload_output_error_attempts_and_lateness(
    harness: Harness,
) -> None:
    due = datetime(2031, 1, 1, 8, tzinfo=UTC)
    job_id = await insert_job(
        harness,
        status="failed",
        payload={"count": 7, "secret": "the token"},
        attempts=3,
        run_at=due,
        started_at=due + timedelta(seconds=90),
        completed_at=due + timedelta(seconds=95),
        output=None,
        last_error="RuntimeError: no",
    )
    job = (await call(harness, "GET", f"{JOBS}/{job_id}", 200))["data"]
    assert job["payload"] == {"count": 7, "secret": None}
    assert job["redacted_fields"] == ["secret"]
    assert (job["attempts"], job["max_attempts"], job["last_error"]) == (3, 3, "RuntimeError: no")
    assert job["lateness_seconds"] == 90.0 and job["status"] == "failed"
    stored = await harness.scalar(sa.select(WorkerJob.payload).where(WorkerJob.id == job_id))
    assert stored["secret"] == "the token"


async def test_a_job_of_a_type_this_server_does_not_know_shows_no_payload(
    harness: Harness,
) -> None:
    job_id = await insert_job(harness, type="elsewhere.only", payload={"password": "x"})
    job = (await call(harness, "GET", f"{JOBS}/{job_id}", 200))["data"]
    assert job["payload"] is None and job["lateness_seconds"] is None


async def test_unknown_jobs_are_not_found(harness: Harness) -> None:
    missing = f"{JOBS}/{uuid.uuid4()}"
    for method, path in [
        ("GET", missing),
        ("POST", missing + "/retry"),
        ("POST", missing + "/cancel"),
        ("DELETE", missing),
    ]:
        assert (await call(harness, method, path, 404))["code"] == "job_not_found", path


# --- enqueueing ----------------------------------------------------------------------------


async def test_an_operator_type_is_enqueued_validated_and_audited(harness: Harness) -> None:
    body = {"type": ECHO.name, "payload": {"count": 3, "secret": "s"}, "priority": 5}
    job = (await call(harness, "POST", JOBS, 201, json=body))["data"]
    assert (job["type"], job["queue"], job["status"], job["priority"]) == (
        ECHO.name,
        IDLE,
        "queued",
        5,
    )
    assert job["payload"] == {"count": 3, "secret": None}
    assert await audited(harness, job["id"]) == ["job.enqueue"]


async def test_enqueueing_an_unknown_type_names_the_type_field(harness: Harness) -> None:
    body = {"type": "surely.not.a.type", "payload": {}}
    problem = await call(harness, "POST", JOBS, 422, json=body)
    assert problem["code"] == "unknown_job_type" and fields_of(problem) == ["type"]


async def test_enqueueing_an_internal_type_is_refused_naming_the_type(harness: Harness) -> None:
    for name in (INTERNAL.name, "mail.send"):
        body = {"type": name, "payload": {"count": 1}}
        problem = await call(harness, "POST", JOBS, 422, json=body)
        assert problem["code"] == "job_type_not_operator" and fields_of(problem) == ["type"]
    assert (
        await harness.scalar(
            sa.select(sa.func.count())
            .select_from(WorkerJob)
            .where(WorkerJob.type == INTERNAL.name, WorkerJob.queue == IDLE)
        )
        == 0
    )


async def test_an_invalid_payload_is_refused_naming_its_fields(harness: Harness) -> None:
    cases = [
        ({"count": 0}, ["payload.count"]),
        ({}, ["payload.count"]),
        ({"count": 1, "colour": "red"}, ["payload.colour"]),
    ]
    for payload, fields in cases:
        problem = await call(
            harness, "POST", JOBS, 422, json={"type": ECHO.name, "payload": payload}
        )
        assert problem["code"] == "invalid_payload" and fields_of(problem) == fields, payload


async def test_run_at_is_bounded_and_a_past_time_means_now(harness: Harness) -> None:
    far = (datetime.now(UTC) + timedelta(days=400)).isoformat()
    body = {"type": ECHO.name, "payload": {"count": 1}, "run_at": far}
    problem = await call(harness, "POST", JOBS, 422, json=body)
    assert fields_of(problem) == ["run_at"]
    before = utcnow()
    body["run_at"] = "2001-01-01T00:00:00Z"
    job = (await call(harness, "POST", JOBS, 201, json=body))["data"]
    assert datetime.fromisoformat(job["run_at"]) >= before
    soon = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=3)
    body["run_at"] = soon.isoformat()
    job = (await call(harness, "POST", JOBS, 201, json=body))["data"]
    assert datetime.fromisoformat(job["run_at"]) == soon


async def test_a_taken_dedupe_key_is_a_conflict_until_the_job_is_cancelled(
    harness: Harness,
) -> None:
    key = f"api-{uuid.uuid4()}"
    body = {"type": ECHO.name, "payload": {"count": 1}, "dedupe_key": key}
    first = (await call(harness, "POST", JOBS, 201, json=body))["data"]
    assert first["dedupe_key"] == key
    assert (await call(harness, "POST", JOBS, 409, json=body))["code"] == "job_duplicate"
    cancelled = (await call(harness, "POST", f"{JOBS}/{first['id']}/cancel", 200))["data"]
    assert cancelled["status"] == "cancelled" and cancelled["dedupe_key"] is None
    again = (await call(harness, "POST", JOBS, 201, json=body))["data"]
    assert again["id"] != first["id"]


async def test_an_enqueued_prune_runs_on_the_servers_worker(harness: Harness) -> None:
    job = (await call(harness, "POST", JOBS, 201, json={"type": "jobs.prune"}))["data"]
    await settle_jobs(harness.app[keys.SESSIONS], ["jobs.prune"])
    done = (await call(harness, "GET", f"{JOBS}/{job['id']}", 200))["data"]
    assert done["status"] == "completed" and done["output"].startswith("pruned")
    assert done["attempts"] == 1 and done["lateness_seconds"] is not None


# --- state rules ---------------------------------------------------------------------------


async def test_a_failed_or_cancelled_job_is_retried_from_zero_attempts(harness: Harness) -> None:
    for status in ("failed", "cancelled"):
        job_id = await insert_job(
            harness,
            status=status,
            attempts=3,
            run_at=datetime(2020, 1, 1, tzinfo=UTC),
            completed_at=datetime(2020, 1, 1, tzinfo=UTC),
            last_error="boom",
        )
        before = utcnow()
        job = (await call(harness, "POST", f"{JOBS}/{job_id}/retry", 200))["data"]
        assert (job["status"], job["attempts"], job["completed_at"]) == ("queued", 0, None)
        assert datetime.fromisoformat(job["run_at"]) >= before
        problem = await call(harness, "POST", f"{JOBS}/{job_id}/retry", 409)
        assert problem["code"] == "job_not_retryable"


async def test_queued_running_and_completed_jobs_are_not_retried(harness: Harness) -> None:
    for status in ("queued", "processing", "completed"):
        job_id = await insert_job(harness, status=status)
        problem = await call(harness, "POST", f"{JOBS}/{job_id}/retry", 409)
        assert problem["code"] == "job_not_retryable", status
        stored = await harness.scalar(sa.select(WorkerJob.status).where(WorkerJob.id == job_id))
        assert stored == status


async def test_only_a_queued_job_is_cancelled(harness: Harness) -> None:
    key = f"cancel-{uuid.uuid4()}"
    queued = await insert_job(harness, dedupe_key=key)
    job = (await call(harness, "POST", f"{JOBS}/{queued}/cancel", 200))["data"]
    assert (job["status"], job["dedupe_key"]) == ("cancelled", None)
    assert job["completed_at"] is not None
    running = await insert_job(harness, status="processing")
    assert (await call(harness, "POST", f"{JOBS}/{running}/cancel", 409))["code"] == "job_running"
    for status in ("completed", "failed", "cancelled"):
        ended = await insert_job(harness, status=status)
        problem = await call(harness, "POST", f"{JOBS}/{ended}/cancel", 409)
        assert problem["code"] == "job_ended", status


async def test_only_an_ended_job_is_discarded(harness: Harness) -> None:
    for status in ("completed", "failed", "cancelled"):
        job_id = await insert_job(harness, status=status)
        await call(harness, "DELETE", f"{JOBS}/{job_id}", 204)
        assert (await call(harness, "GET", f"{JOBS}/{job_id}", 404))["code"] == "job_not_found"
    for status in ("queued", "processing"):
        job_id = await insert_job(harness, status=status)
        problem = await call(harness, "DELETE", f"{JOBS}/{job_id}", 409)
        assert problem["code"] == "job_not_ended", status
        stored = await harness.scalar(sa.select(WorkerJob.status).where(WorkerJob.id == job_id))
        assert stored == status


async def audited(harness: Harness, job_id: str) -> list[str]:
    """The audit actions whose details name the job, oldest first."""
    async with transaction(harness.app[keys.SESSIONS]) as db:
        rows = await db.scalars(
            sa.select(AuditLog.action_type)
            .where(AuditLog.details.contains(job_id))
            .order_by(AuditLog.id)
        )
        return list(rows)


async def test_operator_changes_are_audited(harness: Harness) -> None:
    failed = await insert_job(harness, status="failed")
    await call(harness, "POST", f"{JOBS}/{failed}/retry", 200)
    await call(harness, "POST", f"{JOBS}/{failed}/cancel", 200)
    await call(harness, "DELETE", f"{JOBS}/{failed}", 204)
    assert await audited(harness, failed) == ["job.retry", "job.cancel", "job.discard"]


# --- job types, queues, workers ------------------------------------------------------------


async def test_job_types_list_queue_operator_flag_and_payload_schema(harness: Harness) -> None:
    types = {t["name"]: t for t in (await call(harness, "GET", "/api/v1/job-types", 200))["data"]}
    assert types["jobs.prune"]["operator"] is True and types["jobs.prune"]["queue"] == "maintenance"
    assert types["mail.send"]["operator"] is False
    echo = types[ECHO.name]
    assert (echo["queue"], echo["description"], echo["max_attempts"]) == (IDLE, "Echo a count", 5)
    assert set(echo["payload_schema"]["properties"]) == {"count", "secret"}
    assert echo["payload_schema"]["properties"]["secret"]["writeOnly"] is True


async def test_queue_depth_counts_waiting_work_per_queue(harness: Harness) -> None:
    queue = f"api-depth-{uuid.uuid4().hex[:8]}"
    oldest = datetime(2024, 3, 1, tzinfo=UTC)
    await insert_job(harness, queue=queue, run_at=oldest)
    await insert_job(harness, queue=queue, run_at=oldest + timedelta(hours=1))
    await insert_job(harness, queue=queue, run_at=utcnow() + timedelta(days=2))
    await insert_job(harness, queue=queue, status="processing")
    await insert_job(harness, queue=queue, status="failed")
    await insert_job(harness, queue=queue, status="completed")
    queues = {q["queue"]: q for q in (await call(harness, "GET", "/api/v1/queues", 200))["data"]}
    depth = queues[queue]
    assert (depth["queued"], depth["due"], depth["processing"], depth["failed"]) == (3, 2, 1, 1)
    assert datetime.fromisoformat(depth["oldest_due_at"]) == oldest
    assert depth["registered"] is False
    assert queues["maintenance"]["registered"] is True and queues["mail"]["registered"] is True


async def test_the_servers_worker_process_is_listed_alive_with_its_activity(
    harness: Harness,
) -> None:
    worker = runtime_of(harness.app).worker
    assert worker is not None
    listed = await call(harness, "GET", "/api/v1/workers?filter[status][in]=idle,working", 200)
    mine = [w for w in listed["data"] if w["id"] == worker.process_id]
    assert len(mine) == 1
    [process] = mine
    assert process["alive"] is True and process["kind"] == "web"
    assert process["max_workload"] == worker.options.concurrency
    assert process["health_score"] == 100 and process["failure_count"] == 0
    assert process["hostname"] and process["pid"]
    detail = (await call(harness, "GET", f"/api/v1/workers/{worker.process_id}", 200))["data"]
    actions = [event["action"] for event in detail["activity"]]
    assert actions[-1] == "started"
    assert detail["activity"][-1]["details"]["kind"] == "web"
    missing = await call(harness, "GET", f"/api/v1/workers/{uuid.uuid4()}", 404)
    assert missing["code"] == "worker_not_found"
