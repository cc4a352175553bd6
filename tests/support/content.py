"""A site and a content type for a test module, and items in it inserted directly."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from handlers import keys
from realtime_cms.db import transaction
from realtime_cms.models.content import ContentItem, ContentType, CustomField
from realtime_cms.models.sites import Site
from tests.support.harness import Harness


def unique() -> str:
    return uuid.uuid4().hex[:10]


@dataclass(frozen=True)
class World:
    site: int
    content_type: int


async def new_world(harness: Harness, text_fields: Sequence[str] = ()) -> World:
    """A new site and content type (with these custom text fields)."""
    token = unique()
    async with transaction(harness.app[keys.SESSIONS]) as db:
        site = Site(name=f"Site {token}", domain=f"{token}.example.com")
        kind = ContentType(name=f"Post {token}", slug=f"post-{token}")
        db.add_all([site, kind])
        await db.flush()
        for name in text_fields:
            db.add(
                CustomField(
                    content_type_id=kind.id, field_name=name, field_label=name, field_type="text"
                )
            )
        return World(site.id, kind.id)


async def new_item(
    harness: Harness, world: World, *, role: str, body: str = "", **extra: Any
) -> int:
    """An item authored by the `role` user, inserted directly."""
    token = unique()
    async with transaction(harness.app[keys.SESSIONS]) as db:
        item = ContentItem(
            site_id=world.site,
            content_type_id=world.content_type,
            author_id=harness.users[role].id,
            title=extra.pop("title", f"Item {token}"),
            slug=f"item-{token}",
            content_body=body,
            **extra,
        )
        db.add(item)
        await db.flush()
        return item.id
