"""`jobs.prune`: what ended or was recorded before the retention goes, table by table, and
nothing that is still under way or recent goes with it."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any, cast

import pytest
import sqlalchemy as sa

from realtime_cms.jobs import maintenance, processes
from realtime_cms.models.base import Base, utcnow
from realtime_cms.models.workers import (
    BatchJob,
    BatchJobItem,
    NotificationBatch,
    Worker,
    WorkerActivityLog,
    WorkerJob,
    WorkerMetric,
    WorkerNotification,
    WorkerProcess,
)
from realtime_cms.runtime import Runtime
from tests.jobs.conftest import JobDb
from tests.support.jobs import run_job

RETENTION_DAYS = 7
NOW = utcnow()
OLD = NOW - timedelta(days=RETENTION_DAYS + 1)
RECENT = NOW - timedelta(days=RETENTION_DAYS - 1)


def _job(name: str, status: str, ended: datetime | None, **more: Any) -> WorkerJob:
    return WorkerJob(
        id=str(uuid.uuid4()),
        type=name,
        payload={},
        status=status,
        run_at=ended or NOW,
        completed_at=ended,
        **more,
    )


async def _batch(db: Any, status: str, ended: datetime | None, item_status: str) -> int:
    """A batch of one item, whose job has `item_status`; its id."""
    batch = BatchJob(type="probe.noop", status=status, completed_at=ended, total=1)
    db.add(batch)
    await db.flush()
    job = _job("probe.noop", item_status, ended, batch_job_id=batch.id)
    db.add(job)
    db.add(BatchJobItem(job_id=batch.id, item_id=job.id, status="completed", processed_at=ended))
    return batch.id


@pytest.fixture
async def world(clean: JobDb) -> dict[str, Any]:
    """One of each row the pruning decides on: doomed (old and ended) or kept."""
    async with clean.sessions() as db, db.begin():
        for model in (BatchJob, NotificationBatch, WorkerNotification, WorkerMetric):
            await db.execute(sa.delete(model))
    live = await processes.register(
        clean.sessions, kind="worker", concurrency=1, queues=["default"], now=NOW
    )
    gone = await processes.register(
        clean.sessions, kind="worker", concurrency=1, queues=["default"], now=OLD
    )
    ids: dict[str, Any] = {"live": live, "gone": gone}
    async with clean.sessions() as db, db.begin():
        await db.execute(
            sa.update(WorkerProcess)
            .where(WorkerProcess.id == gone)
            .values(status="stopped", updated_at=OLD)
        )
        jobs = {
            "old completed": _job("probe.noop", "completed", OLD - timedelta(hours=1)),
            "old failed": _job("probe.insert", "failed", OLD - timedelta(hours=1)),
            "newest of its type": _job("probe.insert", "completed", OLD),
            "recent completed": _job("probe.noop", "completed", RECENT),
            "old queued": _job("probe.tick", "queued", None, created_at=OLD),
        }
        db.add_all(jobs.values())
        ids["jobs"] = {name: job.id for name, job in jobs.items()}
        ids["batches"] = {
            "old ended": await _batch(db, "completed", OLD, "completed"),
            "old failed": await _batch(db, "failed", OLD, "failed"),
            "old, an item retried": await _batch(db, "failed", OLD, "queued"),
            "recent ended": await _batch(db, "completed", RECENT, "completed"),
            "old, running": await _batch(db, "processing", None, "processing"),
        }
        for worker in (live, gone):
            for at in (OLD, RECENT):
                db.add(
                    WorkerMetric(
                        worker_id=worker,
                        cpu_usage=1,
                        memory_usage=1,
                        jobs_processed=1,
                        timestamp=at,
                    )
                )
                db.add(WorkerActivityLog(worker_id=worker, action_type="started", timestamp=at))
        ended = NotificationBatch(batch_id=str(uuid.uuid4()), status="completed", completed_at=OLD)
        waiting = NotificationBatch(batch_id=str(uuid.uuid4()), status="pending", created_at=OLD)
        db.add_all([ended, waiting])
        ids["notification batches"] = {"old ended": ended.batch_id, "old pending": waiting.batch_id}
        notes = {
            "old delivered": WorkerNotification(worker_id=live, message="a", processed_at=OLD),
            "old undelivered": WorkerNotification(worker_id=live, message="b"),
            "recent delivered": WorkerNotification(
                worker_id=live, message="c", processed_at=RECENT
            ),
        }
        db.add_all(notes.values())
        await db.flush()
        ids["notes"] = {name: note.id for name, note in notes.items()}
    return ids


async def _prune(jobdb: JobDb) -> str:
    runtime = cast(Runtime, SimpleNamespace(settings=SimpleNamespace(job_retention_days=7)))
    return str(await run_job(jobdb.sessions, maintenance.PRUNE, {}, runtime, at=NOW))


async def _present(jobdb: JobDb, column: Any, ids: dict[str, Any]) -> set[str]:
    """The names in `ids` whose row (by `column`) is still there."""
    async with jobdb.sessions() as db:
        found = set(await db.scalars(sa.select(column).where(column.in_(list(ids.values())))))
    return {name for name, row_id in ids.items() if row_id in found}


async def _count(jobdb: JobDb, model: type[Base], *where: Any) -> int:
    async with jobdb.sessions() as db:
        return int(await db.scalar(sa.select(sa.func.count()).select_from(model).where(*where)))


async def test_prune_takes_what_ended_before_the_retention_and_keeps_the_rest(
    clean: JobDb, world: dict[str, Any]
) -> None:
    output = await _prune(clean)
    assert await _present(clean, WorkerJob.id, world["jobs"]) == {
        "newest of its type",
        "recent completed",
        "old queued",
    }
    assert await _present(clean, BatchJob.id, world["batches"]) == {
        "old, an item retried",
        "recent ended",
        "old, running",
    }
    # An ended batch goes with its items and their jobs; a kept one keeps them.
    assert await _count(clean, BatchJobItem) == 3
    assert await _count(clean, WorkerJob, WorkerJob.batch_job_id.is_not(None)) == 3
    assert await _present(
        clean, WorkerProcess.id, {"live": world["live"], "gone": world["gone"]}
    ) == {"live"}
    assert await _count(clean, Worker, Worker.worker_id == world["gone"]) == 0
    # The live worker's recent metrics and log lines stay; the gone one's went with it.
    for model in (WorkerMetric, WorkerActivityLog):
        assert await _count(clean, model, model.worker_id == world["live"]) >= 1
        assert await _count(clean, model, model.timestamp < RECENT - timedelta(hours=1)) == 0
        assert await _count(clean, model, model.worker_id == world["gone"]) == 0
    assert await _present(clean, NotificationBatch.batch_id, world["notification batches"]) == {
        "old pending"
    }
    assert await _present(clean, WorkerNotification.id, world["notes"]) == {
        "old undelivered",
        "recent delivered",
    }
    assert output == (
        "pruned 4 jobs, 2 batches, 1 processes, 1 metrics, 1 activity logs, "
        "1 worker notifications, 1 notification batches"
    )
    # A second run finds nothing more.
    assert (await _prune(clean)).startswith("pruned 0 jobs, 0 batches, 0 processes, 0 metrics")
