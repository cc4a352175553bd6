"""Public delivery: only published public or password-unlocked items of active sites, no auth."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from realtime_cms.models.content import ContentItem
from tests.content.conftest import COMPLETE, World, create_item, unique
from tests.support.harness import Harness


def items_path(site_id: int) -> str:
    return f"/api/v1/delivery/sites/{site_id}/items"


def item_path(world: World, slug: str, type_slug: str | None = None) -> str:
    return f"{items_path(world.site)}/{type_slug or world.article_slug}/{slug}"


async def published(harness: Harness, world: World, **fields: Any) -> dict[str, Any]:
    return await create_item(
        harness,
        world,
        role="editor",
        **{"status": "published", "custom_fields": COMPLETE, **fields},
    )


async def listed(harness: Harness, site_id: int, query: str = "") -> dict[str, Any]:
    response = await harness.call("GET", f"{items_path(site_id)}?{query}")
    body: dict[str, Any] = await response.json()
    assert response.status == 200, body
    return body


async def test_anyone_lists_published_public_items_without_signing_in(
    harness: Harness, world: World
) -> None:
    item = await published(harness, world, body="# Hello", excerpt="Short")
    body = await listed(harness, world.site, f"filter[id]={item['id']}")
    assert body["meta"]["total"] == 1
    (entry,) = body["data"]
    assert entry["slug"] == item["slug"] and entry["type"] == world.article_slug
    assert (entry["body"], entry["excerpt"], entry["password_protected"]) == (
        "# Hello",
        "Short",
        False,
    )
    assert entry["custom_fields"]["subtitle"] == "Sub"


async def test_drafts_private_archived_and_scheduled_items_are_never_delivered(
    harness: Harness, world: World
) -> None:
    later = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    hidden = [
        await create_item(harness, world, role="editor"),
        await published(harness, world, visibility="private"),
        await published(harness, world, status="scheduled", published_at=later),
    ]
    archived = await published(harness, world)
    response = await harness.call(
        "PATCH",
        f"/api/v1/content-items/{archived['id']}",
        role="editor",
        json={"status": "archived"},
    )
    assert response.status == 200, await response.json()
    hidden.append(archived)
    ids = ",".join(str(item["id"]) for item in hidden)
    assert (await listed(harness, world.site, f"filter[id][in]={ids}"))["data"] == []
    absent = await (await harness.call("GET", item_path(world, f"nothing-{unique()}"))).json()
    for item in hidden:
        response = await harness.call("GET", item_path(world, item["slug"]))
        problem = await response.json()
        assert response.status == 404
        assert (problem["code"], problem["detail"]) == (absent["code"], absent["detail"])


async def test_a_published_item_is_read_by_type_and_slug(harness: Harness, world: World) -> None:
    item = await published(harness, world, body="Body text", categories=world.categories[:1])
    response = await harness.call("GET", item_path(world, item["slug"]))
    body = await response.json()
    assert response.status == 200, body
    assert body["data"]["body"] == "Body text"
    assert body["data"]["categories"] == world.categories[:1]
    assert response.headers["Cache-Control"] == "public, max-age=60"
    wrong_type = await harness.call("GET", item_path(world, item["slug"], world.page_slug))
    assert wrong_type.status == 404


async def test_a_password_protected_item_needs_the_right_password(
    harness: Harness, world: World
) -> None:
    item = await published(
        harness, world, visibility="password", password="open sesame", body="Secret body"
    )
    assert "password" not in item
    stored = await harness.scalar(
        sa.select(ContentItem.password).where(ContentItem.id == item["id"])
    )
    assert stored.startswith("$argon2id$") and "open sesame" not in stored
    path = item_path(world, item["slug"])
    missing = await harness.call("GET", path)
    assert (missing.status, (await missing.json())["code"]) == (401, "content_password_required")
    wrong = await harness.call("GET", path, headers={"X-Content-Password": "guess"})
    assert (wrong.status, (await wrong.json())["code"]) == (403, "content_password_invalid")
    right = await harness.call("GET", path, headers={"X-Content-Password": "open sesame"})
    text = await right.text()
    assert right.status == 200, text
    assert "Secret body" in text and "$argon2" not in text
    assert right.headers["Cache-Control"] == "private, no-store"


async def test_password_protected_items_are_listed_without_their_content(
    harness: Harness, world: World
) -> None:
    item = await published(
        harness, world, visibility="password", password="pw", body="Hidden", excerpt="Also hidden"
    )
    (entry,) = (await listed(harness, world.site, f"filter[id]={item['id']}"))["data"]
    assert entry["password_protected"] is True
    assert (entry["body"], entry["excerpt"], entry["custom_fields"]) == (None, None, None)
    assert entry["title"] == item["title"]


async def test_inactive_and_unknown_sites_deliver_nothing(harness: Harness, world: World) -> None:
    for site_id in (world.inactive_site, 987654321):
        response = await harness.call("GET", items_path(site_id))
        assert (response.status, (await response.json())["code"]) == (404, "site_not_found")


async def test_delivery_filters_by_type_category_and_tag_and_paginates(
    harness: Harness, world: World
) -> None:
    tagged = await published(harness, world, tags=world.tags[:1], categories=world.categories)
    other = await published(harness, world, tags=world.tags[1:])
    ids = f"filter[id][in]={tagged['id']},{other['id']}"
    by_tag = await listed(harness, world.site, f"{ids}&filter[tag_id]={world.tags[0]}")
    assert [entry["id"] for entry in by_tag["data"]] == [tagged["id"]]
    by_category = await listed(
        harness, world.site, f"{ids}&filter[category_id][in]={world.categories[1]}"
    )
    assert [entry["id"] for entry in by_category["data"]] == [tagged["id"]]
    by_type = await listed(harness, world.site, f"{ids}&filter[type]={world.page_slug}")
    assert by_type["meta"]["total"] == 0
    first = await listed(harness, world.site, f"{ids}&sort=id&limit=1")
    second = await listed(harness, world.site, f"{ids}&sort=id&limit=1&offset=1")
    assert first["meta"]["total"] == 2
    assert [first["data"][0]["id"], second["data"][0]["id"]] == [tagged["id"], other["id"]]


async def test_delivery_refuses_unknown_filters(harness: Harness, world: World) -> None:
    for query in ("filter[status]=draft", "filter[visibility]=private", "sort=password"):
        response = await harness.call("GET", f"{items_path(world.site)}?{query}")
        assert response.status == 400, query
