"""A process' registration: its `worker_processes` row (the lease), its `workers` row
(health and workload) and its lifecycle in `worker_activity_logs`."""

from __future__ import annotations

import json
import os
import socket
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from realtime_cms.db import SessionFactory, transaction
from realtime_cms.jobs.leases import LIVE_PROCESS
from realtime_cms.models.workers import Worker, WorkerActivityLog, WorkerProcess
from realtime_cms.notifications import workers as worker_notifications

WORKER_TYPE = "job_process"


@dataclass(frozen=True, slots=True)
class Beat:
    """What a heartbeat reports."""

    status: str  # idle | working
    running: int
    memory_mb: int
    last_job_id: str | None


def log_activity(db: AsyncSession, worker_id: str, action: str, **details: Any) -> None:
    """One lifecycle event (started, stopped, job_failed, reclaimed, recovered, ...)."""
    text = json.dumps(details, default=str, sort_keys=True) if details else None
    db.add(WorkerActivityLog(worker_id=worker_id, action_type=action, details=text))


async def tell_staff(
    db: AsyncSession, worker_id: str, message: str, *, type: str, priority: int
) -> None:
    """A worker notification for the staff (users holding `workers.manage`), delivered in
    batches by the job `notifications.worker_batch`, committed with what it reports."""
    await worker_notifications.add(db, worker_id, message, type=type, priority=priority)


async def register(
    sessions: SessionFactory,
    *,
    kind: str,
    concurrency: int,
    queues: list[str],
    now: datetime,
    memory_limit_mb: int = 1024,
    previous: str | None = None,
) -> str:
    """A new process id, registered live with a first heartbeat; `previous`: the id this
    process had before it was declared dead (it carries on as a recovery)."""
    process_id = str(uuid.uuid4())
    async with transaction(sessions) as db:
        recoveries = 0
        if previous is not None:
            before = await db.get(Worker, previous)
            recoveries = (before.recovery_attempts or 0) + 1 if before is not None else 1
        db.add(
            Worker(
                worker_id=process_id,
                type=WORKER_TYPE,
                status="active",
                hostname=socket.gethostname()[:255],
                pid=os.getpid(),
                last_heartbeat=now,
                current_workload=0,
                max_workload=concurrency,
                recovery_attempts=min(recoveries, 255),
            )
        )
        await db.flush()
        db.add(
            WorkerProcess(
                id=process_id,
                type=kind,
                status="idle",
                pid=os.getpid(),
                memory_limit=memory_limit_mb,
                last_heartbeat=now,
            )
        )
        if previous is not None:
            log_activity(db, process_id, "recovered", previous=previous)
        log_activity(db, process_id, "started", kind=kind, concurrency=concurrency, queues=queues)
    return process_id


async def heartbeat(sessions: SessionFactory, process_id: str, beat: Beat, now: datetime) -> bool:
    """Renew the lease; False if this process was declared dead (its jobs were reclaimed)."""
    async with transaction(sessions) as db:
        result = await db.execute(
            sa.update(WorkerProcess)
            .where(WorkerProcess.id == process_id, WorkerProcess.status.in_(LIVE_PROCESS))
            .values(
                last_heartbeat=now,
                status=beat.status,
                current_memory=beat.memory_mb,
                last_job_id=beat.last_job_id,
                updated_at=now,
            )
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            return False
        await db.execute(
            sa.update(Worker)
            .where(Worker.worker_id == process_id)
            .values(last_heartbeat=now, current_workload=beat.running, updated_at=now)
        )
    return True


async def mark_stopped(sessions: SessionFactory, process_id: str, **details: Any) -> None:
    """The process ends cleanly: not live any more (its jobs were finished or released)."""
    async with transaction(sessions) as db:
        await db.execute(
            sa.update(WorkerProcess)
            .where(WorkerProcess.id == process_id, WorkerProcess.status.in_(LIVE_PROCESS))
            .values(status="stopped")
        )
        await db.execute(
            sa.update(Worker)
            .where(Worker.worker_id == process_id)
            .values(status="stopped", current_workload=0)
        )
        log_activity(db, process_id, "stopped", **details)


async def record_reclaim(
    sessions: SessionFactory, by: str, dead: list[str], requeued: int, failed: int
) -> None:
    """Log on each dead process that `by` took its jobs back."""
    async with transaction(sessions) as db:
        for process_id in dead:
            log_activity(db, process_id, "reclaimed", by=by, requeued=requeued, failed=failed)
            await tell_staff(
                db,
                process_id,
                f"Process stopped heartbeating and was declared dead by {by}: its jobs were "
                f"taken back ({requeued} queued again, {failed} failed for good).",
                type="process_failed",
                priority=1,
            )
        await db.execute(
            sa.update(Worker)
            .where(Worker.worker_id.in_(dead))
            .values(status="failed", current_workload=0)
        )
