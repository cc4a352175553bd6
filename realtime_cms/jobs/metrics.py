"""The job system in Prometheus' text format: queue depth, processes, health, desired workers.

Read from the database at each scrape, so any web process answers for the whole
installation (one scrape target is enough).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.ext.asyncio import AsyncSession

from realtime_cms.jobs.scaling import Decision, desired_workers
from realtime_cms.models.workers import Worker, WorkerJob, WorkerProcess

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass(frozen=True, slots=True)
class Snapshot:
    jobs: list[tuple[str, str, int]]  # queue, status, count
    due: list[tuple[str, int, float]]  # queue, due count, age of the oldest due job (s)
    processes: list[tuple[str, str, int]]  # type, status, count
    health: list[tuple[str, str, int]]  # worker id, host, score
    decision: Decision


async def snapshot(db: AsyncSession, now: datetime) -> Snapshot:
    jobs = await db.execute(
        sa.select(WorkerJob.queue, WorkerJob.status, sa.func.count()).group_by(
            WorkerJob.queue, WorkerJob.status
        )
    )
    due = await db.execute(
        sa.select(WorkerJob.queue, sa.func.count(), sa.func.min(WorkerJob.run_at))
        .where(WorkerJob.status == "queued", WorkerJob.run_at <= now)
        .group_by(WorkerJob.queue)
    )
    processes = await db.execute(
        sa.select(WorkerProcess.type, WorkerProcess.status, sa.func.count()).group_by(
            WorkerProcess.type, WorkerProcess.status
        )
    )
    health = await db.execute(
        sa.select(Worker.worker_id, Worker.hostname, Worker.health_score)
        .join(WorkerProcess, WorkerProcess.id == Worker.worker_id)
        .where(WorkerProcess.status.in_(("idle", "working")))
    )
    return Snapshot(
        jobs=[(q, s, int(n)) for q, s, n in jobs],
        due=[(q, int(n), max(0.0, (now - oldest).total_seconds())) for q, n, oldest in due],
        processes=[(t, s, int(n)) for t, s, n in processes],
        health=[(w, h or "", int(score or 0)) for w, h, score in health],
        decision=await desired_workers(db, now),
    )


class _Collector(Collector):
    def __init__(self, data: Snapshot) -> None:
        self._data = data

    def collect(self) -> Iterator[GaugeMetricFamily]:
        data = self._data
        jobs = GaugeMetricFamily(
            "rcms_jobs", "Jobs by queue and status", labels=["queue", "status"]
        )
        for queue, status, count in data.jobs:
            jobs.add_metric([queue, status], count)
        due = GaugeMetricFamily("rcms_jobs_due", "Queued jobs that are due", labels=["queue"])
        age = GaugeMetricFamily(
            "rcms_jobs_oldest_due_seconds", "Wait of the oldest due job", labels=["queue"]
        )
        for queue, count, seconds in data.due:
            due.add_metric([queue], count)
            age.add_metric([queue], seconds)
        processes = GaugeMetricFamily(
            "rcms_worker_processes", "Registered processes", labels=["type", "status"]
        )
        for kind, status, count in data.processes:
            processes.add_metric([kind, status], count)
        health = GaugeMetricFamily(
            "rcms_worker_health_score", "Health of live workers (0-100)", labels=["worker", "host"]
        )
        for worker, host, score in data.health:
            health.add_metric([worker, host], score)
        load = data.decision.load
        yield from (jobs, due, age, processes, health)
        yield GaugeMetricFamily(
            "rcms_workers_desired",
            "Worker processes the scaling rules ask for",
            value=data.decision.desired,
        )
        yield GaugeMetricFamily(
            "rcms_workers_live", "Live worker processes", value=load.live_workers
        )
        yield GaugeMetricFamily(
            "rcms_worker_load_percent",
            "Running jobs per capacity of live workers",
            value=load.load_percent,
        )


def render(data: Snapshot) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(data))
    return generate_latest(registry)
