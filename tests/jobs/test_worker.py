"""The worker of one process: runs each job's effect once, retries, times out, stops cleanly."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, cast

import pymysql
import sqlalchemy as sa

from realtime_cms.jobs.queue import enqueue
from realtime_cms.jobs.registry import JobType, Registry
from realtime_cms.jobs.wakeup import Wakeup
from realtime_cms.jobs.worker import JobWorker, WorkerOptions
from realtime_cms.models.workers import (
    WorkerActivityLog,
    WorkerJob,
    WorkerNotification,
    WorkerProcess,
)
from realtime_cms.runtime import Runtime
from tests.jobs import probe
from tests.jobs.conftest import JobDb


def _registry() -> Registry:
    registry = Registry()
    probe.register(registry)
    return registry


@asynccontextmanager
async def _worker(jobdb: JobDb, **options: Any) -> AsyncIterator[JobWorker]:
    wakeup = Wakeup(None, "unused")
    wakeup.attach(jobdb.bus)
    settings = {"queues": ("probe",), "heartbeat_seconds": 0.5, "poll_seconds": 0.5, **options}
    # The probe jobs need nothing of the core.
    runtime = cast(Runtime, None)
    worker = JobWorker(
        jobdb.sessions, _registry(), wakeup, WorkerOptions(**settings), runtime=runtime
    )
    async with wakeup, worker:
        yield worker


async def _settled(worker: JobWorker, count: int, limit: float = 60) -> dict[str, str]:
    """Wait until `count` jobs have an outcome; job id -> status."""
    outcomes: dict[str, str] = {}
    done = asyncio.Event()

    def record(job_id: str, status: str) -> None:
        if status in ("completed", "failed"):
            outcomes[job_id] = status
        if len(outcomes) >= count:
            done.set()

    worker.on_settled.append(record)
    async with asyncio.timeout(limit):
        await done.wait()
    return outcomes


async def _enqueue(
    jobdb: JobDb, job_type: JobType[Any], payloads: list[dict[str, Any]]
) -> list[str]:
    async with jobdb.sessions() as db, db.begin():
        return [str(await enqueue(db, job_type, p)) for p in payloads]


async def _status(jobdb: JobDb) -> dict[str, tuple[str, int, str | None]]:
    async with jobdb.sessions() as db:
        rows = await db.execute(
            sa.select(WorkerJob.id, WorkerJob.status, WorkerJob.attempts, WorkerJob.output)
        )
        return {row.id: (row.status, row.attempts, row.output) for row in rows}


async def _effects(jobdb: JobDb) -> list[str]:
    async with jobdb.sessions() as db:
        return sorted(await db.scalars(sa.select(probe.EFFECTS.c.key)))


async def test_every_job_runs_its_effect_once(clean: JobDb) -> None:
    async with _worker(clean, concurrency=5) as worker:
        waiting = asyncio.create_task(_settled(worker, 40))
        ids = await _enqueue(clean, probe.INSERT, [{"key": f"k{i}"} for i in range(40)])
        outcomes = await waiting
    assert outcomes == {job_id: "completed" for job_id in ids}
    assert await _effects(clean) == sorted(f"k{i}" for i in range(40))
    status = await _status(clean)
    assert {status[i][:2] for i in ids} == {("completed", 1)}
    assert status[ids[0]][2] == "inserted k0"


async def test_a_failing_job_is_retried_until_it_succeeds(clean: JobDb, monkeypatch: Any) -> None:
    # No waiting between attempts here; tests/jobs/test_leases.py checks the backoff itself.
    monkeypatch.setattr("realtime_cms.jobs.leases.BACKOFF_BASE_SECONDS", 0.0)
    async with _worker(clean) as worker:
        waiting = asyncio.create_task(_settled(worker, 2))
        flaky, hopeless = await _enqueue(
            clean,
            probe.INSERT,
            [{"key": "flaky", "fail_times": 2}, {"key": "never", "fail_times": 9}],
        )
        outcomes = await waiting
    assert outcomes == {flaky: "completed", hopeless: "failed"}
    status = await _status(clean)
    assert status[flaky][:2] == ("completed", 3) and status[hopeless][:2] == ("failed", 3)
    assert await _effects(clean) == ["flaky"]
    async with clean.sessions() as db:
        error = await db.scalar(sa.select(WorkerJob.last_error).where(WorkerJob.id == hopeless))
        logged = await db.scalars(sa.select(WorkerActivityLog.action_type))
    assert error == "RuntimeError: failing on purpose (attempt 3)"
    assert "job_failed" in set(logged)
    # The staff hear of it: a worker notification, delivered by a batch job.
    async with clean.sessions() as db:
        told = (await db.execute(sa.select(WorkerNotification))).scalars().all()
        delivery = await db.scalars(
            sa.select(WorkerJob.payload).where(WorkerJob.type == "notifications.worker_batch")
        )
        deliveries = list(delivery)
    assert [(n.worker_id, n.type, n.priority) for n in told] == [
        (worker.process_id, "job_failed", 2)
    ]
    assert hopeless in told[0].message and "attempt 3" in told[0].message
    assert deliveries == [{"worker_id": worker.process_id}]


async def test_a_job_past_its_timeout_is_an_attempt_that_failed(clean: JobDb) -> None:
    slow = JobType(
        "probe.slow",
        probe.Effect,
        probe.INSERT.handler,
        queue="probe",
        max_attempts=1,
        timeout_seconds=0.2,
    )
    async with _worker(clean) as worker:
        worker.registry.add(slow)
        waiting = asyncio.create_task(_settled(worker, 1))
        [job_id] = await _enqueue(clean, slow, [{"key": "slow", "sleep": 5}])
        assert await waiting == {job_id: "failed"}
    assert (await _status(clean))[job_id][:2] == ("failed", 1)
    assert await _effects(clean) == []


async def test_stopping_releases_jobs_that_outlive_the_grace(clean: JobDb) -> None:
    async with _worker(clean, grace_seconds=0.3) as worker:
        quick_done = asyncio.create_task(_settled(worker, 1))
        [quick, slow] = await _enqueue(
            clean, probe.INSERT, [{"key": "quick"}, {"key": "slow", "sleep": 30}]
        )
        # Both were claimed in one batch: once the quick one is done the slow one is running.
        assert await quick_done == {quick: "completed"}
        assert (await _status(clean))[slow][0] == "processing"
    status = await _status(clean)
    assert status[quick][0] == "completed"
    assert status[slow][:2] == ("queued", 0)
    assert await _effects(clean) == ["quick"]
    async with clean.sessions() as db:
        process = await db.get(WorkerProcess, worker.process_id)
    assert process is not None and process.status == "stopped"


async def test_a_worker_wakes_within_milliseconds_of_a_commit(clean: JobDb) -> None:
    async with _worker(clean, poll_seconds=30) as worker:
        await asyncio.sleep(0.3)  # the worker is idle, waiting on the wake-up
        waiting = asyncio.create_task(_settled(worker, 1))
        await _enqueue(clean, probe.NOOP, [{}])
        # Well before the 30 s poll: the commit woke it (how fast is bench/jobs' business).
        async with asyncio.timeout(10):
            await waiting


_DEADLOCKS: dict[str, int] = {}


async def _deadlocks_twice(context: Any, payload: probe.Effect) -> str:
    """Writes its effect, then (the first two times) fails as MariaDB reports a deadlock
    victim: the driver's error 1213, raised where the real one would be."""
    await context.db.execute(
        probe.EFFECTS.insert().values(key=payload.key, job_id=context.job_id, attempt=1)
    )
    seen = _DEADLOCKS[payload.key] = _DEADLOCKS.get(payload.key, 0) + 1
    if seen <= 2:
        deadlock = pymysql.err.OperationalError(1213, "Deadlock found when trying to get lock")
        raise sa.exc.OperationalError("INSERT INTO probe_effects", {}, deadlock)
    return "inserted"


async def test_a_deadlocked_job_runs_again_in_the_same_attempt_with_its_effect_once(
    clean: JobDb,
) -> None:
    _DEADLOCKS.clear()
    deadlocking = JobType("probe.deadlocking", probe.Effect, _deadlocks_twice, queue="probe")
    registry = _registry()
    registry.add(deadlocking)
    wakeup = Wakeup(None, "unused")
    wakeup.attach(clean.bus)
    options = WorkerOptions(queues=("probe",), heartbeat_seconds=0.5, poll_seconds=0.5)
    worker = JobWorker(clean.sessions, registry, wakeup, options, runtime=cast(Runtime, None))
    [job_id] = await _enqueue(clean, deadlocking, [{"key": "deadlocked"}])
    async with wakeup, worker:
        outcomes = await _settled(worker, 1)
    assert outcomes == {job_id: "completed"}
    assert _DEADLOCKS["deadlocked"] == 3
    # Not a failed attempt: no backoff, no error kept, one effect.
    assert (await _status(clean))[job_id] == ("completed", 1, "inserted")
    assert await _effects(clean) == ["deadlocked"]
