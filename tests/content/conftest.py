"""Fixtures for content tests: a site, two content types with custom fields, and terms."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

import pytest

from handlers import keys
from realtime_cms.db import transaction
from realtime_cms.models.content import Category, ContentType, CustomField, Tag
from realtime_cms.models.sites import Site
from tests.support.harness import Harness

ITEMS = "/api/v1/content-items"


def unique() -> str:
    return uuid.uuid4().hex[:10]


@dataclass
class World:
    """What content tests build on; `article` takes terms and fields, `page` is hierarchical."""

    site: int
    inactive_site: int
    article: int
    article_slug: str
    page: int
    page_slug: str
    categories: list[int]
    tags: list[int]


async def add_site(harness: Harness, *, active: bool = True) -> int:
    async with transaction(harness.app[keys.SESSIONS]) as db:
        token = unique()
        site = Site(name=f"Site {token}", domain=f"{token}.example.com", is_active=active)
        db.add(site)
        await db.flush()
        return site.id


def _field(type_id: int, name: str, field_type: str, **extra: Any) -> CustomField:
    options = extra.pop("options", None)
    return CustomField(
        content_type_id=type_id,
        field_name=name,
        field_label=name.title(),
        field_type=field_type,
        options=json.dumps(options) if options is not None else None,
        **extra,
    )


@pytest.fixture(scope="module")
async def world(harness: Harness) -> World:
    site = await add_site(harness)
    inactive = await add_site(harness, active=False)
    token = unique()
    async with transaction(harness.app[keys.SESSIONS]) as db:
        article = ContentType(name=f"Article {token}", slug=f"article-{token}")
        page = ContentType(
            name=f"Page {token}",
            slug=f"page-{token}",
            is_hierarchical=True,
            has_tags=False,
            has_categories=False,
        )
        terms = [Category(name=f"C{n}", slug=f"c{n}-{token}") for n in range(2)]
        tags = [Tag(name=f"T{n}", slug=f"t{n}-{token}") for n in range(2)]
        db.add_all([article, page, *terms, *tags])
        await db.flush()
        db.add_all(
            [
                _field(article.id, "subtitle", "text", is_required=True),
                _field(article.id, "rating", "number", options={"min": 0, "max": 5}),
                _field(article.id, "source", "url", is_required=True),
                _field(article.id, "topics", "multiselect", options={"choices": ["a", "b"]}),
            ]
        )
        return World(
            site=site,
            inactive_site=inactive,
            article=article.id,
            article_slug=article.slug,
            page=page.id,
            page_slug=page.slug,
            categories=[term.id for term in terms],
            tags=[tag.id for tag in tags],
        )


async def body_of(response: Any, status: int) -> Any:
    body = await response.json(content_type=None)
    assert response.status == status, body
    return body


async def create_item(
    harness: Harness, world: World, role: str = "admin", expect: int = 201, **fields: Any
) -> dict[str, Any]:
    """POST an article (by default) on the world's site; answers `data` (or the problem)."""
    payload = {
        "site_id": world.site,
        "content_type_id": world.article,
        "title": f"Item {unique()}",
        **fields,
    }
    body = await body_of(await harness.call("POST", ITEMS, role=role, json=payload), expect)
    return dict(body["data"]) if expect == 201 else dict(body)


COMPLETE = {"subtitle": "Sub", "source": "https://example.com/a"}
