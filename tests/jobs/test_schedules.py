"""Periodic slots: one job per slot however many processes tick, missed slots coalesced."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from realtime_cms.errors import Unprocessable
from realtime_cms.jobs.schedules import Schedule, Scheduler, parse_cron
from realtime_cms.models.workers import WorkerJob
from tests.jobs import probe
from tests.jobs.conftest import JobDb

T0 = datetime(2026, 12, 7, 11, 30, 0, tzinfo=UTC)


async def _slots(jobdb: JobDb) -> list[datetime]:
    async with jobdb.sessions() as db:
        return list(await db.scalars(sa.select(WorkerJob.run_at).order_by(WorkerJob.run_at)))


def test_a_fixed_period_slots_on_its_multiples() -> None:
    every = Schedule("every-5", probe.TICK, every_seconds=5)
    assert every.latest_slot(T0 + timedelta(seconds=7.9)) == T0 + timedelta(seconds=5)
    assert every.latest_slot(T0) == T0
    assert every.job_id(T0) == Schedule("every-5", probe.TICK, every_seconds=5).job_id(T0)
    assert every.job_id(T0) != every.job_id(T0 + timedelta(seconds=5))


def test_a_cron_schedule_slots_on_its_times() -> None:
    nightly = Schedule("nightly", probe.TICK, cron="30 11 * * *")
    assert nightly.latest_slot(T0) == T0
    assert nightly.latest_slot(T0 - timedelta(seconds=1)) == T0 - timedelta(days=1)
    seconds = Schedule("each-second", probe.TICK, cron="*/2 * * * * *")
    assert seconds.latest_slot(T0 + timedelta(seconds=3)) == T0 + timedelta(seconds=2)


def test_a_bad_cron_is_refused_naming_the_field() -> None:
    with pytest.raises(Unprocessable) as caught:
        parse_cron("61 * * * *", "schedule.cron")
    assert caught.value.code == "invalid_cron"
    assert caught.value.errors[0]["field"] == "schedule.cron"


async def test_three_processes_enqueue_each_slot_once(clean: JobDb) -> None:
    schedule = Schedule("probe-tick", probe.TICK, every_seconds=1)
    schedulers = [Scheduler(clean.sessions, [schedule]) for _ in range(3)]
    for second in range(10):
        for scheduler in schedulers:
            assert await scheduler.tick(T0 + timedelta(seconds=second, milliseconds=300)) in (0, 1)
    assert await _slots(clean) == [T0 + timedelta(seconds=s) for s in range(10)]


async def test_a_missed_stretch_is_one_late_run_not_a_storm(clean: JobDb) -> None:
    schedule = Schedule("probe-tick", probe.TICK, every_seconds=1)
    scheduler = Scheduler(clean.sessions, [schedule])
    await scheduler.tick(T0)
    # Nobody ticked for a minute: only the latest slot is enqueued.
    restarted = Scheduler(clean.sessions, [schedule])
    assert await restarted.tick(T0 + timedelta(seconds=60, milliseconds=500)) == 1
    assert await _slots(clean) == [T0, T0 + timedelta(seconds=60)]
