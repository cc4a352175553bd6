"""Claims take disjoint jobs; every later step is fenced on the lease holder."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import sqlalchemy as sa

from realtime_cms.jobs import leases, processes
from realtime_cms.jobs.queue import enqueue
from realtime_cms.models.base import utcnow
from realtime_cms.models.workers import WorkerJob, WorkerNotification, WorkerProcess
from tests.jobs import probe
from tests.jobs.conftest import JobDb


async def _process(jobdb: JobDb) -> str:
    return await processes.register(
        jobdb.sessions, kind="test", concurrency=4, queues=["probe"], now=utcnow()
    )


async def _enqueue(jobdb: JobDb, count: int, **options: object) -> list[str]:
    async with jobdb.sessions() as db, db.begin():
        return [
            str(await enqueue(db, probe.INSERT, {"key": f"k{i}"}, **options))  # type: ignore[arg-type]
            for i in range(count)
        ]


async def _job(jobdb: JobDb, job_id: str) -> WorkerJob:
    async with jobdb.sessions() as db:
        job = await db.get(WorkerJob, job_id)
        assert job is not None
        return job


async def test_concurrent_claimers_take_disjoint_jobs(clean: JobDb) -> None:
    ids = await _enqueue(clean, 30)
    a, b, c = [await _process(clean) for _ in range(3)]
    now = utcnow()
    batches = await asyncio.gather(
        *(leases.claim(clean.sessions, p, ["probe"], 12, now) for p in (a, b, c))
    )
    taken = [job.id for batch in batches for job in batch]
    assert sorted(taken) == sorted(ids)
    assert all(job.attempts == 1 for batch in batches for job in batch)
    async with clean.sessions() as db:
        holders = dict((await db.execute(sa.select(WorkerJob.id, WorkerJob.process_id))).all())
    for process_id, batch in zip((a, b, c), batches, strict=True):
        assert {holders[job.id] for job in batch} <= {process_id}


async def test_claims_follow_priority_and_skip_jobs_not_yet_due(clean: JobDb) -> None:
    async with clean.sessions() as db, db.begin():
        late = await enqueue(db, probe.NOOP, priority=9)
        early = await enqueue(db, probe.NOOP, priority=-1)
        later = await enqueue(db, probe.NOOP, delay=timedelta(minutes=5))
        middle = await enqueue(db, probe.NOOP)
    process = await _process(clean)
    first = await leases.claim(clean.sessions, process, ["probe"], 1, utcnow())
    rest = await leases.claim(clean.sessions, process, ["probe"], 10, utcnow())
    assert [j.id for j in first] == [early]
    assert [j.id for j in rest] == sorted([late, middle])  # type: ignore[type-var]
    assert later not in {j.id for j in rest}
    assert await leases.claim(clean.sessions, process, ["elsewhere"], 10, utcnow()) == []


async def test_a_completion_is_fenced_on_the_lease_holder(clean: JobDb) -> None:
    [job_id] = await _enqueue(clean, 1)
    holder, intruder = await _process(clean), await _process(clean)
    [job] = await leases.claim(clean.sessions, holder, ["probe"], 5, utcnow())
    async with clean.sessions() as db, db.begin():
        assert not await leases.complete(db, job.id, intruder, "no", utcnow())
    async with clean.sessions() as db, db.begin():
        assert await leases.complete(db, job.id, holder, "done", utcnow())
    async with clean.sessions() as db, db.begin():
        assert not await leases.complete(db, job.id, holder, "again", utcnow())
    done = await _job(clean, job_id)
    assert (done.status, done.output, done.completed_at is not None) == ("completed", "done", True)


async def test_a_failed_attempt_backs_off_then_the_last_one_fails_the_job(clean: JobDb) -> None:
    [job_id] = await _enqueue(clean, 1, max_attempts=2)
    process = await _process(clean)
    [job] = await leases.claim(clean.sessions, process, ["probe"], 1, utcnow())
    now = utcnow()
    assert await leases.retry_or_fail(clean.sessions, job, process, "boom 1", now) == "queued"
    queued = await _job(clean, job_id)
    assert queued.status == "queued" and queued.last_error == "boom 1"
    assert now + timedelta(seconds=0.5) <= queued.run_at + timedelta(seconds=1)
    assert queued.run_at <= now + leases.backoff(1) + timedelta(seconds=2)
    assert await leases.claim(clean.sessions, process, ["probe"], 1, now) == []
    [again] = await leases.claim(clean.sessions, process, ["probe"], 1, queued.run_at)
    assert again.attempts == 2
    assert await leases.retry_or_fail(clean.sessions, again, process, "boom 2", now) == "failed"
    dead = await _job(clean, job_id)
    assert (dead.status, dead.attempts, dead.last_error) == ("failed", 2, "boom 2")


def test_backoff_grows_exponentially_with_jitter_and_a_cap() -> None:
    for attempt in range(1, 30):
        ceiling = min(leases.BACKOFF_CAP_SECONDS, leases.BACKOFF_BASE_SECONDS * 2 ** (attempt - 1))
        pause = leases.backoff(attempt).total_seconds()
        assert ceiling / 2 <= pause <= ceiling
    assert len({leases.backoff(8).total_seconds() for _ in range(20)}) > 1


async def test_a_stale_process_loses_its_jobs_to_the_queue(clean: JobDb) -> None:
    ids = await _enqueue(clean, 3)
    async with clean.sessions() as db, db.begin():
        await db.execute(sa.update(WorkerJob).where(WorkerJob.id == ids[2]).values(max_attempts=1))
    dead, alive = await _process(clean), await _process(clean)
    claimed = await leases.claim(clean.sessions, dead, ["probe"], 3, utcnow())
    assert len(claimed) == 3
    later = utcnow() + timedelta(seconds=30)
    beat = processes.Beat("idle", 0, 1, None)
    assert await processes.heartbeat(clean.sessions, alive, beat, later)
    found = await leases.reclaim_stale(clean.sessions, later, stale_after=10)
    assert found.process_ids == [dead] and (found.requeued, found.failed) == (2, 1)
    assert [(await _job(clean, i)).status for i in ids] == ["queued", "queued", "failed"]
    async with clean.sessions() as db:
        assert (await db.get(WorkerProcess, dead)).status == "failed"  # type: ignore[union-attr]
    # The dead process can neither complete nor heartbeat any more.
    async with clean.sessions() as db, db.begin():
        assert not await leases.complete(db, ids[0], dead, None, utcnow())
    assert not await processes.heartbeat(clean.sessions, dead, beat, later)
    # Whoever took the jobs back records it, and tells the staff through the dead worker.
    await processes.record_reclaim(clean.sessions, alive, found.process_ids, 2, 1)
    async with clean.sessions() as db:
        [told] = (await db.execute(sa.select(WorkerNotification))).scalars().all()
    assert (told.worker_id, told.type, told.priority) == (dead, "process_failed", 1)
    assert "2 queued again, 1 failed" in told.message


async def test_released_jobs_go_back_without_counting_the_attempt(clean: JobDb) -> None:
    ids = await _enqueue(clean, 2)
    process = await _process(clean)
    await leases.claim(clean.sessions, process, ["probe"], 2, utcnow())
    assert await leases.release(clean.sessions, ids, process) == 2
    assert {((j := await _job(clean, i)).status, j.attempts) for i in ids} == {("queued", 0)}


async def test_a_late_process_is_declared_dead_by_others_never_by_itself(clean: JobDb) -> None:
    late = await _process(clean)
    later = utcnow() + timedelta(seconds=30)
    found = await leases.reclaim_stale(clean.sessions, later, stale_after=10, by=late)
    assert found.process_ids == []
    found = await leases.reclaim_stale(clean.sessions, later, stale_after=10, by="someone-else")
    assert found.process_ids == [late]


async def test_jobs_claimed_by_a_process_already_declared_dead_are_taken_back(
    clean: JobDb,
) -> None:
    [job_id] = await _enqueue(clean, 1)
    dead = await _process(clean)
    later = utcnow() + timedelta(seconds=30)
    await leases.reclaim_stale(clean.sessions, later, stale_after=10)
    # It has not heard of its death yet and claims a job.
    [job] = await leases.claim(clean.sessions, dead, ["probe"], 1, utcnow())
    found = await leases.reclaim_stale(clean.sessions, later, stale_after=10)
    assert (found.process_ids, found.requeued) == ([], 1)
    assert (await _job(clean, job_id)).status == "queued"
