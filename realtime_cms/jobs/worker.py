"""The job worker of a process: registers, heartbeats, claims, runs, and stops gracefully.

`async with JobWorker(...)` registers the process and starts three tasks: the heartbeat
(the lease of every job it holds; also reclaims the jobs of processes that stopped
heartbeating), the scheduler tick (periodic slots) and the claim loop (up to `concurrency`
jobs at once, claimed in batches, woken by `Wakeup` or by polling). Leaving it stops
claiming, lets running jobs finish for `grace_seconds`, then cancels and releases the rest.
A database that cannot be reached at start does not hold up the process (a web process
answers 503 on /healthz meanwhile): the worker registers in the background, backing off,
and starts its tasks once it is registered.

Each job runs in one transaction with its completion: the handler's writes and the fenced
`completed` UPDATE commit together or not at all. A failure goes back to the queue with a
backoff (`leases.retry_or_fail`), except a deadlock or lock-wait timeout, which only rolled
the job's effects back: that transaction runs again at once, in the same attempt. A database
that cannot be reached makes every loop back off and resume, and the outcome of a job is kept
in memory until it can be recorded.

Claims and job transactions go through `job_sessions` (by default `sessions`); on SQLite the
Runtime gives them one connection of their own (realtime_cms/db.py `one_connection_engine`),
so the process' writers take turns on the event loop instead of in SQLite's busy handler.
Registration, heartbeats, reclaims and schedules stay on `sessions`, another connection:
the lease is renewed on time even while a job holds the job connection for long.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import traceback
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from types import TracebackType
from typing import TYPE_CHECKING, Self, TypeVar

from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from realtime_cms.db import SessionFactory, transaction
from realtime_cms.jobs import health, leases, processes
from realtime_cms.jobs.registry import JobContext, Registry
from realtime_cms.jobs.schedules import Schedule, Scheduler
from realtime_cms.jobs.wakeup import Wakeup

if TYPE_CHECKING:
    from realtime_cms.runtime import Runtime

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
T = TypeVar("T")
# What an attempt came to, besides an error text.
COMPLETED, LEASE_LOST = "completed", "lease_lost"
# The shortest wait of an idle claimer for a job about to be due (no busy loop on a job
# another process is claiming at that moment).
MIN_IDLE_SECONDS = 0.005
# Pauses while the database cannot be reached, growing to the last one.
DB_RETRY_SECONDS = (0.2, 0.5, 1.0, 2.0, 5.0)
# PoolTimeout: no connection free in time (a one-connection engine held by a long job).
_DB_ERRORS = (DBAPIError, OperationalError, PoolTimeout, OSError, ConnectionError, TimeoutError)
# MariaDB's deadlock and lock-wait-timeout errors: a job's transaction that met one is run
# again (same attempt) this many times before the attempt counts as failed.
_CONFLICT_CODES = frozenset({1213, 1205})
CONFLICT_RETRIES = 3


def _conflict(exc: BaseException) -> bool:
    if not isinstance(exc, DBAPIError):
        return False
    args: tuple[object, ...] = tuple(getattr(exc.orig, "args", ()))
    return bool(args) and args[0] in _CONFLICT_CODES


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    kind: str = "worker"
    queues: Sequence[str] = ("default",)
    concurrency: int = 10
    heartbeat_seconds: float = 2.0
    # A process is dead after this long without a heartbeat (default: 2.5 heartbeats).
    stale_after_seconds: float | None = None
    poll_seconds: float = 1.0
    grace_seconds: float = 10.0
    memory_limit_mb: int = 1024

    @property
    def stale_after(self) -> float:
        return self.stale_after_seconds or self.heartbeat_seconds * 2.5


def precise_now() -> datetime:
    """Now, to the microsecond: heartbeats and stale cut-offs are compared within a second."""
    return datetime.now(UTC)


def _db_pause(what: str, failures: int, exc: BaseException) -> float:
    """How long to wait after the `failures`-th failure in a row (logged now and then)."""
    pause = DB_RETRY_SECONDS[min(failures - 1, len(DB_RETRY_SECONDS) - 1)]
    if failures in (1, 10) or failures % 100 == 0:
        log.warning(
            "jobs: %s failed (%d in a row), again in %.1f s: %s", what, failures, pause, exc
        )
    return pause


class LeaseLost(Exception):
    """The job's lease passed to another process: its transaction must roll back."""


def _memory_mb() -> int:
    try:
        with open(f"/proc/{os.getpid()}/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1_048_576
    except (OSError, ValueError, IndexError):
        return 0


class JobWorker:
    """Runs the registered jobs of `options.queues` in this process."""

    def __init__(
        self,
        sessions: SessionFactory,
        registry: Registry,
        wakeup: Wakeup,
        options: WorkerOptions,
        *,
        runtime: Runtime,
        schedules: Sequence[Schedule] = (),
        clock: Clock = precise_now,
        job_sessions: SessionFactory | None = None,
    ) -> None:
        if options.concurrency < 1:
            raise ValueError("concurrency is at least 1")
        self.sessions = sessions
        self.job_sessions = job_sessions or sessions
        self.registry = registry
        self.options = options
        self.runtime = runtime
        self._wakeup = wakeup
        self._scheduler = Scheduler(sessions, schedules)
        self._clock = clock
        self.process_id = ""
        self._running: dict[str, asyncio.Task[None]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._claiming: asyncio.Task[None] | None = None
        self._starting: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._last_job_id: str | None = None
        self._healthy_since: float | None = None
        self.processed = 0
        self.failed = 0
        self._sampler = health.Sampler()
        self._beats = 0
        # Hooks for tests and metrics: called with each job id once its outcome is recorded.
        self.on_settled: list[Callable[[str, str], None]] = []

    async def __aenter__(self) -> Self:
        if self._tasks or self._starting is not None:
            raise RuntimeError("a JobWorker starts only once")
        try:
            self.process_id = await self._register_once()
        except _DB_ERRORS as exc:
            log.warning("jobs: cannot register yet, trying again in the background: %s", exc)
            self._starting = asyncio.create_task(self._start_later(), name="jobs-start")
            return self
        self._start_tasks()
        return self

    async def _start_later(self) -> None:
        self.process_id = await self._register()
        if not self._stopping.is_set():
            self._start_tasks()

    def _start_tasks(self) -> None:
        loop = asyncio.get_running_loop()
        self._healthy_since = loop.time()
        self._claiming = asyncio.create_task(self._claim_loop(), name="jobs-claim")
        self._tasks = [
            self._claiming,
            asyncio.create_task(self._heartbeat_loop(), name="jobs-heartbeat"),
            asyncio.create_task(self._reclaim_loop(), name="jobs-reclaim"),
        ]
        if self._scheduler.has_schedules:
            self._tasks.append(asyncio.create_task(self._schedule_loop(), name="jobs-schedule"))

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def stop(self) -> None:
        """Stop claiming; let running jobs finish within the grace; release the rest."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        if self._starting is not None and not self._starting.done():
            self._starting.cancel()
            await asyncio.gather(self._starting, return_exceptions=True)
        if not self.process_id:
            return  # never registered: nothing claimed, nothing to release
        if self._claiming is not None:
            await asyncio.gather(self._claiming, return_exceptions=True)
        running = list(self._running.values())
        if running:
            _, late = await asyncio.wait(running, timeout=self.options.grace_seconds)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        late_ids = [job_id for job_id, task in self._running.items() if task.cancelled()]
        try:
            released = await leases.release(self.job_sessions, late_ids, self.process_id)
            await processes.mark_stopped(
                self.sessions, self.process_id, processed=self.processed, released=released
            )
        except _DB_ERRORS as exc:
            log.warning("stopping: could not release or deregister (reclaimed later): %s", exc)

    async def _register(self, previous: str | None = None) -> str:
        return await self._with_db_retry("register", lambda: self._register_once(previous))

    async def _register_once(self, previous: str | None = None) -> str:
        return await processes.register(
            self.sessions,
            kind=self.options.kind,
            concurrency=self.options.concurrency,
            queues=list(self.options.queues),
            memory_limit_mb=self.options.memory_limit_mb,
            now=self._clock(),
            previous=previous,
        )

    async def _with_db_retry(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        """`call()`, again and again while the database cannot be reached."""
        failures = 0
        while True:
            try:
                return await call()
            except _DB_ERRORS as exc:
                pause = DB_RETRY_SECONDS[min(failures, len(DB_RETRY_SECONDS) - 1)]
                failures += 1
                if failures in (1, 10) or failures % 100 == 0:
                    log.warning(
                        "jobs: %s failed (%d), again in %.1f s: %s", what, failures, pause, exc
                    )
                await asyncio.sleep(pause)

    # --- the lease ------------------------------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.options.heartbeat_seconds)
            try:
                await self._beat()
                if self._healthy_since is None:
                    self._healthy_since = loop.time()
                self._beats += 1
                if self._beats % health.SAMPLE_EVERY == 0:
                    await self._sample()
            except _DB_ERRORS as exc:
                self._healthy_since = None
                log.warning("jobs: heartbeat failed: %s", exc)
            except Exception:
                self._healthy_since = None
                log.exception("jobs: heartbeat failed")

    async def _reclaim_loop(self) -> None:
        """Every half heartbeat, take back the jobs of processes gone stale: a killed
        process' jobs are queued again within `stale_after` plus half a heartbeat."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.options.heartbeat_seconds / 2)
            # Only after a heartbeat and a half of our own good heartbeats: a process that
            # was cut off (a database outage) must not take its peers' jobs the moment it is
            # back, before they, back too, have had their chance to heartbeat.
            healthy = self._healthy_since
            if healthy is None or loop.time() - healthy < 1.5 * self.options.heartbeat_seconds:
                continue
            try:
                await self._reclaim()
            except _DB_ERRORS as exc:
                log.warning("jobs: reclaiming failed: %s", exc)
            except Exception:
                log.exception("jobs: reclaiming failed")

    async def _beat(self) -> None:
        beat = processes.Beat(
            status="working" if self._running else "idle",
            running=len(self._running),
            memory_mb=_memory_mb(),
            last_job_id=self._last_job_id,
        )
        if not await processes.heartbeat(self.sessions, self.process_id, beat, self._clock()):
            # Declared dead while alive (stalled, cut off): our jobs were reclaimed and our
            # completions are fenced out. Carry on as a new process.
            old = self.process_id
            self.process_id = await self._register(previous=old)
            log.warning(
                "jobs: process %s lost its lease; registered again as %s", old, self.process_id
            )

    async def _sample(self) -> None:
        window = self._sampler.take()
        async with transaction(self.sessions) as db:
            await health.record_sample(db, self.process_id, window, self._clock())

    async def _reclaim(self) -> None:
        found = await leases.reclaim_stale(
            self.sessions, self._clock(), self.options.stale_after, by=self.process_id
        )
        if found.process_ids or found.requeued or found.failed:
            log.warning(
                "jobs: reclaimed from %s: %d queued again, %d failed",
                found.process_ids or "no process",
                found.requeued,
                found.failed,
            )
            if found.process_ids:
                await processes.record_reclaim(
                    self.sessions, self.process_id, found.process_ids, found.requeued, found.failed
                )

    # --- periodic slots -------------------------------------------------------------------

    async def _schedule_loop(self) -> None:
        tick = min(1.0, self._scheduler.shortest_period / 4)
        while True:
            try:
                await self._scheduler.tick(self._clock())
            except _DB_ERRORS as exc:
                log.warning("jobs: scheduling failed (the slot is taken at the next tick): %s", exc)
            except Exception:
                log.exception("jobs: scheduling failed")
            await asyncio.sleep(tick)

    # --- claiming and running -------------------------------------------------------------

    async def _claim_loop(self) -> None:
        capacity = asyncio.Event()
        failures = 0
        while not self._stopping.is_set():
            free = self.options.concurrency - len(self._running)
            if free <= 0:
                capacity.clear()
                await self._until(capacity.wait())
                continue
            try:
                claimed = await leases.claim(
                    self.job_sessions, self.process_id, self.options.queues, free, self._clock()
                )
                failures = 0
            except _DB_ERRORS as exc:
                pause = DB_RETRY_SECONDS[min(failures, len(DB_RETRY_SECONDS) - 1)]
                failures += 1
                if failures in (1, 10) or failures % 100 == 0:
                    log.warning(
                        "jobs: claiming failed (%d), again in %.1f s: %s", failures, pause, exc
                    )
                await self._until(asyncio.sleep(pause))
                continue
            for job in claimed:
                task = asyncio.create_task(self._run(job), name=f"job-{job.id}")
                self._running[job.id] = task
                task.add_done_callback(partial(self._done, job.id, capacity))
            if len(claimed) < free:
                await self._until(self._wakeup.wait(await self._idle_seconds()))

    async def _idle_seconds(self) -> float:
        """How long an idle claimer waits for a wake-up: until the next queued job is due
        (a scheduled publish starts at its time, not at the next poll), at most a poll."""
        poll = self.options.poll_seconds
        now = self._clock()
        try:
            due = await leases.next_due(self.job_sessions, self.options.queues, now)
        except _DB_ERRORS:
            return poll  # the next claim meets the outage and backs off
        if due is None:
            return poll
        return min(poll, max(MIN_IDLE_SECONDS, (due - now).total_seconds()))

    def _done(self, job_id: str, capacity: asyncio.Event, _task: asyncio.Task[None]) -> None:
        task = self._running.get(job_id)
        if task is not None and not task.cancelled():
            self._running.pop(job_id, None)
        capacity.set()

    async def _until(self, waiting: Awaitable[object]) -> None:
        """Wait for `waiting`, or less if the worker is told to stop."""
        stop = asyncio.ensure_future(self._stopping.wait())
        wait = asyncio.ensure_future(waiting)
        await asyncio.wait({stop, wait}, return_when=asyncio.FIRST_COMPLETED)
        for task in (stop, wait):
            task.cancel()
        await asyncio.gather(stop, wait, return_exceptions=True)

    async def _run(self, job: leases.Claimed) -> None:
        self._last_job_id = job.id
        outcome = await self._attempt(job)
        if outcome in (COMPLETED, LEASE_LOST):
            status = outcome
            self.processed += outcome == COMPLETED
            self._sampler.processed += outcome == COMPLETED
        else:
            self._sampler.failed += 1
            record = partial(
                leases.retry_or_fail,
                self.job_sessions,
                job,
                self.process_id,
                outcome,
                self._clock(),
            )
            recorded: str | None = await self._with_db_retry(f"recording job {job.id}", record)
            status = recorded or LEASE_LOST
            self.failed += status == "failed"
            if status == "failed":
                await self._log_failure(job, outcome)
        for callback in self.on_settled:
            callback(job.id, status)

    async def _attempt(self, job: leases.Claimed) -> str:
        """Run the job and commit its completion: COMPLETED, LEASE_LOST or the error text."""
        try:
            job_type = self.registry.get(job.type)
        except Exception:
            return f"unknown job type {job.type!r} (not registered in this process)"
        conflicts = 0
        while True:
            after_commit: list[Callable[[], Awaitable[None]]] = []
            try:
                async with (
                    asyncio.timeout(job_type.timeout_seconds),
                    transaction(self.job_sessions) as db,
                ):
                    context = JobContext(
                        job_id=job.id,
                        type=job.type,
                        attempt=job.attempts,
                        max_attempts=job.max_attempts,
                        db=db,
                        run_at=job.run_at,
                        started_at=self._clock(),
                        runtime=self.runtime,
                        after_commit=after_commit,
                        process_id=self.process_id,
                    )
                    output = await job_type.run(context, job.payload)
                    # A batch item is counted in its batch in this same transaction.
                    done = await leases.complete(
                        db,
                        job.id,
                        self.process_id,
                        output,
                        self._clock(),
                        batch_job_id=job.batch_job_id,
                    )
                    if not done:
                        raise LeaseLost(job.id)
            except LeaseLost:
                log.warning("jobs: job %s lost its lease; its effects were rolled back", job.id)
                return LEASE_LOST
            except TimeoutError:
                return f"timed out after {job_type.timeout_seconds:g} s"
            except Exception as exc:
                if _conflict(exc) and conflicts < CONFLICT_RETRIES:
                    # A deadlock or lock wait: its effects were rolled back, so the same
                    # attempt runs again at once rather than waiting out a backoff.
                    conflicts += 1
                    await asyncio.sleep(random.uniform(0.005, 0.05) * conflicts)
                    continue
                log.warning(
                    "jobs: job %s (%s) attempt %d failed: %s", job.id, job.type, job.attempts, exc
                )
                return "".join(traceback.format_exception_only(exc)).strip()
            break
        for effect in after_commit:
            try:
                await effect()
            except Exception:
                log.exception("jobs: an after-commit effect of job %s failed", job.id)
        return COMPLETED

    async def _log_failure(self, job: leases.Claimed, error: str) -> None:
        try:
            async with transaction(self.job_sessions) as db:
                processes.log_activity(
                    db,
                    self.process_id,
                    "job_failed",
                    job_id=job.id,
                    type=job.type,
                    error=error[:500],
                )
                await processes.tell_staff(
                    db,
                    self.process_id,
                    f"Job {job.id} ({job.type}) failed for good after {job.attempts} "
                    f"attempts; retry or discard it. Last error: {error[:300]}",
                    type="job_failed",
                    priority=2,
                )
        except _DB_ERRORS as exc:
            log.warning("jobs: could not log the failure of job %s: %s", job.id, exc)
