"""Retention: which autosaves go, and every remaining version still rebuilds exactly."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from realtime_cms import keys
from realtime_cms.content.binding import ContentState
from realtime_cms.db import transaction
from realtime_cms.models.versions import Version
from realtime_cms.versions import service
from realtime_cms.versions.retention import Candidate, Policy, choose, prune_item, rebase
from realtime_cms.versions.storage import Content, encode, replay
from tests.support.harness import Harness
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
