"""Health scores follow the share of successful attempts, smoothed; samples are stored."""

from __future__ import annotations

import math

import sqlalchemy as sa

from realtime_cms.jobs import health, processes
from realtime_cms.models.base import utcnow
from realtime_cms.models.workers import Worker, WorkerMetric
from tests.jobs.conftest import JobDb


def _window(processed: int, failed: int, memory: float = 100.0) -> health.Window:
    return health.Window(processed=processed, failed=failed, cpu_percent=12.5, memory_mb=memory)


def test_failures_dent_the_score_and_quiet_or_success_restores_it() -> None:
    score = 100
    score = health.next_score(score, _window(0, 10), over_memory=False)
    assert score == 70
    score = health.next_score(score, _window(10, 0), over_memory=False)
    assert 70 < score < 100
    for _ in range(30):
        score = health.next_score(score, _window(0, 0), over_memory=False)
    assert score == 100
    assert health.next_score(100, _window(5, 0), over_memory=True) == 80


async def test_a_sample_is_stored_with_the_failures_and_score(clean: JobDb) -> None:
    process_id = await processes.register(
        clean.sessions,
        kind="test",
        concurrency=4,
        queues=["probe"],
        now=utcnow(),
        memory_limit_mb=64,
    )
    async with clean.sessions() as db, db.begin():
        score = await health.record_sample(db, process_id, _window(3, 1, memory=80.0), utcnow())
    async with clean.sessions() as db:
        worker = await db.get(Worker, process_id)
        metric = await db.scalar(
            sa.select(WorkerMetric).where(WorkerMetric.worker_id == process_id)
        )
    assert worker is not None and metric is not None
    # 75 % success, smoothed from 100, minus the memory penalty (80 MB over a 64 MB limit).
    assert score == worker.health_score == math.floor(0.7 * 100 + 0.3 * 75) - 20
    assert (worker.failure_count, worker.last_failure_time is not None) == (1, True)
    assert (metric.jobs_processed, metric.memory_usage, metric.cpu_usage) == (3, 80.0, 12.5)


def test_the_sampler_counts_between_samples() -> None:
    sampler = health.Sampler()
    sampler.processed, sampler.failed = 4, 1
    window = sampler.take()
    assert (window.processed, window.failed) == (4, 1) and window.memory_mb > 0
    assert (sampler.processed, sampler.failed) == (0, 0)
