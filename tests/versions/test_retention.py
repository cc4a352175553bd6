"""Retention: which autosaves go, every remaining version still rebuilds exactly, and the
periodic `versions.retention` job fans out one `versions.prune` job per item concerned."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import cast

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from handlers import keys
from realtime_cms.content.binding import ContentState
from realtime_cms.db import transaction
from realtime_cms.jobs.catalog import build_registry, schedules
from realtime_cms.jobs.schedules import Scheduler
from realtime_cms.models.base import utcnow
from realtime_cms.models.versions import Version
from realtime_cms.models.workers import WorkerJob
from realtime_cms.runtime import Runtime
from realtime_cms.versions import jobs, service
from realtime_cms.versions.retention import Candidate, Policy, choose, prune_item, rebase
from realtime_cms.versions.storage import Content, encode, replay
from tests.support.content import unique
from tests.support.harness import Harness
from tests.support.jobs import job_context, settle_jobs
from tests.versions.conftest import World, new_item, save

NOW = datetime(2026, 6, 1, tzinfo=UTC)


@dataclass
class Row:
    version_id: int
    content: str
    content_hash: str
    diff_content: str | None
    is_full_content: bool
    previous_version_id: int | None


def stored(history: list[str], full_every: int) -> dict[int, Row]:
    rows: dict[int, Row] = {}
    depth = 0
    for index, body in enumerate(history):
        previous = Content(history[index - 1], {}) if index else None
        enc = encode(Content(body, {}), previous, depth=depth, full_every=full_every)
        depth = 0 if enc.is_full_content else depth + 1
        base = None if enc.is_full_content else index - 1
        rows[index] = Row(
            index, enc.content, enc.content_hash, enc.diff_content, enc.is_full_content, base
        )
    return rows


def chain(rows: dict[int, Row], version_id: int) -> list[Row]:
    out = [rows[version_id]]
    while not out[-1].is_full_content:
        out.append(rows[out[-1].previous_version_id])  # type: ignore[index]
    return out[::-1]


@settings(max_examples=200, deadline=None)
@given(
    edits=st.lists(
        st.tuples(st.integers(0, 50), st.text("ab\n", max_size=6)), min_size=1, max_size=25
    ),
    doomed_bits=st.lists(st.booleans(), min_size=25, max_size=25),
    full_every=st.integers(1, 6),
)
def test_after_pruning_any_versions_every_remaining_one_rebuilds_to_its_hash(
    edits: list[tuple[int, str]], doomed_bits: list[bool], full_every: int
) -> None:
    body, history = "", []
    for position, text in edits:
        cut = min(position, len(body))
        body = body[:cut] + text + body[cut + 1 :]
        history.append(body)
    rows = stored(history, full_every)
    order = list(rows)
    doomed = {i for i in order[:-1] if doomed_bits[i]}
    for version_id, (enc, base) in rebase(rows, order, doomed, full_every=full_every).items():
        rows[version_id] = Row(
            version_id, enc.content, enc.content_hash, enc.diff_content, enc.is_full_content, base
        )
    for version_id in doomed:
        del rows[version_id]
    for version_id, row in rows.items():
        links = chain(rows, version_id)
        assert replay(links).body == history[version_id]
        assert len(links) <= full_every
        assert row.previous_version_id not in doomed


def test_the_newest_autosaves_manual_versions_and_the_latest_version_stay() -> None:
    old = NOW - timedelta(days=40)
    versions = [
        Candidate(1, True, old),
        Candidate(2, False, old),
        Candidate(3, True, NOW),
        Candidate(4, True, NOW),
        Candidate(5, True, old),
    ]
    assert choose(versions, Policy(keep=2, max_age_days=0), now=NOW) == {1, 3}
    assert choose(versions, Policy(keep=10, max_age_days=30), now=NOW) == {1}
    assert choose(versions, Policy(keep=0, max_age_days=30), now=NOW, protected={3}) == {1, 4}


async def test_pruning_an_items_autosaves_rebases_the_versions_that_depended_on_them(
    harness: Harness, world: World
) -> None:
    item_id = await new_item(harness, world)
    states = [ContentState(body="line\n" * n, fields={"title": f"t{n % 3}"}) for n in range(1, 30)]
    ids = [
        await save(harness, item_id, state, is_autosave=n % 4 != 0)
        for n, state in enumerate(states)
    ]
    async with transaction(harness.app[keys.SESSIONS]) as db:
        pruned = await prune_item(db, item_id, Policy(keep=3, max_age_days=0))
    async with transaction(harness.app[keys.SESSIONS]) as db:
        left = list(await db.scalars(sa.select(Version.id).where(Version.content_id == item_id)))
        assert pruned == len(ids) - len(left) and pruned > 10
        for version_id in left:
            rebuilt = await service.reconstruct(db, version_id)
            assert rebuilt.body == states[ids.index(version_id)].body


async def _aged_item(harness: Harness, world: World, autosaves: int, days: float) -> int:
    """An item with `autosaves` autosaves made `days` ago, then a manual version."""
    item_id = await new_item(harness, world)
    ids = [
        await save(harness, item_id, ContentState(body=f"draft {n}\n" * n), is_autosave=True)
        for n in range(1, autosaves + 1)
    ]
    await save(harness, item_id, ContentState(body="final\n"))
    async with transaction(harness.app[keys.SESSIONS]) as db:
        await db.execute(
            sa.update(Version)
            .where(Version.id.in_(ids))
            .values(created_at=utcnow() - timedelta(days=days))
        )
    return item_id


async def _bodies(harness: Harness, item_id: int) -> list[str]:
    """The content of each of the item's versions, rebuilt from storage, oldest first."""
    async with transaction(harness.app[keys.SESSIONS]) as db:
        ids = await db.scalars(
            sa.select(Version.id).where(Version.content_id == item_id).order_by(Version.id)
        )
        return [(await service.reconstruct(db, version_id)).body for version_id in ids]


async def _jobs(harness: Harness, type_name: str) -> list[WorkerJob]:
    async with transaction(harness.app[keys.SESSIONS]) as db:
        return list(await db.scalars(sa.select(WorkerJob).where(WorkerJob.type == type_name)))


async def _settle(harness: Harness) -> None:
    await settle_jobs(harness.app[keys.SESSIONS], [jobs.RETENTION.name, jobs.PRUNE.name])


async def test_the_retention_schedule_prunes_through_one_job_per_item_with_old_autosaves(
    harness: Harness, world: World
) -> None:
    old = await _aged_item(harness, world, autosaves=3, days=40)
    recent = await _aged_item(harness, world, autosaves=2, days=1)
    app_settings = harness.app[keys.SETTINGS]
    assert jobs.RETENTION.name in build_registry(app_settings)
    [schedule] = [s for s in schedules(app_settings) if s.job_type is jobs.RETENTION]
    assert schedule.every_seconds == app_settings.version_retention_interval_seconds
    # Under a name of its own: the harness' worker already took this slot of the real one.
    renamed = dataclasses.replace(schedule, name=f"test-retention-{unique()}")
    assert await Scheduler(harness.app[keys.SESSIONS], [renamed]).tick(utcnow()) == 1
    await _settle(harness)
    assert await _bodies(harness, old) == ["final\n"]
    assert await _bodies(harness, recent) == ["draft 1\n", "draft 2\ndraft 2\n", "final\n"]
    pruned = await _jobs(harness, jobs.PRUNE.name)
    mine = {job.payload["item_id"]: (job.status, job.output) for job in pruned}
    assert mine[old] == ("completed", "pruned 3 autosaves") and recent not in mine


async def test_the_fan_out_carries_on_in_chunks_until_every_item_is_pruned(
    harness: Harness, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(jobs, "FAN_OUT", 2)
    items = [await _aged_item(harness, world, autosaves=1, days=60) for _ in range(5)]
    runtime = harness.app[keys.RUNTIME]
    async with transaction(harness.app[keys.SESSIONS]) as db:
        output = await jobs.RETENTION.run(job_context(db, jobs.RETENTION, runtime), {})
    assert output is not None and "carrying on after item" in output
    await _settle(harness)
    for item_id in items:
        assert await _bodies(harness, item_id) == ["final\n"]
    carried = [
        job for job in await _jobs(harness, jobs.RETENTION.name) if job.payload.get("after_item_id")
    ]
    assert len(carried) >= 2 and all(job.status == "completed" for job in carried)


async def test_a_prune_job_applies_the_policy_of_the_settings(
    harness: Harness, world: World
) -> None:
    item_id = await new_item(harness, world)
    for n in range(6):
        await save(harness, item_id, ContentState(body=f"v{n}"), is_autosave=True)
    policy = SimpleNamespace(version_autosave_keep=2, version_autosave_max_age_days=0)
    runtime = cast(Runtime, SimpleNamespace(settings=policy))
    async with transaction(harness.app[keys.SESSIONS]) as db:
        context = job_context(db, jobs.PRUNE, runtime)
        assert await jobs.PRUNE.run(context, {"item_id": item_id}) == "pruned 4 autosaves"
        assert await jobs.PRUNE.run(context, {"item_id": 10**9}) == "the item no longer exists"
    assert await _bodies(harness, item_id) == ["v4", "v5"]
