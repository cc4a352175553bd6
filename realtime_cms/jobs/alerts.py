"""Heartbeat alerts: a worker process gone silent raises `heartbeat_alerts`, escalating.

The periodic job `workers.monitor` (every `MONITOR_SECONDS`, exactly once across processes)
compares every process that did not stop cleanly with the active `alert_configurations`
(level, `threshold_minutes`, `escalation_after_minutes`, `notification_channels`). A process
silent for a level's threshold — or, once a level fired, for that level's escalation time
more — fires the level: an alert row is created or raised (`next_alert_level` is the level to
fire next, `failure_count` how many levels fired, `last_failure` when), and unless the alert
is suppressed the staff are told: users holding `workers.manage`, in-app and/or by mail as
the level's channels say. A process that heartbeats again (or was stopped cleanly) clears
its alert. With no configuration stored, `DEFAULT_LEVELS` apply.

An operator acknowledges an alert by suppressing it (realtime_cms/jobs/monitoring.py): the
staff are told nothing more, while its escalation is still recorded, so the alert shows how
long the process has been silent. Every alert raised, escalated, cleared or (un)suppressed
emits `AlertChanged`, pushed after commit to the operators' room as `alerts` events
(`feed`).
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from realtime_cms.events import EventBus, emit
from realtime_cms.jobs.pushes import CoalescedFeed, Pushed
from realtime_cms.jobs.queue import enqueue
from realtime_cms.jobs.registry import JobContext, JobType, NoPayload
from realtime_cms.mail import SEND, MailPayload
from realtime_cms.models.auth import Permission, RolePermission, User, UserRole
from realtime_cms.models.workers import (
    AlertConfiguration,
    HeartbeatAlert,
    Worker,
    WorkerProcess,
)
from realtime_cms.notifications.service import notify, take_staged
from realtime_cms.principal import system

if TYPE_CHECKING:
    from realtime_cms.runtime import Emitter

MONITOR_SECONDS = 30
CHANNELS = ("in_app", "email")
_NOTIFIER = system(frozenset({"notifications.send"}))


@dataclass(frozen=True, slots=True)
class Level:
    level: int
    threshold_minutes: int
    escalation_after_minutes: int | None
    channels: tuple[str, ...]


DEFAULT_LEVELS = (
    Level(1, 2, 10, ("in_app",)),
    Level(2, 12, None, ("in_app", "email")),
)


@dataclass(frozen=True, slots=True)
class AlertChanged(Pushed):
    """Alert `alert_id` of process `worker_id` is now as given (`cleared`: deleted)."""

    alert_id: int
    worker_id: str
    next_alert_level: int | None
    failure_count: int | None
    is_suppressed: bool
    state: Literal["open", "cleared"]

    @classmethod
    def of(cls, alert: HeartbeatAlert, state: Literal["open", "cleared"]) -> AlertChanged:
        return cls(
            alert.id,
            alert.worker_id,
            alert.next_alert_level,
            alert.failure_count,
            bool(alert.is_suppressed),
            state,
        )

    @property
    def key(self) -> Hashable:
        return self.alert_id

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.alert_id,
            "worker_id": self.worker_id,
            "next_alert_level": self.next_alert_level,
            "failure_count": self.failure_count,
            "is_suppressed": self.is_suppressed,
            "state": self.state,
        }


def feed(bus: EventBus, emitter: Emitter) -> CoalescedFeed[AlertChanged]:
    """The process' live feed of alert changes: `{"alerts": [...]}` to the room `jobs`."""
    return CoalescedFeed(bus, emitter, AlertChanged, "alerts")


async def levels(db: AsyncSession) -> list[Level]:
    """The active levels, lowest first (the defaults when none is stored)."""
    rows = await db.scalars(
        sa.select(AlertConfiguration)
        .where(AlertConfiguration.is_active.is_not(False))
        .order_by(AlertConfiguration.alert_level)
    )
    found = [
        Level(
            r.alert_level,
            r.threshold_minutes,
            r.escalation_after_minutes,
            tuple(c for c in r.notification_channels if c in CHANNELS),
        )
        for r in rows
    ]
    return found or list(DEFAULT_LEVELS)


def due_level(
    configured: list[Level], silent: timedelta, alert: HeartbeatAlert | None, now: datetime
) -> Level | None:
    """The level to fire now for a process silent for `silent`, if any."""
    next_level = alert.next_alert_level if alert is not None else configured[0].level
    pending = [lv for lv in configured if lv.level >= (next_level or 1)]
    if not pending:
        return None
    candidate = pending[0]
    if silent >= timedelta(minutes=candidate.threshold_minutes):
        return candidate
    fired = [lv for lv in configured if lv.level < candidate.level]
    if alert is not None and fired and alert.last_failure is not None:
        escalation = fired[-1].escalation_after_minutes
        if escalation is not None and now - alert.last_failure >= timedelta(minutes=escalation):
            return candidate
    return None


async def staff(db: AsyncSession) -> list[User]:
    """Active users holding `workers.manage`."""
    ids = (
        sa.select(UserRole.user_id)
        .join(RolePermission, RolePermission.role_id == UserRole.role_id)
        .join(Permission, Permission.id == RolePermission.permission_id)
        .where(Permission.name == "workers.manage")
    )
    return list(await db.scalars(sa.select(User).where(User.id.in_(ids), User.is_active)))


async def _tell(context: JobContext, worker: Worker, level: Level, silent: timedelta) -> None:
    db = context.db
    people = await staff(db)
    minutes = int(silent.total_seconds() // 60)
    title = f"Worker {worker.hostname}:{worker.pid} silent for {minutes} min (level {level.level})"
    message = (
        f"Worker process {worker.worker_id} on {worker.hostname} (pid {worker.pid}) has sent no "
        f"heartbeat for {minutes} minutes; its jobs were queued again for other workers. "
        "Suppress the alert (Background work page) to stop these notifications."
    )
    if "in_app" in level.channels and people:
        await notify(
            db,
            _NOTIFIER,
            users=[u.id for u in people],
            title=title[:255],
            message=message,
            type="worker_alert",
        )
        staged = take_staged(db)
        notifier = context.runtime.notifier

        async def push() -> None:
            await notifier.deliver(staged)

        context.after_commit.append(push)
    if "email" in level.channels:
        for person in people:
            await enqueue(db, SEND, MailPayload(to=person.email, subject=title, body=message))


async def _monitor(context: JobContext, payload: NoPayload) -> str:
    db, now = context.db, context.started_at
    configured = await levels(db)
    rows = (
        await db.execute(
            sa.select(Worker, WorkerProcess.status).join(
                WorkerProcess, WorkerProcess.id == Worker.worker_id
            )
        )
    ).all()
    alerts = {a.worker_id: a for a in await db.scalars(sa.select(HeartbeatAlert))}
    fired = cleared = 0
    first = timedelta(minutes=configured[0].threshold_minutes)
    for worker, status in rows:
        alert = alerts.get(worker.worker_id)
        silent = now - worker.last_heartbeat if worker.last_heartbeat else timedelta.max
        if status == "stopped" or silent < first:
            if alert is not None:
                emit(db, AlertChanged.of(alert, "cleared"))
                await db.delete(alert)
                cleared += 1
            continue
        level = due_level(configured, silent, alert, now)
        if level is None:
            continue
        if alert is None:
            alert = HeartbeatAlert(worker_id=worker.worker_id, failure_count=0)
            db.add(alert)
        alert.failure_count = (alert.failure_count or 0) + 1
        alert.last_failure = now
        alert.next_alert_level = level.level + 1
        # A new alert's id, for the push.
        await db.flush()
        emit(db, AlertChanged.of(alert, "open"))
        fired += 1
        if not alert.is_suppressed:
            await _tell(context, worker, level, silent)
    return f"{fired} alert levels fired, {cleared} alerts cleared"


MONITOR = JobType(
    "workers.monitor",
    NoPayload,
    _monitor,
    queue="maintenance",
    max_attempts=2,
    description="Raise, escalate and clear heartbeat alerts of silent worker processes",
)
JOB_TYPES = (MONITOR,)
