"""Batches: every item counted once when its job ends, the callback job enqueued once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from realtime_cms.errors import Unprocessable
from realtime_cms.jobs import leases, processes, service
from realtime_cms.jobs.batch_feed import BatchChanged
from realtime_cms.jobs.batches import Callback, create_batch
from realtime_cms.jobs.registry import Registry
from realtime_cms.jobs.worker import JobWorker
from realtime_cms.models.base import utcnow
from realtime_cms.models.workers import BatchJob, BatchJobItem, WorkerJob
from realtime_cms.principal import system
from tests.jobs import probe
from tests.jobs.conftest import JobDb
from tests.jobs.test_worker import _worker
from tests.support.jobs import settle_jobs


@pytest.fixture
async def fresh(clean: JobDb) -> JobDb:
    """`clean`, and no batches either."""
    async with clean.sessions() as db, db.begin():
        await db.execute(sa.delete(BatchJobItem))
        await db.execute(sa.delete(BatchJob))
    return clean


@asynccontextmanager
async def _workers(jobdb: JobDb, count: int, **options: Any) -> AsyncIterator[list[JobWorker]]:
    """`count` workers of this process taking the probe queue side by side."""
    async with AsyncExitStack() as stack:
        yield [await stack.enter_async_context(_worker(jobdb, **options)) for _ in range(count)]


def _inserts(*keys: str, **extra: Any) -> list[dict[str, Any]]:
    return [{"key": key, **extra} for key in keys]


async def _batch(jobdb: JobDb, items: list[dict[str, Any]], callback_key: str) -> int:
    async with jobdb.sessions() as db, db.begin():
        then = Callback(probe.INSERT, {"key": callback_key})
        return await create_batch(db, probe.INSERT, items, callback=then)


async def _read(jobdb: JobDb, batch_id: int) -> BatchJob:
    async with jobdb.sessions() as db:
        batch = await db.get(BatchJob, batch_id)
        assert batch is not None
        return batch


async def _items(jobdb: JobDb, batch_id: int) -> list[BatchJobItem]:
    async with jobdb.sessions() as db:
        found = await db.scalars(
            sa.select(BatchJobItem).where(BatchJobItem.job_id == batch_id).order_by(BatchJobItem.id)
        )
        return list(found)


async def _callback_jobs(jobdb: JobDb, key: str) -> list[WorkerJob]:
    """The jobs whose payload inserts `key`: a callback fired twice would show two."""
    async with jobdb.sessions() as db:
        jobs = await db.scalars(sa.select(WorkerJob).where(WorkerJob.batch_job_id.is_(None)))
        return [job for job in jobs if job.payload == {"key": key, "sleep": 0.0, "fail_times": 0}]


async def _effects(jobdb: JobDb) -> list[str]:
    async with jobdb.sessions() as db:
        return sorted(await db.scalars(sa.select(probe.EFFECTS.c.key)))


def _counts(batch: BatchJob) -> tuple[str, int, int, int]:
    return batch.status, batch.total, batch.completed, batch.failed


async def test_counters_are_exact_and_each_callback_fires_once_under_concurrent_workers(
    fresh: JobDb,
) -> None:
    # Many small batches finishing at once: their last items race in three workers.
    keys = {n: [f"b{n}-{i}" for i in range(6)] for n in range(10)}
    async with _workers(fresh, 3, concurrency=4):
        ids = {n: await _batch(fresh, _inserts(*keys[n]), f"callback-{n}") for n in keys}
        await settle_jobs(fresh.sessions, [probe.INSERT.name])
    expected = sorted([key for group in keys.values() for key in group])
    assert await _effects(fresh) == sorted([*expected, *(f"callback-{n}" for n in keys)])
    for n, batch_id in ids.items():
        batch = await _read(fresh, batch_id)
        assert _counts(batch) == ("completed", 6, 6, 0)
        assert batch.started_at is not None and batch.completed_at is not None
        [callback] = await _callback_jobs(fresh, f"callback-{n}")
        assert (batch.callback_job_id, callback.status) == (callback.id, "completed")
        items = await _items(fresh, batch_id)
        assert [(item.status, item.result) for item in items] == [
            ("completed", {"output": f"inserted {key}"}) for key in keys[n]
        ]
        assert all(item.processed_at is not None for item in items)


async def test_a_failing_item_is_counted_once_and_fails_the_batch(
    fresh: JobDb, monkeypatch: Any
) -> None:
    monkeypatch.setattr("realtime_cms.jobs.leases.BACKOFF_BASE_SECONDS", 0.0)
    items = [
        *_inserts("ok-1", "ok-2"),
        {"key": "flaky", "fail_times": 1},
        {"key": "hopeless", "fail_times": 9},
    ]
    async with _workers(fresh, 2):
        batch_id = await _batch(fresh, items, "after-failure")
        await settle_jobs(fresh.sessions, [probe.INSERT.name])
    # Three failed attempts of `hopeless`, one of `flaky`: one failed item.
    assert _counts(await _read(fresh, batch_id)) == ("failed", 4, 3, 1)
    outcomes = [(item.status, item.result) for item in await _items(fresh, batch_id)]
    assert outcomes[2] == ("completed", {"output": "inserted flaky"})
    assert outcomes[3] == ("failed", {"error": "RuntimeError: failing on purpose (attempt 3)"})
    assert len(await _callback_jobs(fresh, "after-failure")) == 1
    assert await _effects(fresh) == ["after-failure", "flaky", "ok-1", "ok-2"]


async def _claimed(jobdb: JobDb, count: int) -> tuple[str, list[leases.Claimed]]:
    process = await processes.register(
        jobdb.sessions, kind="test", concurrency=count, queues=["probe"], now=utcnow()
    )
    return process, await leases.claim(jobdb.sessions, process, ["probe"], count, utcnow())


async def _complete(jobdb: JobDb, process: str, job: leases.Claimed) -> None:
    async with jobdb.sessions() as db, db.begin():
        done = await leases.complete(
            db, job.id, process, "done", utcnow(), batch_job_id=job.batch_job_id
        )
        assert done


@pytest.mark.parametrize("round_", range(5))
async def test_the_last_two_items_ending_at_once_fire_the_callback_once(
    fresh: JobDb, round_: int
) -> None:
    batch_id = await _batch(fresh, _inserts("x", "y"), f"race-{round_}")
    assert (await _read(fresh, batch_id)).status == "pending"
    process, jobs = await _claimed(fresh, 2)
    batch = await _read(fresh, batch_id)
    assert (batch.status, batch.started_at is not None) == ("processing", True)
    await asyncio.gather(*(_complete(fresh, process, job) for job in jobs))
    assert _counts(await _read(fresh, batch_id)) == ("completed", 2, 2, 0)
    assert len(await _callback_jobs(fresh, f"race-{round_}")) == 1


async def test_a_job_ending_again_is_not_counted_again(fresh: JobDb) -> None:
    batch_id = await _batch(fresh, _inserts("once", "other"), "never-yet")
    process, [job, _] = await _claimed(fresh, 2)
    await _complete(fresh, process, job)
    # An operator retries it and it completes a second time (another attempt, same item).
    async with fresh.sessions() as db, db.begin():
        await db.execute(
            sa.update(WorkerJob)
            .where(WorkerJob.id == job.id)
            .values(status="processing", process_id=process)
        )
    await _complete(fresh, process, job)
    assert _counts(await _read(fresh, batch_id)) == ("processing", 2, 1, 0)
    assert await _callback_jobs(fresh, "never-yet") == []


async def test_an_item_failed_by_the_reclaim_of_a_dead_process_is_counted(fresh: JobDb) -> None:
    batch_id = await _batch(fresh, _inserts("lost"), "after-reclaim")
    dead, [job] = await _claimed(fresh, 1)
    async with fresh.sessions() as db, db.begin():
        await db.execute(sa.update(WorkerJob).values(attempts=WorkerJob.max_attempts))
    later = utcnow() + timedelta(seconds=30)
    found = await leases.reclaim_stale(fresh.sessions, later, stale_after=10)
    assert (found.process_ids, found.failed) == ([dead], 1)
    assert _counts(await _read(fresh, batch_id)) == ("failed", 1, 0, 1)
    [item] = await _items(fresh, batch_id)
    assert item.status == "failed" and "stopped heartbeating" in item.result["error"]
    assert len(await _callback_jobs(fresh, "after-reclaim")) == 1
    # Nothing is left to reclaim, nor counted twice.
    again = await leases.reclaim_stale(fresh.sessions, later, stale_after=10)
    assert again.failed == 0
    assert _counts(await _read(fresh, batch_id)) == ("failed", 1, 0, 1)


async def test_a_batch_created_in_a_transaction_that_rolls_back_never_existed(
    fresh: JobDb,
) -> None:
    seen: list[BatchChanged] = []
    unsubscribe = fresh.bus.subscribe(BatchChanged, seen.append)
    try:
        with pytest.raises(RuntimeError, match="changed my mind"):
            async with fresh.sessions() as db, db.begin():
                await create_batch(db, probe.INSERT, _inserts("a", "b", "c"))
                raise RuntimeError("changed my mind")
    finally:
        unsubscribe()
    async with fresh.sessions() as db:
        for model in (BatchJob, BatchJobItem, WorkerJob):
            assert await db.scalar(sa.select(sa.func.count()).select_from(model)) == 0
    assert seen == []


async def _refused(jobdb: JobDb, items: list[Any], **options: Any) -> list[str]:
    with pytest.raises(Unprocessable) as refused:
        async with jobdb.sessions() as db, db.begin():
            await create_batch(db, probe.INSERT, items, **options)
    assert refused.value.code in ("invalid_payload", "invalid_batch")
    return [error["field"] for error in refused.value.errors]


async def test_invalid_items_are_refused_naming_their_index_and_field(fresh: JobDb) -> None:
    items = [{"key": "fine"}, {"key": 5}, {"key": "also fine"}, {"key": "x", "bogus": 1}]
    assert await _refused(fresh, items) == ["items.1.key", "items.3.bogus"]
    then = Callback(probe.INSERT, {"sleep": "long"})
    assert await _refused(fresh, [{"key": "k"}], callback=then) == [
        "callback.payload.key",
        "callback.payload.sleep",
    ]
    assert await _refused(fresh, []) == ["items"]
    async with fresh.sessions() as db:
        assert await db.scalar(sa.select(sa.func.count()).select_from(WorkerJob)) == 0


async def test_a_cancelled_item_counts_as_failed_and_its_batch_still_ends(fresh: JobDb) -> None:
    batch_id = await _batch(fresh, _inserts("kept-1", "cancelled-1"), "after-cancel")
    [_, cancelled] = await _items(fresh, batch_id)
    admin = system(frozenset({"jobs.manage"}))
    async with fresh.sessions() as db, db.begin():
        await service.cancel_job(db, admin, Registry(), cancelled.item_id)
    assert _counts(await _read(fresh, batch_id))[1:] == (2, 0, 1)
    async with _workers(fresh, 1):
        await settle_jobs(fresh.sessions, ["probe.insert"])
    assert _counts(await _read(fresh, batch_id)) == ("failed", 2, 1, 1)
    [item_kept, item_cancelled] = await _items(fresh, batch_id)
    assert (item_kept.status, item_cancelled.status) == ("completed", "failed")
    assert item_cancelled.result == {"error": "cancelled"}
    assert len(await _callback_jobs(fresh, "after-cancel")) == 1
    assert await _effects(fresh) == ["after-cancel", "kept-1"]
