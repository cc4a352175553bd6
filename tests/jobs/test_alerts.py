"""Heartbeat alerts: a silent process raises an alert that escalates, tells the staff once
per level, stays quiet when suppressed, and clears when the process is back; every change is
an `AlertChanged`, pushed coalesced to the operators' room."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any, cast

import pytest
import sqlalchemy as sa

from realtime_cms.events import EventBus
from realtime_cms.jobs import alerts, processes
from realtime_cms.jobs.pushes import CoalescedFeed
from realtime_cms.models.auth import User, UserRole
from realtime_cms.models.base import utcnow
from realtime_cms.models.notifications import Notification
from realtime_cms.models.workers import AlertConfiguration, HeartbeatAlert, WorkerJob
from realtime_cms.rbac.service import role_id_by_name
from realtime_cms.runtime import Runtime
from tests.jobs.conftest import JobDb
from tests.jobs.test_api_live import Recorder
from tests.support.jobs import run_job


@dataclass
class Pushes:
    """Records what the monitor hands the notifier after commit."""

    delivered: list[Any] = field(default_factory=list)

    async def deliver(self, result: Any) -> int:
        self.delivered.append(result)
        return 0


@pytest.fixture
async def people(clean: JobDb) -> dict[str, int]:
    ids = {}
    async with clean.sessions() as db, db.begin():
        await db.execute(sa.delete(Notification))
        await db.execute(sa.delete(HeartbeatAlert))
        await db.execute(sa.delete(AlertConfiguration))
        await db.execute(sa.delete(UserRole))
        await db.execute(sa.delete(User))
        for name, role in (("ops", "admin"), ("reader", "viewer")):
            user = User(username=name, email=f"{name}@example.com", password="x")
            db.add(user)
            await db.flush()
            db.add(UserRole(user_id=user.id, role_id=await role_id_by_name(db, role)))
            ids[name] = user.id
    return ids


async def _silent_process(jobdb: JobDb, since: datetime) -> str:
    process_id = await processes.register(
        jobdb.sessions, kind="worker", concurrency=2, queues=["default"], now=since
    )
    return process_id


async def _monitor(jobdb: JobDb, at: datetime, pushes: Pushes) -> str:
    runtime = cast(Runtime, SimpleNamespace(notifier=pushes))
    return str(await run_job(jobdb.sessions, alerts.MONITOR, {}, runtime, at=at))


async def _alert(jobdb: JobDb, process_id: str) -> HeartbeatAlert | None:
    async with jobdb.sessions() as db:
        return await db.scalar(
            sa.select(HeartbeatAlert).where(HeartbeatAlert.worker_id == process_id)
        )


async def _notified(jobdb: JobDb, user_id: int) -> list[str]:
    async with jobdb.sessions() as db:
        return list(
            await db.scalars(
                sa.select(Notification.title)
                .where(Notification.user_id == user_id)
                .order_by(Notification.id)
            )
        )


async def test_a_silent_process_escalates_level_by_level(
    clean: JobDb, people: dict[str, int]
) -> None:
    start = utcnow()
    process_id = await _silent_process(clean, start)
    pushes = Pushes()
    assert (await _monitor(clean, start + timedelta(minutes=1), pushes)).startswith("0 alert")
    assert await _alert(clean, process_id) is None
    await _monitor(clean, start + timedelta(minutes=3), pushes)
    alert = await _alert(clean, process_id)
    assert alert is not None and (alert.next_alert_level, alert.failure_count) == (2, 1)
    # Level 1 fired once: a second check at the same level tells nobody again.
    await _monitor(clean, start + timedelta(minutes=4), pushes)
    titles = await _notified(clean, people["ops"])
    assert len(titles) == 1 and "level 1" in titles[0]
    assert await _notified(clean, people["reader"]) == []
    # Level 1's escalation (10 minutes) comes before level 2's threshold (12 minutes).
    await _monitor(clean, start + timedelta(minutes=13, seconds=30), pushes)
    titles = await _notified(clean, people["ops"])
    assert [("level 1" in t, "level 2" in t) for t in titles] == [(True, False), (False, True)]
    async with clean.sessions() as db:
        mails = list(
            await db.scalars(sa.select(WorkerJob.payload).where(WorkerJob.type == "mail.send"))
        )
    assert [m["to"] for m in mails] == ["ops@example.com"]  # level 2 also mails
    assert len(pushes.delivered) == 2


async def test_a_suppressed_alert_tells_nobody_and_a_heartbeat_clears_it(
    clean: JobDb, people: dict[str, int]
) -> None:
    start = utcnow()
    process_id = await _silent_process(clean, start)
    await _monitor(clean, start + timedelta(minutes=3), Pushes())
    async with clean.sessions() as db, db.begin():
        await db.execute(sa.update(HeartbeatAlert).values(is_suppressed=True))
    await _monitor(clean, start + timedelta(minutes=30), Pushes())
    assert len(await _notified(clean, people["ops"])) == 1
    beat = processes.Beat("idle", 0, 10, None)
    later = start + timedelta(minutes=31)
    assert await processes.heartbeat(clean.sessions, process_id, beat, later)
    output = await _monitor(clean, later + timedelta(seconds=5), Pushes())
    assert output.endswith("1 alerts cleared")
    assert await _alert(clean, process_id) is None


async def test_stored_levels_replace_the_defaults(clean: JobDb, people: dict[str, int]) -> None:
    async with clean.sessions() as db, db.begin():
        db.add(
            AlertConfiguration(alert_level=1, threshold_minutes=5, notification_channels=["email"])
        )
        db.add(
            AlertConfiguration(
                alert_level=2, threshold_minutes=1, notification_channels=[], is_active=False
            )
        )
    start = utcnow()
    process_id = await _silent_process(clean, start)
    await _monitor(clean, start + timedelta(minutes=3), Pushes())
    assert await _alert(clean, process_id) is None
    await _monitor(clean, start + timedelta(minutes=6), Pushes())
    assert await _notified(clean, people["ops"]) == []  # email only
    async with clean.sessions() as db:
        assert await db.scalar(sa.select(sa.func.count()).where(WorkerJob.type == "mail.send")) == 1


async def test_raising_escalating_and_clearing_an_alert_each_emit_alert_changed(
    clean: JobDb, people: dict[str, int]
) -> None:
    seen: list[alerts.AlertChanged] = []
    unsubscribe = clean.bus.subscribe(alerts.AlertChanged, seen.append)
    try:
        start = utcnow()
        process_id = await _silent_process(clean, start)
        await _monitor(clean, start + timedelta(minutes=1), Pushes())
        assert seen == []
        await _monitor(clean, start + timedelta(minutes=3), Pushes())
        await _monitor(clean, start + timedelta(minutes=13), Pushes())
        alert = await _alert(clean, process_id)
        assert alert is not None
        beat = processes.Beat("idle", 0, 10, None)
        assert await processes.heartbeat(
            clean.sessions, process_id, beat, start + timedelta(minutes=14)
        )
        await _monitor(clean, start + timedelta(minutes=14, seconds=5), Pushes())
    finally:
        unsubscribe()
    assert [(e.alert_id, e.worker_id) for e in seen] == [(alert.id, process_id)] * 3
    assert [(e.state, e.next_alert_level, e.failure_count) for e in seen] == [
        ("open", 2, 1),
        ("open", 3, 2),
        ("cleared", 3, 2),
    ]


async def test_the_feed_pushes_each_alert_once_with_its_latest_state() -> None:
    bus, recorder = EventBus(), Recorder()
    async with CoalescedFeed(bus, recorder, alerts.AlertChanged, "alerts", interval=0.01):
        # One commit's worth (dispatch is synchronous): alert 1 raised then suppressed.
        bus.dispatch(
            [
                alerts.AlertChanged(1, "w1", 2, 1, False, "open"),
                alerts.AlertChanged(2, "w2", 2, 1, False, "open"),
                alerts.AlertChanged(1, "w1", 2, 1, True, "open"),
            ]
        )
        async with asyncio.timeout(15):
            await recorder.arrived.wait()
    [(event, data, where)] = recorder.sent
    assert event == "alerts" and where == {"room": "jobs", "namespace": "/notifications"}
    assert [(a["id"], a["is_suppressed"]) for a in data["alerts"]] == [(2, False), (1, True)]
    assert set(data["alerts"][0]) == {
        "id",
        "worker_id",
        "next_alert_level",
        "failure_count",
        "is_suppressed",
        "state",
    }
