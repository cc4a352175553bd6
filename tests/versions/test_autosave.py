"""Autosave through durable jobs: due after the quiet period, after many changes, on unload
and on exit; one pending job per item however many changes and nodes; and a node that never
gets to make its job due (it crashed) still leaves a job that saves at its safety net time."""

from __future__ import annotations

import asyncio
import uuid
from types import SimpleNamespace
from typing import cast

import sqlalchemy as sa

from handlers import keys
from realtime_cms.collab.peer import Peer
from realtime_cms.db import transaction
from realtime_cms.jobs import processes
from realtime_cms.models.base import utcnow
from realtime_cms.models.versions import Version
from realtime_cms.models.workers import WorkerJob
from realtime_cms.versions.autosave import Autosave
from realtime_cms.versions.jobs import AUTOSAVE, autosave_key
from tests.support.harness import Harness
from tests.support.jobs import settle_jobs
from tests.versions.conftest import World, new_item, principal_of, until


def seat(harness: Harness, role: str) -> Peer:
    """What the hook sees of a local change: the seat of a `role` user."""
    return cast(Peer, SimpleNamespace(id=f"seat-{role}", principal=principal_of(harness, role)))


def doc(item_id: int) -> str:
    return f"content:{item_id}"


async def autosave_jobs(harness: Harness, item_id: int) -> list[WorkerJob]:
    async with transaction(harness.app[keys.SESSIONS]) as db:
        jobs = await db.scalars(sa.select(WorkerJob).where(WorkerJob.type == AUTOSAVE.name))
        return [job for job in jobs if job.payload["item_id"] == item_id]


async def versions_of(harness: Harness, item_id: int) -> list[Version]:
    async with transaction(harness.app[keys.SESSIONS]) as db:
        stmt = sa.select(Version).where(Version.content_id == item_id).order_by(Version.id)
        return list(await db.scalars(stmt))


async def first_version(harness: Harness, item_id: int) -> Version:
    async def probe() -> Version | None:
        found = await versions_of(harness, item_id)
        return found[0] if found else None

    return await until(probe, within=30)


async def settle(harness: Harness) -> None:
    await settle_jobs(harness.app[keys.SESSIONS], [AUTOSAVE.name])


async def test_autosave_saves_after_the_quiet_period_attributed_to_the_last_editor(
    harness: Harness, world: World
) -> None:
    item_id = await new_item(harness, world, body="start")
    autosave = Autosave(harness.app[keys.SESSIONS], quiet_seconds=0.05, every_changes=1000)
    async with autosave:
        await autosave.changed(doc(item_id), b"", seat(harness, "author"))
        await autosave.changed(doc(item_id), b"", seat(harness, "editor"))
        await autosave.changed(doc(item_id), b"", None)  # relayed: not this node's
        await autosave.changed("notes:1", b"", seat(harness, "editor"))

        version = await first_version(harness, item_id)
        assert version.is_autosave and version.user_id == harness.users["editor"].id
        [job] = await autosave_jobs(harness, item_id)
        assert (job.status, job.output) == ("completed", "saved version 1")

        # Nothing changed since: the next window's autosave stores nothing.
        await autosave.changed(doc(item_id), b"", seat(harness, "editor"))
        await autosave.flush(item_id)
        await settle(harness)
    assert len(await versions_of(harness, item_id)) == 1
    outputs = sorted(str(job.output) for job in await autosave_jobs(harness, item_id))
    assert outputs == ["saved version 1", "unchanged since the latest version"]


async def test_autosave_is_due_at_once_after_enough_changes_on_unload_and_on_exit(
    harness: Harness, world: World
) -> None:
    first, second, third = [await new_item(harness, world, body=name) for name in "abc"]
    autosave = Autosave(harness.app[keys.SESSIONS], quiet_seconds=3600, every_changes=3)
    author = seat(harness, "author")
    async with autosave:
        for _ in range(3):
            await autosave.changed(doc(first), b"", author)
        await autosave.changed(doc(second), b"", author)
        await autosave.changed(doc(third), b"", author)
        assert autosave.pending == {second, third}
        await first_version(harness, first)
        await autosave.unloaded(doc(second))
        assert autosave.pending == {third}
    await settle(harness)
    counts = [len(await versions_of(harness, item)) for item in (first, second, third)]
    assert counts == [1, 1, 1]


async def test_many_changes_on_two_nodes_leave_one_pending_job_per_item(
    harness: Harness, world: World
) -> None:
    one, two = await new_item(harness, world, body="one"), await new_item(harness, world)
    sessions = harness.app[keys.SESSIONS]
    nodes = [
        Autosave(sessions, quiet_seconds=3600, every_changes=1000, safety_seconds=3600)
        for _ in range(2)
    ]
    editor, author = seat(harness, "editor"), seat(harness, "author")
    async with nodes[0], nodes[1]:
        for n in range(40):
            await nodes[0].changed(doc(one), b"", editor if n % 2 else author)
        for _ in range(20):
            await nodes[1].changed(doc(one), b"", editor)
        for _ in range(5):
            await nodes[0].changed(doc(two), b"", author)
        for node in nodes:
            await node.drain()
        for item_id in (one, two):
            jobs = await autosave_jobs(harness, item_id)
            assert [(job.status, job.dedupe_key) for job in jobs] == [
                ("queued", autosave_key(item_id))
            ]
        assert (nodes[0].pending, nodes[1].pending) == ({one, two}, {one})
    await settle(harness)
    assert [len(await versions_of(harness, item)) for item in (one, two)] == [1, 1]


async def test_a_node_that_never_makes_its_autosave_due_leaves_a_job_that_saves(
    harness: Harness, world: World
) -> None:
    item_id = await new_item(harness, world, body="before the crash")
    autosave = Autosave(
        harness.app[keys.SESSIONS], quiet_seconds=3600, every_changes=1000, safety_seconds=2
    )
    async with autosave:
        await autosave.changed(doc(item_id), b"", seat(harness, "editor"))
        await autosave.drain()
        [job] = await autosave_jobs(harness, item_id)
        assert (job.status, job.dedupe_key) == ("queued", autosave_key(item_id))
        assert job.created_at is not None and job.run_at > job.created_at  # not due yet
        assert job.payload["user_id"] == harness.users["editor"].id

        # From here the node is as good as dead: its quiet timer is an hour away and nothing
        # flushes it. The durable job alone saves the version, at its safety net time.
        version = await first_version(harness, item_id)
        assert version.is_autosave and version.user_id == harness.users["editor"].id
        assert autosave.pending == {item_id}
    # Leaving makes another job due; the content is unchanged, so nothing more is stored.
    await settle(harness)
    assert len(await versions_of(harness, item_id)) == 1


async def test_a_change_while_the_items_autosave_job_runs_gets_a_job_after_it(
    harness: Harness, world: World
) -> None:
    """The running job may have read the content before the change: the change waits for it
    to end rather than count on it."""
    item_id = await new_item(harness, world, body="busy")
    sessions = harness.app[keys.SESSIONS]
    elsewhere = await processes.register(
        sessions, kind="test", concurrency=1, queues=["none"], now=utcnow()
    )
    running = str(uuid.uuid4())
    async with transaction(sessions) as db:
        db.add(
            WorkerJob(
                id=running,
                type=AUTOSAVE.name,
                payload={"item_id": item_id, "user_id": None},
                status="processing",
                process_id=elsewhere,
                dedupe_key=autosave_key(item_id),
                run_at=utcnow(),
                started_at=utcnow(),
                attempts=1,
            )
        )
    autosave = Autosave(sessions, quiet_seconds=3600, every_changes=1000)
    async with autosave:
        await autosave.changed(doc(item_id), b"", seat(harness, "editor"))
        flushing = asyncio.create_task(autosave.flush(item_id))
        await asyncio.sleep(0.5)
        assert not flushing.done()
        async with transaction(sessions) as db:
            await db.execute(
                sa.update(WorkerJob)
                .where(WorkerJob.id == running)
                .values(status="completed", completed_at=utcnow(), dedupe_key=None)
            )
        await flushing
        version = await first_version(harness, item_id)
        assert version.user_id == harness.users["editor"].id
    await processes.mark_stopped(sessions, elsewhere)
    jobs = await autosave_jobs(harness, item_id)
    assert len(jobs) == 2 and {job.output for job in jobs if job.id != running} == {
        "saved version 1"
    }
