"""The job benchmark's four measurements, against real `realtime-cms worker` processes.

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
- `reclaim_after_kill`: 3 workers with a 1-second heartbeat run half-second jobs; one that
  holds jobs is killed with SIGKILL (and another started), K times, one at a time: seconds
  from the kill until its process row is `failed` and until none of its jobs is still
  `processing` under it (they are queued again), in seconds and in heartbeats. Then every
  job must complete: none lost.
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
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from redis.asyncio import Redis

from bench.jobs import plugin
from realtime_cms.config import Settings
from realtime_cms.db import SessionFactory, create_engine, session_factory, transaction
from realtime_cms.events import EventBus, attach, emit
from realtime_cms.jobs.queue import JobsEnqueued, enqueue
from realtime_cms.jobs.registry import JobType
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
    # The database server's process (MariaDB), whose CPU per job is reported too.
    server_pid: int | None = None


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

    async def top_up(self, job_type: JobType[Any], queued: int) -> int:
        """Enqueue jobs of `job_type`, due now, until `queued` of them wait; how many added."""
        missing = max(0, queued - (await self.counts(job_type.name)).get("queued", 0))
        for start in range(0, missing, BACKLOG_CHUNK):
            async with transaction(self.sessions) as db:
                for _ in range(min(BACKLOG_CHUNK, missing - start)):
                    await enqueue(db, job_type)
        return missing

    async def holders(self, pids: list[int]) -> dict[int, str]:
        """pid -> process id of the live processes among `pids` holding processing jobs."""
        async with self.sessions() as db:
            rows = await db.execute(
                sa.select(WorkerProcess.pid, WorkerProcess.id)
                .join(WorkerJob, WorkerJob.process_id == WorkerProcess.id)
                .where(
                    WorkerProcess.pid.in_(pids),
                    WorkerProcess.status.in_(LIVE),
                    WorkerJob.status == "processing",
                )
                .distinct()
            )
            return {pid: process_id for pid, process_id in rows.all() if pid is not None}

    async def held(self, process_id: str) -> tuple[int, datetime | None]:
        """The processing jobs under `process_id` and its last heartbeat."""
        async with self.sessions() as db:
            row = (
                await db.execute(
                    sa.select(WorkerProcess.last_heartbeat, self._processing(process_id)).where(
                        WorkerProcess.id == process_id
                    )
                )
            ).one()
            beat = row[0]
            if beat is not None and beat.tzinfo is None:
                beat = beat.replace(tzinfo=UTC)
            return int(row[1]), beat

    async def reclaim_state(self, process_id: str) -> tuple[str | None, int]:
        """The status of the process `process_id` and how many jobs are processing under it,
        in one statement (one snapshot)."""
        async with self.sessions() as db:
            row = (
                await db.execute(
                    sa.select(WorkerProcess.status, self._processing(process_id)).where(
                        WorkerProcess.id == process_id
                    )
                )
            ).one_or_none()
            return (None, 0) if row is None else (str(row[0]), int(row[1]))

    @staticmethod
    def _processing(process_id: str) -> sa.ScalarSelect[int]:
        return (
            sa.select(sa.func.count())
            .where(WorkerJob.process_id == process_id, WorkerJob.status == "processing")
            .scalar_subquery()
        )

    async def failed_processes(self, pids: list[int]) -> list[str]:
        async with self.sessions() as db:
            found = await db.scalars(
                sa.select(WorkerProcess.id).where(
                    WorkerProcess.pid.in_(pids), WorkerProcess.status == "failed"
                )
            )
            return [str(process_id) for process_id in found]


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
        self.started: list[int] = []  # every pid, the killed ones' too

    @property
    def pids(self) -> list[int]:
        return [proc.pid for proc in self.procs]

    def _spawn(self) -> subprocess.Popen[bytes]:
        argv = [str(PRODUCT_CLI), "worker", "--queues", plugin.QUEUE]
        argv += ["--concurrency", str(self.concurrency)]
        with self.log.open("ab") as out:
            proc = subprocess.Popen(
                argv, env=self.env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT
            )
        self.started.append(proc.pid)
        return proc

    def start(self) -> None:
        for _ in range(self.count):
            self.procs.append(self._spawn())

    def kill_and_restart(self, pid: int) -> float:
        """SIGKILL the process `pid` (no chance to release its jobs or deregister) and start
        another in its place; the perf_counter time the signal was sent."""
        index = self.pids.index(pid)
        self.procs[index].kill()
        killed = time.perf_counter()
        self.procs[index].wait(30)
        self.procs[index] = self._spawn()
        return killed

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
        return cpu_seconds(self.pids)

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


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of these processes so far, every thread (from /proc)."""
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


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
        load = [os.getloadavg()[0]]
        await client.backlog(jobs)
        committed = time.perf_counter()
        servers = [backend.server_pid] if backend.server_pid else []
        server_cpu = cpu_seconds(servers)
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
        server_cpu = cpu_seconds(servers) - server_cpu
        load.append(os.getloadavg()[0])
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
        # The database server's, from the commit to the last job (MariaDB; None on SQLite).
        "server_cpu_ms_per_job": (round(1000 * server_cpu / done, 2) if done and servers else None),
        "load": [round(x, 2) for x in load],
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


# The kill -9 runs: workers as the soak test's (tests/jobs/workers.py): 3 processes, a
# 1-second heartbeat (the stale window is the product's default, 2.5 heartbeats), 5 jobs at
# once each, 5 s of grace at the final stop.
RECLAIM_WORKERS = 3
RECLAIM_CONCURRENCY = 5
RECLAIM_GRACE_SECONDS = 5
RECLAIM_GIVE_UP = 60.0  # a killed process' jobs not back by then: the reclaim is broken
RECLAIM_EVERY = 0.05  # seconds between two looks at the killed process
HOLDER_WAIT = 15.0  # for some worker to hold jobs, before a kill
DRAIN_SECONDS = 60.0  # after the last kill, for every job to be done
DRAIN_EVERY = 0.2


def _spread(values: list[float], heartbeat_seconds: float) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "max": None, "p50_heartbeats": None, "max_heartbeats": None}
    p50, top = percentile(values, 0.5), max(values)
    return {
        "p50": round(p50, 3),
        "max": round(top, 3),
        "p50_heartbeats": round(p50 / heartbeat_seconds, 2),
        "max_heartbeats": round(top / heartbeat_seconds, 2),
    }


async def _holder(client: Client, pool: Workers, rng: random.Random) -> tuple[int, str] | None:
    """A live process of the pool holding processing jobs (pid, process id), at random."""
    deadline = time.monotonic() + HOLDER_WAIT
    while time.monotonic() < deadline:
        if found := await client.holders(pool.pids):
            pid = rng.choice(sorted(found))
            return pid, found[pid]
        await asyncio.sleep(0.1)
    return None


async def _reclaimed(client: Client, process_id: str, killed: float) -> dict[str, Any]:
    """Seconds from the kill until (a) the process' row is `failed` and (b) no job is still
    `processing` under its id, each to within a look (RECLAIM_EVERY); None: not in time."""
    dead: float | None = None
    back: float | None = None
    while True:
        # The time a look began: what it sees was committed before it ended.
        looked = time.perf_counter() - killed
        status, processing = await client.reclaim_state(process_id)
        if dead is None and status == "failed":
            dead = looked
        if back is None and processing == 0:
            back = looked
        if (dead is not None and back is not None) or looked > RECLAIM_GIVE_UP:
            break
        await asyncio.sleep(RECLAIM_EVERY)
    return {
        "dead_seconds": None if dead is None else round(dead, 3),
        "back_seconds": None if back is None else round(back, 3),
    }


async def _drain(client: Client) -> dict[str, int]:
    """Until no `bench.sleep` job is queued or processing (or DRAIN_SECONDS); the counts."""
    deadline = time.monotonic() + DRAIN_SECONDS
    while True:
        counts = await client.counts(plugin.SLEEP.name)
        if not counts.get("queued") and not counts.get("processing"):
            return counts
        if time.monotonic() > deadline:
            return counts
        await asyncio.sleep(DRAIN_EVERY)


async def reclaim_after_kill(
    client: Client, backend: Backend, log: Path, *, kills: int, heartbeat_seconds: float
) -> dict[str, Any]:
    """How soon a SIGKILLed worker's jobs are queued again, `kills` times, one at a time.

    3 workers run a backlog of `bench.sleep` jobs (kept topped up); after a pause of 1-2
    heartbeats (a random point of the victim's heartbeat cycle), a process holding
    processing jobs is killed with SIGKILL and another started in its place (as the soak
    test does, and a supervisor would); then the killed process' row and jobs are read every
    50 ms until it is `failed` and none of its jobs is `processing` under it. At the end the
    backlog is drained: every job enqueued must have completed (none lost, none failed)."""
    await client.clear()
    rng = random.Random(1009)
    # About 4 heartbeats of work for the pool: it stays busy between two top-ups (before a
    # kill, after its reclaim), and the drain at the end is short.
    per_second = RECLAIM_WORKERS * RECLAIM_CONCURRENCY / plugin.SLEEP_SECONDS
    backlog = round(per_second * 4 * heartbeat_seconds)
    extra = {
        "RCMS_JOB_HEARTBEAT_SECONDS": str(heartbeat_seconds),
        "RCMS_JOB_GRACE_SECONDS": str(RECLAIM_GRACE_SECONDS),
    }
    pool = Workers(
        backend,
        log,
        count=RECLAIM_WORKERS,
        concurrency=RECLAIM_CONCURRENCY,
        redis=True,
        extra=extra,
    )
    samples: list[dict[str, Any]] = []
    victims: list[str] = []
    enqueued = 0
    broken: str | None = None
    load = [os.getloadavg()[0]]
    pool.start()
    try:
        await pool.ready(client)
        for number in range(kills):
            enqueued += await client.top_up(plugin.SLEEP, backlog)
            await asyncio.sleep(rng.uniform(1.0, 2.0) * heartbeat_seconds)
            found = await _holder(client, pool, rng)
            if found is None:
                broken = f"no worker held a job for {HOLDER_WAIT:.0f} s"
                break
            pid, process_id = found
            killed = pool.kill_and_restart(pid)
            killed_wall = time.time() - (time.perf_counter() - killed)
            victims.append(process_id)
            # Read after the kill: what the process held when it died (nothing moves it now).
            held, beat = await client.held(process_id)
            sample = {"pid": pid, "process_id": process_id, "held": held}
            sample["beat_age_at_kill_seconds"] = (
                None if beat is None else round(killed_wall - beat.timestamp(), 3)
            )
            sample.update(await _reclaimed(client, process_id, killed))
            samples.append(sample)
            if sample["back_seconds"] is None:
                broken = (
                    f"process {process_id} (pid {pid}): jobs still processing under it "
                    f"{RECLAIM_GIVE_UP:.0f} s after the kill"
                )
                break
            if number < kills - 1:  # after the last, the backlog drains
                enqueued += await client.top_up(plugin.SLEEP, backlog)
                await pool.ready(client)
        counts = await _drain(client)
    finally:
        exits = pool.stop()
    load.append(os.getloadavg()[0])
    # Processes declared dead that were not killed: a survivor whose heartbeat came late.
    others = [p for p in await client.failed_processes(pool.started) if p not in victims]
    lost = enqueued - counts.get("completed", 0)
    measured = [s for s in samples if s["held"]]
    dead = [s["dead_seconds"] for s in measured if s["dead_seconds"] is not None]
    back = [s["back_seconds"] for s in measured if s["back_seconds"] is not None]
    # From the victim's last heartbeat to its jobs back: the stale window (2.5 heartbeats by
    # default) and the wait for a peer's next sweep (every half heartbeat), whatever the
    # point of the heartbeat cycle the kill fell on.
    since_beat = [
        s["beat_age_at_kill_seconds"] + s["back_seconds"]
        for s in measured
        if s["back_seconds"] is not None and s["beat_age_at_kill_seconds"] is not None
    ]
    if lost and broken is None:
        broken = f"{lost} of {enqueued} jobs not completed {DRAIN_SECONDS:.0f} s after the kills"
    return {
        "backend": backend.name,
        "kills": len(samples),
        "workers": RECLAIM_WORKERS,
        "concurrency": RECLAIM_CONCURRENCY,
        "heartbeat_seconds": heartbeat_seconds,
        "job_seconds": plugin.SLEEP_SECONDS,
        # (a) the killed process' row failed; (b) none of its jobs processing under it.
        "dead": _spread(dead, heartbeat_seconds),
        "back": _spread(back, heartbeat_seconds),
        "back_since_last_heartbeat": _spread(since_beat, heartbeat_seconds),
        "jobs_held": sum(s["held"] for s in samples),
        "enqueued": enqueued,
        "counts": counts,
        "lost": lost,
        "others_declared_dead": len(others),
        "worker_exit_codes": exits,
        "load": [round(x, 2) for x in load],
        "samples": samples,
        "broken": broken,
        "ok": broken is None,
    }
