"""Fixtures for job-system tests: a migrated database per module and backend, no server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import sqlalchemy as sa

from realtime_cms.db import SessionFactory, create_engine, session_factory
from realtime_cms.events import EventBus, attach
from realtime_cms.models.workers import Worker, WorkerActivityLog, WorkerJob, WorkerProcess
from tests.jobs import probe
from tests.support.harness import create_schema


@dataclass
class JobDb:
    url: str
    sessions: SessionFactory
    bus: EventBus


@pytest.fixture(scope="module")
async def jobdb(database_url: str) -> AsyncIterator[JobDb]:
    await create_schema(database_url)
    engine = create_engine(database_url)
    await probe.create_table(engine)
    sessions = session_factory(engine)
    bus = EventBus()
    attach(sessions, bus)
    try:
        yield JobDb(database_url, sessions, bus)
    finally:
        await engine.dispose()


@pytest.fixture
async def clean(jobdb: JobDb) -> JobDb:
    """The module's database without jobs, processes or probe effects (tests share it)."""
    async with jobdb.sessions() as db, db.begin():
        for model in (WorkerJob, WorkerActivityLog, WorkerProcess, Worker):
            await db.execute(sa.delete(model))
        await db.execute(probe.EFFECTS.delete())
    return jobdb
