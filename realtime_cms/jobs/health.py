"""A worker process' health: sampled metrics (`worker_metrics`) and the `workers` score.

Every `SAMPLE_EVERY` heartbeats a process writes one `worker_metrics` row (CPU percent and
resident memory from psutil, jobs processed since the last sample) and updates its `workers`
row: `failure_count` and `last_failure_time` count failed job attempts, and `health_score`
(0-100) follows the share of attempts that succeeded, smoothed (an exponentially weighted
average, so one bad minute dents it and a good hour restores it), minus a penalty while the
process uses more memory than its `memory_limit` (MB).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

import psutil
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from realtime_cms.models.workers import Worker, WorkerMetric, WorkerProcess

SAMPLE_EVERY = 15
# Weight of the newest window in the smoothed score.
SMOOTHING = 0.3
MEMORY_PENALTY = 20


@dataclass(frozen=True, slots=True)
class Window:
    """What a process did since its last sample."""

    processed: int
    failed: int
    cpu_percent: float
    memory_mb: float


class Sampler:
    """Counts attempts between samples and reads the process' CPU and memory."""

    def __init__(self) -> None:
        self._process = psutil.Process()
        self._process.cpu_percent(None)  # the first call only starts the measurement
        self.processed = 0
        self.failed = 0

    def take(self) -> Window:
        window = Window(
            processed=self.processed,
            failed=self.failed,
            cpu_percent=self._process.cpu_percent(None),
            memory_mb=self._process.memory_info().rss / 1_048_576,
        )
        self.processed = self.failed = 0
        return window


def next_score(previous: int, window: Window, *, over_memory: bool) -> int:
    """The smoothed health score after `window` (no attempts: the score recovers)."""
    attempts = window.processed + window.failed
    current = 100.0 if attempts == 0 else 100.0 * window.processed / attempts
    smoothed = (1 - SMOOTHING) * previous + SMOOTHING * current
    # Rounded towards the window's share, so a steady state is reached, not stalled a point off.
    score = math.ceil(smoothed) if current >= previous else math.floor(smoothed)
    if over_memory:
        score -= MEMORY_PENALTY
    return max(0, min(100, score))


async def record_sample(db: AsyncSession, worker_id: str, window: Window, now: datetime) -> int:
    """Store the sample and the new score of `worker_id`; the score."""
    worker = await db.get(Worker, worker_id)
    process = await db.get(WorkerProcess, worker_id)
    if worker is None:
        return 0
    limit = process.memory_limit if process is not None else 0
    score = next_score(
        worker.health_score if worker.health_score is not None else 100,
        window,
        over_memory=bool(limit) and window.memory_mb > limit,
    )
    db.add(
        WorkerMetric(
            worker_id=worker_id,
            cpu_usage=round(window.cpu_percent, 1),
            memory_usage=round(window.memory_mb, 1),
            jobs_processed=window.processed,
            timestamp=now,
        )
    )
    values: dict[str, object] = {"health_score": score}
    if window.failed:
        values.update(failure_count=Worker.failure_count + window.failed, last_failure_time=now)
    await db.execute(sa.update(Worker).where(Worker.worker_id == worker_id).values(values))
    return score
