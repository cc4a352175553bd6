"""Enqueue: in the caller's transaction, validated, deduplicated, waking workers on commit."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from realtime_cms.errors import Unprocessable
from realtime_cms.jobs.queue import JobsEnqueued, enqueue
from realtime_cms.jobs.registry import Registry
from realtime_cms.models.workers import WorkerJob
from tests.jobs import probe
from tests.jobs.conftest import JobDb


async def _jobs(jobdb: JobDb) -> list[WorkerJob]:
    async with jobdb.sessions() as db:
        return list(await db.scalars(sa.select(WorkerJob).order_by(WorkerJob.created_at)))


async def test_a_job_exists_only_if_its_transaction_commits(clean: JobDb) -> None:
    with pytest.raises(RuntimeError):
        async with clean.sessions() as db, db.begin():
            await enqueue(db, probe.INSERT, {"key": "rolled-back"})
            raise RuntimeError("the change fails")
    async with clean.sessions() as db, db.begin():
        job_id = await enqueue(db, probe.INSERT, {"key": "kept"})
    jobs = await _jobs(clean)
    assert [(j.id, j.type, j.payload, j.status, j.queue) for j in jobs] == [
        (job_id, "probe.insert", {"key": "kept", "sleep": 0.0, "fail_times": 0}, "queued", "probe")
    ]


async def test_workers_are_woken_after_the_commit_not_before(clean: JobDb) -> None:
    seen: list[JobsEnqueued] = []
    unsubscribe = clean.bus.subscribe(JobsEnqueued, seen.append)
    try:
        async with clean.sessions() as db, db.begin():
            await enqueue(db, probe.NOOP)
            assert seen == []
        assert seen == [JobsEnqueued("probe")]
        with pytest.raises(RuntimeError):
            async with clean.sessions() as db, db.begin():
                await enqueue(db, probe.NOOP)
                raise RuntimeError
        assert len(seen) == 1
    finally:
        unsubscribe()


async def test_an_invalid_payload_is_refused_naming_the_field(clean: JobDb) -> None:
    async with clean.sessions() as db, db.begin():
        with pytest.raises(Unprocessable) as caught:
            await enqueue(db, probe.INSERT, {"key": 5, "extra": 1})
    assert caught.value.code == "invalid_payload"
    assert {e["field"] for e in caught.value.errors} == {"payload.key", "payload.extra"}
    assert await _jobs(clean) == []


def test_an_unregistered_job_type_is_refused() -> None:
    registry = Registry()
    probe.register(registry)
    with pytest.raises(Unprocessable) as caught:
        registry.get("no.such.type")
    assert caught.value.code == "unknown_job_type"
    assert caught.value.errors == [{"field": "type", "message": "not a registered job type"}]


async def test_a_dedupe_key_admits_one_pending_job(clean: JobDb) -> None:
    async with clean.sessions() as db, db.begin():
        first = await enqueue(db, probe.NOOP, dedupe_key="doc:1")
        second = await enqueue(db, probe.NOOP, dedupe_key="doc:1")
        other = await enqueue(db, probe.NOOP, dedupe_key="doc:2")
    assert first is not None and other is not None and second is None
    async with clean.sessions() as db, db.begin():
        assert await enqueue(db, probe.NOOP, dedupe_key="doc:1") is None
        # Once the job has ended its key is free again.
        await db.execute(
            sa.update(WorkerJob)
            .where(WorkerJob.id == first)
            .values(status="completed", dedupe_key=None)
        )
        assert await enqueue(db, probe.NOOP, dedupe_key="doc:1") is not None
    assert len(await _jobs(clean)) == 3


async def test_a_deterministic_id_is_inserted_once(clean: JobDb) -> None:
    async with clean.sessions() as db, db.begin():
        assert await enqueue(db, probe.NOOP, job_id="fixed-id") == "fixed-id"
    async with clean.sessions() as db, db.begin():
        assert await enqueue(db, probe.NOOP, job_id="fixed-id") is None
    assert [j.id for j in await _jobs(clean)] == ["fixed-id"]
