"""The job benchmark's three measurements, against real `realtime-cms worker` processes.

- `throughput`: W worker processes start and go idle; a backlog of N no-op jobs is enqueued
  (in chunks, due tomorrow) and made due at once by one UPDATE, whose commit wakes the
  workers; from that commit, the completed count is polled until all are done. Reported:
  jobs/s from the commit to the last completion (startup excluded: the workers were already
  up), and the steady rate between 10 % and 90 % done (no wake-up, no tail).
- `enqueue_latency`: with no worker running, request-like transactions (insert a row,
  commit) with and without an `enqueue` of a no-op job, interleaved; p50/p99 of each.
- `wakeup_latency`: one idle worker; a job is enqueued and committed, and its handler writes
  the wall-clock time it began into the job's output: handler start minus commit time.
  With Redis (pub/sub wake-up), without (the worker polls every RCMS_JOB_POLL_SECONDS), and
  `embedded` (the worker inside the enqueuing process: the in-process wake-up of `serve`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import secrets
import signal
import statistics
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from redis.asyncio import Redis

from bench.jobs import plugin
from realtime_cms.config import Settings
from realtime_cms.db import SessionFactory, create_engine, session_factory, transaction
from realtime_cms.events import EventBus, attach, emit
from realtime_cms.jobs.queue import JobsEnqueued, enqueue
from realtime_cms.jobs.wakeup import Wakeup
from realtime_cms.models.base import utcnow
from realtime_cms.models.workers import WorkerJob, WorkerProcess
from realtime_cms.runtime import Runtime, worker_options

ROOT = Path(__file__).resolve().parents[2]
PRODUCT_CLI = ROOT / ".venv" / "bin" / "realtime-cms"
SECRET = secrets.token_urlsafe(48)
COUNT_EVERY = 0.05  # seconds between two counts of completed jobs
OUTPUT_EVERY = 0.002  # seconds between two looks for a stamped job's output
READY_TIMEOUT = 60.0
SETTLE_SECONDS = 0.5  # after registering, for a worker to be waiting idle
BACKLOG_CHUNK = 250  # jobs per enqueuing transaction
# A throughput run in which no job ended for this long is over (and broken): jobs stuck.
STALLED_SECONDS = 30.0
LIVE = ("idle", "working")


@dataclass(frozen=True)
class Backend:
    """One database (and the Redis to use with it, if any) for every measurement."""

    name: str
    database_url: str
    redis_url: str | None
    prefix: str = field(default_factory=lambda: f"rcms-bench-jobs-{os.getpid()}:")
    # Candidate changes the workers run with (bench/jobs/plugin.py PATCHES), comma-separated.
    patch: str = ""


def worker_env(backend: Backend, *, redis: bool, extra: dict[str, str]) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("RCMS_")}
    env.update(
        RCMS_DATABASE_URL=backend.database_url,
        RCMS_SECRET_KEY=SECRET,
        RCMS_REDIS_PREFIX=backend.prefix,
        RCMS_JOB_PLUGINS="bench.jobs.plugin",
        RCMS_LOG_LEVEL="WARNING",
        PYTHONPATH=str(ROOT),
        **extra,
    )
    if redis and backend.redis_url:
        env["RCMS_REDIS_URL"] = backend.redis_url
    if backend.patch:
        env[plugin.PATCH_ENV] = backend.patch
    return env


def migrate(backend: Backend, log: Path) -> None:
    """`realtime-cms migrate`, as an operator would, then the benchmark's own table."""
    with log.open("ab") as out:
        subprocess.run(
            [str(PRODUCT_CLI), "migrate"],
            env=worker_env(backend, redis=False, extra={}),
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            check=True,
            timeout=300,
        )


class Client:
    """The enqueuing side: sessions whose commits wake workers through Redis, or nobody."""

    def __init__(self, backend: Backend, *, redis: bool) -> None:
        self.engine = create_engine(backend.database_url)
        self.sessions: SessionFactory = session_factory(self.engine)
        self.redis = Redis.from_url(backend.redis_url) if redis and backend.redis_url else None
        self.bus = EventBus()
        attach(self.sessions, self.bus)
        self.wakeup = Wakeup(self.redis, f"{backend.prefix}jobs")
        self.wakeup.attach(self.bus)

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, backend: Backend, *, redis: bool) -> AsyncIterator[Client]:
        client = cls(backend, redis=redis)
        try:
            async with client.wakeup:
                yield client
        finally:
            if client.redis is not None:
                await client.redis.aclose()
            await client.engine.dispose()

    async def clear(self) -> None:
        """Forget the previous run's jobs, so counts are this run's."""
        async with transaction(self.sessions) as db:
            await db.execute(sa.delete(WorkerJob).where(WorkerJob.queue == plugin.QUEUE))

    async def backlog(self, jobs: int) -> None:
        """`jobs` no-op jobs, all due at one commit (then the workers are woken).

        They are enqueued in chunks, not due yet, and made due by one UPDATE: on SQLite one
        transaction of thousands of inserts would hold the write lock for seconds, and the
        workers' heartbeats wait for it (past their stale window, they reclaim each other)."""
        later = utcnow() + timedelta(days=1)
        for start in range(0, jobs, BACKLOG_CHUNK):
            async with transaction(self.sessions) as db:
                for _ in range(min(BACKLOG_CHUNK, jobs - start)):
                    await enqueue(db, plugin.NOOP, run_at=later)
        async with transaction(self.sessions) as db:
            await db.execute(
                sa.update(WorkerJob)
                .where(WorkerJob.type == plugin.NOOP.name, WorkerJob.status == "queued")
                .values(run_at=utcnow())
            )
            emit(db, JobsEnqueued(plugin.QUEUE))

    async def counts(self, job_type: str) -> dict[str, int]:
        async with self.sessions() as db:
            rows = await db.execute(
                sa.select(WorkerJob.status, sa.func.count())
                .where(WorkerJob.type == job_type)
                .group_by(WorkerJob.status)
            )
            return {str(status): int(count) for status, count in rows.all()}

    async def stragglers(self, job_type: str) -> list[dict[str, Any]]:
        """The jobs a broken run left unfinished, and the state of the process holding them."""
        async with self.sessions() as db:
            rows = await db.execute(
                sa.select(
                    WorkerJob.id,
                    WorkerJob.status,
                    WorkerJob.attempts,
                    WorkerJob.last_error,
                    WorkerProcess.status.label("process"),
                )
                .outerjoin(WorkerProcess, WorkerProcess.id == WorkerJob.process_id)
                .where(WorkerJob.type == job_type, WorkerJob.status != "completed")
                .limit(20)
            )
            return [dict(row._mapping) for row in rows]

    async def live_processes(self, pids: list[int]) -> int:
        async with self.sessions() as db:
            found = await db.scalar(
                sa.select(sa.func.count()).where(
                    WorkerProcess.pid.in_(pids), WorkerProcess.status.in_(LIVE)
                )
            )
            return int(found or 0)


class Workers:
    """`count` `realtime-cms worker --queues bench` processes, stopped with SIGTERM."""

    def __init__(
        self,
        backend: Backend,
        log: Path,
        *,
        count: int,
        concurrency: int,
        redis: bool,
        extra: dict[str, str] | None = None,
    ) -> None:
        self.env = worker_env(backend, redis=redis, extra=extra or {})
        self.log, self.count, self.concurrency = log, count, concurrency
        self.procs: list[subprocess.Popen[bytes]] = []

    @property
    def pids(self) -> list[int]:
        return [proc.pid for proc in self.procs]

    def start(self) -> None:
        argv = [str(PRODUCT_CLI), "worker", "--queues", plugin.QUEUE]
        argv += ["--concurrency", str(self.concurrency)]
        with self.log.open("ab") as out:
            for _ in range(self.count):
                self.procs.append(
                    subprocess.Popen(
                        argv, env=self.env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT
                    )
                )

    async def ready(self, client: Client) -> None:
        """Until every process is registered live; then a moment to settle into idling."""
        deadline = time.monotonic() + READY_TIMEOUT
        while await client.live_processes(self.pids) < self.count:
            if any(proc.poll() is not None for proc in self.procs):
                raise RuntimeError(f"a worker exited at start; see {self.log}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"workers not registered after {READY_TIMEOUT:.0f} s")
            await asyncio.sleep(0.1)
        await asyncio.sleep(SETTLE_SECONDS)

    def cpu_seconds(self) -> float:
        """User + system CPU of the processes so far, every thread (from /proc)."""
        total = 0.0
        for proc in self.procs:
            with contextlib.suppress(OSError):
                fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return total

    def stop(self) -> list[int]:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        codes = []
        for proc in self.procs:
            try:
                codes.append(proc.wait(30))
            except subprocess.TimeoutExpired:
                proc.kill()
                codes.append(proc.wait(10))
        return codes


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * (len(ordered) - 1))))]


def latency_ms(values: list[float]) -> dict[str, float]:
    ms = [value * 1000 for value in values]
    return {
        "n": len(ms),
        "p50": round(percentile(ms, 0.50), 2),
        "p99": round(percentile(ms, 0.99), 2),
        "max": round(max(ms), 2),
        "mean": round(statistics.fmean(ms), 2),
    }


def _when(samples: list[tuple[float, int]], target: float) -> float:
    """The time the completed count reached `target`, interpolated between two polls."""
    for (t0, c0), (t1, c1) in zip(samples, samples[1:], strict=False):
        if c1 >= target:
            return t1 if c1 == c0 else t0 + (t1 - t0) * (target - c0) / (c1 - c0)
    return samples[-1][0]


Hook = Callable[[list[int]], Any]


async def throughput(
    client: Client,
    backend: Backend,
    log: Path,
    *,
    workers: int,
    jobs: int,
    concurrency: int,
    give_up_after: float,
    extra_env: dict[str, str] | None = None,
    on_started: Hook | None = None,
) -> dict[str, Any]:
    """Jobs/s of `workers` processes through a backlog of `jobs` no-op jobs."""
    await client.clear()
    pool = Workers(
        backend, log, count=workers, concurrency=concurrency, redis=True, extra=extra_env
    )
    pool.start()
    hooked: Any = None
    try:
        await pool.ready(client)
        if on_started is not None:
            hooked = on_started(pool.pids)
            await asyncio.sleep(1.0)  # a profiler attaching
        began = time.perf_counter()
        cpu = pool.cpu_seconds()
        await client.backlog(jobs)
        committed = time.perf_counter()
        samples: list[tuple[float, int]] = [(0.0, 0)]
        counts: dict[str, int] = {}
        ended, moved = 0, 0.0
        while True:
            await asyncio.sleep(COUNT_EVERY)
            counts = await client.counts(plugin.NOOP.name)
            now = time.perf_counter() - committed
            samples.append((now, counts.get("completed", 0)))
            if counts.get("completed", 0) + counts.get("failed", 0) != ended:
                ended, moved = counts.get("completed", 0) + counts.get("failed", 0), now
            if ended >= jobs or now > give_up_after or now - moved > STALLED_SECONDS:
                break
        cpu = pool.cpu_seconds() - cpu
    finally:
        exits = pool.stop()
    done = counts.get("completed", 0)
    left = await client.stragglers(plugin.NOOP.name) if done < jobs else []
    total = _when(samples, done) if done else samples[-1][0]
    t10, t90 = _when(samples, 0.1 * jobs), _when(samples, 0.9 * jobs)
    return {
        "backend": backend.name,
        "workers": workers,
        "concurrency": concurrency,
        "jobs": jobs,
        "completed": done,
        "failed": counts.get("failed", 0),
        "ok": done == jobs and all(code == 0 for code in exits),
        "enqueue_seconds": round(committed - began, 3),
        "first_done_seconds": round(next((t for t, c in samples if c), total), 3),
        "seconds": round(total, 3),
        "jobs_per_second": round(done / total, 1) if total > 0 else 0.0,
        "steady_jobs_per_second": round(0.8 * jobs / (t90 - t10), 1) if t90 > t10 else 0.0,
        # The workers' CPU from the backlog's first insert to the last job, per job.
        "worker_cpu_ms_per_job": round(1000 * cpu / done, 2) if done else None,
        "worker_exit_codes": exits,
        "unfinished": left,
        "hooked": hooked,
    }


async def _request(client: Client, number: int, *, with_job: bool) -> float:
    began = time.perf_counter()
    async with transaction(client.sessions) as db:
        await db.execute(plugin.REQUESTS.insert().values(note=f"request {number}"))
        if with_job:
            await enqueue(db, plugin.NOOP)
    return time.perf_counter() - began


async def enqueue_latency(client: Client, backend: Backend, *, samples: int) -> dict[str, Any]:
    """The request-like transaction with and without an enqueue, interleaved (no workers)."""
    await client.clear()
    plain: list[float] = []
    queued: list[float] = []
    warmup = max(5, samples // 10)
    for number in range(warmup + samples):
        first_with = number % 2 == 0  # alternate which of the pair goes first
        a = await _request(client, number, with_job=first_with)
        b = await _request(client, number, with_job=not first_with)
        if number >= warmup:
            queued.append(a if first_with else b)
            plain.append(b if first_with else a)
    without, with_ = latency_ms(plain), latency_ms(queued)
    return {
        "backend": backend.name,
        "without": without,
        "with": with_,
        "delta_p50": round(with_["p50"] - without["p50"], 2),
        "delta_p99": round(with_["p99"] - without["p99"], 2),
        "ok": True,
    }


async def _stamped(
    sessions: SessionFactory, *, pause: tuple[float, float], give_up_after: float
) -> float:
    """Enqueue a stamping job, commit, and wait for its output: handler start - commit."""
    await asyncio.sleep(random.uniform(*pause))  # the worker is idle, waiting, meanwhile
    async with transaction(sessions) as db:
        job_id = await enqueue(db, plugin.STAMP)
    committed = time.time()
    deadline = time.monotonic() + give_up_after
    while time.monotonic() < deadline:
        await asyncio.sleep(OUTPUT_EVERY)
        async with sessions() as db:
            output = await db.scalar(
                sa.select(WorkerJob.output).where(
                    WorkerJob.id == job_id, WorkerJob.status == "completed"
                )
            )
        if output is not None:
            return float(output) - committed
    raise RuntimeError(f"job {job_id} not completed within {give_up_after:.0f} s")


async def wakeup_latency(
    backend: Backend, log: Path, *, mode: str, samples: int, poll_seconds: float
) -> dict[str, Any]:
    """Commit -> handler start with one idle worker: `redis`, `polling` or `embedded`."""
    # A polling worker starts its wait when its last job ends: commits spread over a whole
    # interval sample its wake-ups fairly (a fixed pause would measure one point of it).
    pause = (0.02, poll_seconds + 0.02) if mode == "polling" else (0.02, 0.1)
    limit = poll_seconds + 10
    latencies: list[float] = []
    if mode == "embedded":
        settings = Settings(
            database_url=backend.database_url,
            secret_key=SECRET,
            redis_prefix=backend.prefix,
            job_plugins=["bench.jobs.plugin"],
            job_poll_seconds=poll_seconds,
        )
        options = worker_options(settings, [plugin.QUEUE], kind="embedded")
        async with Runtime(settings, worker=options) as runtime:
            await asyncio.sleep(SETTLE_SECONDS)
            for _ in range(samples):
                latencies.append(await _stamped(runtime.sessions, pause=pause, give_up_after=limit))
    else:
        redis = mode == "redis"
        poll = {"RCMS_JOB_POLL_SECONDS": str(poll_seconds)}
        async with Client.open(backend, redis=redis) as client:
            await client.clear()
            pool = Workers(backend, log, count=1, concurrency=10, redis=redis, extra=poll)
            pool.start()
            try:
                await pool.ready(client)
                for _ in range(samples):
                    latencies.append(
                        await _stamped(client.sessions, pause=pause, give_up_after=limit)
                    )
            finally:
                pool.stop()
    return {
        "backend": backend.name,
        "mode": mode,
        "poll_seconds": poll_seconds,
        **latency_ms(latencies),
        "ok": True,
    }
