"""Scaling rules into a desired worker count, for an autoscaler to follow.

`scaling_rules` rows say "when <condition> passes <threshold>, scale up/down to N":
- `queue_length`: jobs queued and due; `scale_up` matches at or above the threshold,
  `scale_down` at or below it;
- `worker_load`: the running share of live workers' capacity, in percent (running jobs /
  sum of `max_workload`); same comparisons;
- `time_of_day`: the threshold is an hour of the day in UTC (9.5 is 09:30); the rule whose
  hour came last (today, or else yesterday) is the one in force.
Matching `scale_up` rules win (the largest count), else matching `scale_down` rules (the
smallest), else the current count stands. `desired` is what `/metrics` exposes as
`rcms_workers_desired` (KEDA, docs/operations.md) and what `worker --autoscale` follows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from realtime_cms.jobs.leases import LIVE_PROCESS
from realtime_cms.models.workers import ScalingRule, Worker, WorkerJob, WorkerProcess


@dataclass(frozen=True, slots=True)
class Load:
    due_jobs: int
    live_workers: int
    running: int
    capacity: int

    @property
    def load_percent(self) -> float:
        return 100.0 * self.running / self.capacity if self.capacity else 0.0


@dataclass(frozen=True, slots=True)
class Decision:
    desired: int
    load: Load
    matched: list[int] = field(default_factory=list)


async def current_load(db: AsyncSession, now: datetime) -> Load:
    due = await db.scalar(
        sa.select(sa.func.count()).where(WorkerJob.status == "queued", WorkerJob.run_at <= now)
    )
    live = (
        await db.execute(
            sa.select(
                sa.func.count(),
                sa.func.coalesce(sa.func.sum(Worker.current_workload), 0),
                sa.func.coalesce(sa.func.sum(Worker.max_workload), 0),
            )
            .select_from(WorkerProcess)
            .join(Worker, Worker.worker_id == WorkerProcess.id)
            .where(WorkerProcess.status.in_(LIVE_PROCESS))
        )
    ).one()
    return Load(int(due or 0), int(live[0]), int(live[1]), int(live[2]))


def _hour(now: datetime) -> float:
    return now.hour + now.minute / 60 + now.second / 3600


def _time_rule_in_force(rules: Sequence[ScalingRule], now: datetime) -> ScalingRule | None:
    timed = sorted(
        (r for r in rules if r.condition_type == "time_of_day"), key=lambda r: r.threshold_value
    )
    if not timed:
        return None
    passed = [r for r in timed if r.threshold_value <= _hour(now)]
    return passed[-1] if passed else timed[-1]


def _matches(rule: ScalingRule, load: Load) -> bool:
    value = load.due_jobs if rule.condition_type == "queue_length" else load.load_percent
    if rule.action == "scale_up":
        return value >= rule.threshold_value
    return value <= rule.threshold_value


def decide(rules: Sequence[ScalingRule], load: Load, now: datetime) -> Decision:
    """The worker count the active `rules` ask for under `load` at `now`."""
    active = [r for r in rules if r.is_active is not False]
    matched = [r for r in active if r.condition_type != "time_of_day" and _matches(r, load)]
    timed = _time_rule_in_force(active, now)
    if timed is not None:
        matched.append(timed)
    ups = [r.worker_count for r in matched if r.action == "scale_up"]
    downs = [r.worker_count for r in matched if r.action == "scale_down"]
    desired = max(ups) if ups else min(downs) if downs else load.live_workers
    return Decision(desired, load, sorted(r.id for r in matched))


async def desired_workers(db: AsyncSession, now: datetime) -> Decision:
    rules = list(await db.scalars(sa.select(ScalingRule)))
    return decide(rules, await current_load(db, now), now)
