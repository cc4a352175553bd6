"""Recipes of the background-work operations: jobs, batches, job types, queues, workers.

Importing this module registers them in `tests.security.recipes.RECIPES`. Jobs are made on a
queue no worker takes, so each stays in the state its call needs.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from handlers import keys
from handlers.jobs import runtime_of
from realtime_cms.db import transaction
from realtime_cms.jobs.batches import create_batch
from realtime_cms.jobs.maintenance import PRUNE
from realtime_cms.models.base import utcnow
from realtime_cms.models.workers import WorkerJob
from tests.security.principals import Who
from tests.security.recipes import Request, recipe
from tests.security.world import World


async def a_job(world: World, status: str) -> str:
    job = WorkerJob(
        id=str(uuid.uuid4()),
        type="jobs.prune",
        queue="matrix-idle",
        payload={},
        status=status,
        attempts=0,
        max_attempts=3,
        priority=0,
        run_at=utcnow(),
    )
    await world.add(job)
    return job.id


@recipe("list_jobs", "list_job_types", "queue_depth", "list_workers", "list_batches")
async def no_inputs(world: World, who: Who) -> Request:
    return Request()


@recipe("enqueue_job")
async def enqueue_job(world: World, who: Who) -> Request:
    tomorrow = (utcnow() + timedelta(days=1)).isoformat()
    return Request(json={"type": "jobs.prune", "run_at": tomorrow})


@recipe("get_job", "cancel_job")
async def queued_job(world: World, who: Who) -> Request:
    return Request({"job_id": await a_job(world, "queued")})


@recipe("retry_job")
async def failed_job(world: World, who: Who) -> Request:
    return Request({"job_id": await a_job(world, "failed")})


@recipe("discard_job")
async def completed_job(world: World, who: Who) -> Request:
    return Request({"job_id": await a_job(world, "completed")})


@recipe("get_worker")
async def worker_process(world: World, who: Who) -> Request:
    worker = runtime_of(world.harness.app).worker
    assert worker is not None
    return Request({"process_id": worker.process_id})


@recipe("create_batch")
async def new_batch(world: World, who: Who) -> Request:
    return Request(json={"type": "jobs.prune", "items": [{}], "queue": "matrix-idle"})


@recipe("get_batch", "list_batch_items")
async def a_batch(world: World, who: Who) -> Request:
    async with transaction(world.harness.app[keys.SESSIONS]) as db:
        batch_id = await create_batch(db, PRUNE, [{}], queue="matrix-idle")
    return Request({"batch_id": batch_id})
