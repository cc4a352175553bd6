"""The versions service on a live database: exact history, numbering, metadata."""

from __future__ import annotations

import asyncio
import random

import sqlalchemy as sa

from handlers import keys
from realtime_cms.content.binding import ContentState
from realtime_cms.db import transaction
from realtime_cms.models.versions import Version, VersionContent, VersionMetadata
from realtime_cms.versions import service
from realtime_cms.versions.storage import canonical, hash_of
from tests.support.harness import Harness
from tests.versions.conftest import World, new_item, principal_of, save

WORDS = ["alpha", "beta", "gamma", "delta", "é", "😀", "\n", "\n\n", "# ", "- "]


def random_history(rng: random.Random, length: int) -> list[ContentState]:
    body, history = "", []
    for step in range(length):
        for _ in range(rng.randint(1, 6)):
            start = rng.randint(0, len(body))
            end = min(len(body), start + rng.randint(0, 12))
            body = body[:start] + " ".join(rng.choices(WORDS, k=rng.randint(0, 4))) + body[end:]
        fields = {"title": f"T{rng.randint(0, 3)}", "slug": "s", "n": step % 2 or None}
        history.append(ContentState(body=body, fields={k: v for k, v in fields.items() if v}))
    return history


async def test_every_version_of_a_saved_history_reconstructs_to_what_was_saved(
    harness: Harness, world: World
) -> None:
    item_id = await new_item(harness, world)
    history = random_history(random.Random(4), 45)
    ids = [await save(harness, item_id, state) for state in history]
    async with transaction(harness.app[keys.SESSIONS]) as db:
        for version_id, state in zip(ids, history, strict=True):
            rebuilt = await service.reconstruct(db, version_id)
            assert (rebuilt.body, rebuilt.fields) == (state.body, state.fields)
        rows = list(await db.scalars(sa.select(VersionContent).order_by(VersionContent.id)))
        mine = [row for row in rows if row.version_id in ids]
        assert [row.is_full_content for row in mine].count(True) >= 3  # every 20 at least
        assert all(row.content == "" for row in mine if not row.is_full_content)
        assert [row.content_hash for row in mine] == [
            hash_of(service.as_content(state)) for state in history
        ]


async def test_concurrent_creators_get_consecutive_version_numbers(
    harness: Harness, world: World
) -> None:
    item_id = await new_item(harness, world)
    states = [ContentState(body=f"body {n}", fields={"title": "t"}) for n in range(6)]
    await asyncio.gather(*(save(harness, item_id, state) for state in states))
    async with transaction(harness.app[keys.SESSIONS]) as db:
        numbers = await db.scalars(
            sa.select(Version.version_number).where(Version.content_id == item_id)
        )
        assert sorted(numbers) == [1, 2, 3, 4, 5, 6]


async def test_metadata_snapshots_seo_fields_status_visibility_and_author(
    harness: Harness, world: World
) -> None:
    item_id = await new_item(harness, world, status="scheduled", visibility="password")
    state = ContentState(
        body="x", fields={"title": "t", "seo_title": "Best", "seo_keywords": ["a", "b"]}
    )
    version_id = await save(harness, item_id, state, notes="first")
    async with transaction(harness.app[keys.SESSIONS]) as db:
        meta = await db.scalar(
            sa.select(VersionMetadata).where(VersionMetadata.version_id == version_id)
        )
        assert meta is not None
        assert (meta.meta_key, meta.change_type) == ("snapshot", "manual")
        assert (meta.seo_title, meta.seo_keywords, meta.seo_description) == ("Best", "a, b", None)
        assert (meta.status, meta.visibility) == ("pending_review", "password_protected")
        assert meta.author_id == harness.users["author"].id and meta.tags == []


async def test_an_author_cannot_version_another_authors_item(
    harness: Harness, world: World
) -> None:
    item_id = await new_item(harness, world, role="editor")
    async with transaction(harness.app[keys.SESSIONS]) as db:
        try:
            await service.create_version(
                db, principal_of(harness, "author"), item_id=item_id, state=ContentState(body="")
            )
        except service.CMSError as exc:
            assert exc.code == "permission_denied"
        else:
            raise AssertionError("an author versioned another author's item")


async def test_the_canonical_content_of_a_version_is_its_hash_input(
    harness: Harness, world: World
) -> None:
    item_id = await new_item(harness, world)
    state = ContentState(body="b", fields={"title": "x"})
    version_id = await save(harness, item_id, state)
    row = await harness.scalar(
        sa.select(VersionContent).where(VersionContent.version_id == version_id)
    )
    assert row.is_full_content and row.content == canonical(service.as_content(state))
