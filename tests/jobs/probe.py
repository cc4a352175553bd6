"""Probe job types for the job-system tests: their effect is a row with a unique key.

`probe_effects.key` is unique, so a job whose effect ran twice would fail its second
insert (and the tests count rows too). Loaded into worker processes through
`RCMS_JOB_PLUGINS=tests.jobs.probe`, as any plugin module is (`register(registry)`).
"""

from __future__ import annotations

import asyncio
import os

import sqlalchemy as sa
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncEngine

from realtime_cms.config import Settings
from realtime_cms.jobs.registry import JobContext, JobType, NoPayload, Registry
from realtime_cms.jobs.schedules import Schedule

METADATA = sa.MetaData()
EFFECTS = sa.Table(
    "probe_effects",
    METADATA,
    sa.Column("key", sa.String(100), primary_key=True),
    sa.Column("job_id", sa.String(36), nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("lateness", sa.Float, nullable=False, server_default="0"),
)


class Effect(BaseModel):
    model_config = {"extra": "forbid"}
    key: str
    sleep: float = 0.0
    fail_times: int = 0


async def _insert(context: JobContext, payload: Effect) -> str:
    if context.attempt <= payload.fail_times:
        raise RuntimeError(f"failing on purpose (attempt {context.attempt})")
    if payload.sleep:
        await asyncio.sleep(payload.sleep)
    await context.db.execute(
        EFFECTS.insert().values(key=payload.key, job_id=context.job_id, attempt=context.attempt)
    )
    return f"inserted {payload.key}"


async def _tick(context: JobContext, payload: NoPayload) -> str:
    late = (context.started_at - context.run_at).total_seconds()
    await context.db.execute(
        EFFECTS.insert().values(
            key=f"tick@{context.run_at.isoformat()}",
            job_id=context.job_id,
            attempt=context.attempt,
            lateness=late,
        )
    )
    return f"late by {late:.0f} s"


async def _noop(context: JobContext, payload: NoPayload) -> None:
    return None


async def _hold(context: JobContext, payload: Effect) -> str:
    """Takes its transaction's connection, keeps it `sleep` seconds, and says which it was."""
    connection = await context.db.connection()
    await connection.execute(sa.text("SELECT 1"))
    raw = await connection.get_raw_connection()
    await asyncio.sleep(payload.sleep)
    return f"connection {id(raw.driver_connection)}"


INSERT = JobType("probe.insert", Effect, _insert, queue="probe", max_attempts=3, timeout_seconds=60)
TICK = JobType("probe.tick", NoPayload, _tick, queue="probe")
NOOP = JobType("probe.noop", NoPayload, _noop, queue="probe")
HOLD = JobType("probe.hold", Effect, _hold, queue="probe", timeout_seconds=60)


def schedules(settings: Settings) -> list[Schedule]:
    """`probe.tick` every second, in processes started with PROBE_TICK=1."""
    if os.environ.get("PROBE_TICK") != "1":
        return []
    return [Schedule("probe.tick", TICK, every_seconds=1)]


def register(registry: Registry) -> None:
    for job_type in (INSERT, TICK, NOOP, HOLD):
        registry.add(job_type)


async def create_table(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.run_sync(METADATA.create_all)
