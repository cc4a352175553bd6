"""Slugs: folding names into slugs, and finding the first free one in a (scoped) column."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from realtime_cms.content.slugs import is_slug, slugify, unique_slug
from realtime_cms.db import create_engine, session_factory, transaction
from realtime_cms.models.base import Base
from realtime_cms.models.content import ContentType, Tag


@pytest.fixture(scope="module")
async def db(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[AsyncSession]:
    path: Path = tmp_path_factory.mktemp("slugs") / "slugs.sqlite3"
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all, tables=[Tag.__table__, ContentType.__table__])
    async with transaction(session_factory(engine)) as session:
        yield session
    await engine.dispose()


@pytest.mark.parametrize(
    ("text", "slug"),
    [
        ("Hello, World!", "hello-world"),
        ("  Crème Brûlée  ", "creme-brulee"),
        ("Straße 5", "strae-5"),
        ("already-a-slug", "already-a-slug"),
        ("a -- b __ c", "a-b-c"),
        ("ＡＢＣ１２３", "abc123"),
    ],
)
def test_slugify_folds_to_lowercase_ascii_words_joined_by_hyphens(text: str, slug: str) -> None:
    assert slugify(text) == slug
    assert is_slug(slug)


@pytest.mark.parametrize("text", ["", "   ", "!!!", "日本語", "--"])
def test_slugify_never_answers_an_empty_slug(text: str) -> None:
    assert slugify(text) == "item"
    assert slugify(text, fallback="tag") == "tag"


def test_slugify_cuts_to_the_length_without_a_trailing_hyphen() -> None:
    assert slugify("abcd efgh", 5) == "abcd"
    assert slugify("abcdefgh", 5) == "abcde"


@pytest.mark.parametrize("value", ["", "A", "a--b", "-a", "a-", "a_b", "é"])
def test_is_slug_refuses_malformed_slugs(value: str) -> None:
    assert not is_slug(value)


async def test_a_free_slug_is_used_as_is(db: AsyncSession) -> None:
    assert await unique_slug(db, Tag.slug, "Fresh Name") == "fresh-name"


async def test_taken_slugs_get_the_next_free_number(db: AsyncSession) -> None:
    db.add_all([Tag(name="x", slug="news"), Tag(name="x", slug="news-2")])
    await db.flush()
    assert await unique_slug(db, Tag.slug, "News") == "news-3"


async def test_a_row_keeps_its_own_slug_when_excluded(db: AsyncSession) -> None:
    tag = Tag(name="own", slug="own")
    db.add(tag)
    await db.flush()
    assert await unique_slug(db, Tag.slug, "own") == "own-2"
    assert await unique_slug(db, Tag.slug, "own", exclude_id=tag.id) == "own"


async def test_scope_limits_where_a_slug_counts_as_taken(db: AsyncSession) -> None:
    db.add(Tag(name="Scoped", slug="scoped"))
    await db.flush()
    assert await unique_slug(db, Tag.slug, "scoped", scope=[Tag.name == "other"]) == "scoped"
    assert await unique_slug(db, Tag.slug, "scoped", scope=[Tag.name == "Scoped"]) == "scoped-2"


async def test_numbered_slugs_fit_the_column_length(db: AsyncSession) -> None:
    long_name = "y" * 60
    db.add(ContentType(name="long", slug="y" * 50))
    await db.flush()
    slug = await unique_slug(db, ContentType.slug, long_name)
    assert slug == "y" * 48 + "-2" and len(slug) == 50


async def test_the_search_goes_past_one_batch_of_numbers(db: AsyncSession) -> None:
    db.add_all(
        [Tag(name="b", slug="busy")] + [Tag(name="b", slug=f"busy-{n}") for n in range(2, 60)]
    )
    await db.flush()
    assert await unique_slug(db, Tag.slug, "busy") == "busy-60"
