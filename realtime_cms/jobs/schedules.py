"""Periodic jobs, exactly once per slot across any number of processes.

Every worker process ticks the same schedules. For each, the latest due slot (a cron time
from cronsim, or a multiple of a fixed period) becomes one job whose id is a uuid5 of the
schedule and the slot, inserted unless taken: however many processes see the slot, one
job exists for it. Only the latest due slot is ever enqueued, so a slot missed while no
process ran is coalesced into one late run (its lateness is `started_at - run_at`), never a
storm of catch-up runs.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from cronsim import CronSim, CronSimError

from realtime_cms.db import SessionFactory, transaction
from realtime_cms.errors import Unprocessable
from realtime_cms.jobs.queue import enqueue
from realtime_cms.jobs.registry import JobType

log = logging.getLogger(__name__)

_NAMESPACE = uuid.UUID("6f1c2a53-5d1e-4c8e-9a57-2f3c0b7c9d41")


def parse_cron(expression: str, field_name: str = "cron") -> str:
    """`expression` if cronsim accepts it (5 fields, or 6 with seconds), else Unprocessable."""
    try:
        CronSim(expression, datetime.now(UTC))
    except (CronSimError, ValueError) as exc:
        raise Unprocessable(
            f"Invalid cron expression: {exc}",
            code="invalid_cron",
            errors=[{"field": field_name, "message": str(exc)}],
        ) from exc
    return expression


@dataclass(frozen=True, slots=True)
class Schedule:
    """Run `job_type` with `payload` every `every_seconds`, or at the times of `cron`."""

    name: str
    job_type: JobType[Any]
    every_seconds: float | None = None
    cron: str | None = None
    payload: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if (self.every_seconds is None) == (self.cron is None):
            raise ValueError(f"schedule {self.name}: give every_seconds or cron, not both")
        if self.every_seconds is not None and self.every_seconds < 1:
            raise ValueError(f"schedule {self.name}: every_seconds is at least 1")
        if self.cron is not None:
            parse_cron(self.cron)

    def latest_slot(self, now: datetime) -> datetime:
        """The latest slot at or before `now` (whole seconds, UTC)."""
        now = now.astimezone(UTC).replace(microsecond=0)
        if self.every_seconds is not None:
            period = int(self.every_seconds)
            epoch = int(now.timestamp())
            return datetime.fromtimestamp(epoch - epoch % period, UTC)
        assert self.cron is not None
        return next(CronSim(self.cron, now + timedelta(seconds=1), reverse=True))

    def job_id(self, slot: datetime) -> str:
        return str(uuid.uuid5(_NAMESPACE, f"{self.name}@{slot.isoformat()}"))


class Scheduler:
    """Enqueues the due slot of each schedule once per slot this process sees."""

    def __init__(self, sessions: SessionFactory, schedules: Sequence[Schedule]) -> None:
        names = [s.name for s in schedules]
        if len(set(names)) != len(names):
            raise ValueError("schedule names must be unique")
        self._sessions = sessions
        self._schedules = list(schedules)
        self._seen: dict[str, datetime] = {}

    @property
    def has_schedules(self) -> bool:
        return bool(self._schedules)

    @property
    def shortest_period(self) -> float:
        periods = [s.every_seconds for s in self._schedules if s.every_seconds is not None]
        return min(periods, default=60.0)

    async def tick(self, now: datetime) -> int:
        """Enqueue every newly due slot (one transaction); how many this process inserted."""
        due = [
            (schedule, slot)
            for schedule in self._schedules
            if self._seen.get(schedule.name) != (slot := schedule.latest_slot(now))
        ]
        if not due:
            return 0
        inserted = 0
        async with transaction(self._sessions) as db:
            for schedule, slot in due:
                job_id = await enqueue(
                    db,
                    schedule.job_type,
                    schedule.payload,
                    run_at=slot,
                    job_id=schedule.job_id(slot),
                )
                inserted += job_id is not None
        for schedule, slot in due:
            self._seen[schedule.name] = slot
        return inserted
