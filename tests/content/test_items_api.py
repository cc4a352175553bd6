"""Content items over REST: CRUD, the role matrix, lifecycle, hierarchy, values, terms, history."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from handlers import keys
from realtime_cms.db import transaction
from realtime_cms.models.analytics import AuditLog
from realtime_cms.models.content import ContentItem, CustomFieldValue
from realtime_cms.models.sites import SiteUser
from realtime_cms.models.versions import VersionHistory
from tests.content.conftest import (
    COMPLETE,
    ITEMS,
    World,
    add_site,
    body_of,
    create_item,
    unique,
)
from tests.support.harness import Harness


def item_path(item_id: int, suffix: str = "") -> str:
    return f"{ITEMS}/{item_id}{suffix}"


async def patch(
    harness: Harness, item_id: int, role: str, expect: int, **fields: Any
) -> dict[str, Any]:
    response = await harness.call("PATCH", item_path(item_id), role=role, json=fields)
    body: dict[str, Any] = await body_of(response, expect)
    return body["data"] if expect == 200 else body


async def read(harness: Harness, item_id: int, role: str = "viewer") -> dict[str, Any]:
    data: dict[str, Any] = (
        await body_of(await harness.call("GET", item_path(item_id), role=role), 200)
    )["data"]
    return data


async def listed(harness: Harness, query: str) -> list[int]:
    body = await body_of(await harness.call("GET", f"{ITEMS}?{query}", role="viewer"), 200)
    return [entry["id"] for entry in body["data"]]


def errors_named(problem: dict[str, Any]) -> list[str]:
    return [error["loc"][-1] for error in problem["errors"]]


# Create and read


async def test_an_author_creates_a_draft_with_values_and_terms(
    harness: Harness, world: World
) -> None:
    item = await create_item(
        harness,
        world,
        role="author",
        title="Hello, World!",
        body="# Hi",
        excerpt="Short",
        custom_fields={"rating": 4.0, "topics": ["a"]},
        categories=[world.categories[1], world.categories[0]],
        tags=world.tags[:1],
    )
    assert item["author_id"] == harness.users["author"].id
    assert (item["status"], item["visibility"], item["published_at"]) == ("draft", "public", None)
    assert item["slug"].startswith("hello-world")
    assert item["body"] == "# Hi"
    assert item["custom_fields"] == {
        "subtitle": None,
        "rating": 4,
        "source": None,
        "topics": ["a"],
    }
    assert item["categories"] == sorted(world.categories) and item["tags"] == world.tags[:1]
    assert await read(harness, item["id"]) == item


async def test_slugs_are_generated_unique_per_type_and_a_taken_slug_is_a_conflict(
    harness: Harness, world: World
) -> None:
    title = f"Same title {unique()}"
    first = await create_item(harness, world, title=title)
    second = await create_item(harness, world, title=title)
    assert second["slug"] == f"{first['slug']}-2"
    problem = await create_item(harness, world, expect=409, slug=first["slug"])
    assert problem["code"] == "slug_taken"
    other_type = await create_item(harness, world, content_type_id=world.page, slug=first["slug"])
    assert other_type["slug"] == first["slug"]
    taken = await patch(harness, second["id"], "admin", 409, slug=first["slug"])
    assert taken["code"] == "slug_taken"


async def test_a_viewer_cannot_create_and_an_author_cannot_create_published(
    harness: Harness, world: World
) -> None:
    denied = await create_item(harness, world, role="viewer", expect=403)
    assert denied["code"] == "permission_denied"
    refused = await create_item(
        harness, world, role="author", expect=403, status="published", custom_fields=COMPLETE
    )
    assert refused["code"] == "permission_denied"


async def test_an_editor_creates_a_published_item_with_its_required_fields(
    harness: Harness, world: World
) -> None:
    item = await create_item(
        harness, world, role="editor", status="published", custom_fields=COMPLETE
    )
    assert item["status"] == "published" and item["published_at"]


async def test_publishing_without_required_fields_names_every_missing_one(
    harness: Harness, world: World
) -> None:
    problem = await create_item(harness, world, expect=422, status="published")
    assert problem["code"] == "missing_required_fields"
    assert errors_named(problem) == ["subtitle", "source"]
    draft = await create_item(harness, world, custom_fields={"subtitle": "only this"})
    problem = await patch(harness, draft["id"], "editor", 422, status="published")
    assert (problem["code"], errors_named(problem)) == ("missing_required_fields", ["source"])


async def test_invalid_field_values_are_all_named_and_nothing_is_written(
    harness: Harness, world: World
) -> None:
    before = await harness.scalar(sa.select(sa.func.count()).select_from(ContentItem))
    problem = await create_item(
        harness,
        world,
        expect=422,
        custom_fields={"rating": 9, "topics": ["z"], "nope": 1, "subtitle": "fine"},
    )
    assert problem["code"] == "invalid_field_values"
    assert sorted(errors_named(problem)) == ["nope", "rating", "topics"]
    after = await harness.scalar(sa.select(sa.func.count()).select_from(ContentItem))
    assert after == before


async def test_references_to_missing_sites_types_and_terms_are_refused(
    harness: Harness, world: World
) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"site_id": 987654321}, "site_not_found"),
        ({"content_type_id": 987654321}, "content_type_not_found"),
        ({"categories": [987654321]}, "unknown_categories"),
        ({"tags": [987654321]}, "unknown_tags"),
        ({"content_type_id": world.page, "tags": world.tags}, "tags_not_allowed"),
        ({"content_type_id": world.page, "categories": world.categories}, "categories_not_allowed"),
    ]
    for fields, code in cases:
        assert (await create_item(harness, world, expect=422, **fields))["code"] == code


async def test_members_only_sites_refuse_other_content_creators(
    harness: Harness, world: World
) -> None:
    site = await add_site(harness)
    async with transaction(harness.app[keys.SESSIONS]) as db:
        db.add(SiteUser(site_id=site, user_id=harness.users["editor"].id))
    refused = await create_item(harness, world, role="author", expect=403, site_id=site)
    assert refused["code"] == "not_site_member"
    await create_item(harness, world, role="editor", site_id=site)
    await create_item(harness, world, role="admin", site_id=site)


# The role matrix for changes


async def test_an_author_changes_their_own_item_but_not_anothers(
    harness: Harness, world: World
) -> None:
    own = await create_item(harness, world, role="author")
    others = await create_item(harness, world, role="editor")
    changed = await patch(harness, own["id"], "author", 200, title="Mine, renamed")
    assert changed["title"] == "Mine, renamed"
    denied = await patch(harness, others["id"], "author", 403, title="Not mine")
    assert denied["code"] == "permission_denied"
    assert (await read(harness, others["id"]))["title"] == others["title"]


async def test_a_viewer_reads_but_changes_nothing(harness: Harness, world: World) -> None:
    item = await create_item(harness, world)
    assert (await read(harness, item["id"], "viewer"))["id"] == item["id"]
    for method, suffix, payload in [
        ("PATCH", "", {"title": "x"}),
        ("PUT", "/fields", {"fields": {"rating": 1}}),
        ("PUT", "/tags", {"ids": []}),
        ("PUT", "/categories", {"ids": []}),
        ("DELETE", "", None),
    ]:
        response = await harness.call(
            method, item_path(item["id"], suffix), role="viewer", json=payload
        )
        assert (await body_of(response, 403))["code"] == "permission_denied", (method, suffix)


async def test_an_editor_changes_and_publishes_an_authors_item_and_the_author_cannot_publish(
    harness: Harness, world: World
) -> None:
    item = await create_item(harness, world, role="author", custom_fields=COMPLETE)
    denied = await patch(harness, item["id"], "author", 403, status="published")
    assert denied["code"] == "permission_denied"
    edited = await patch(harness, item["id"], "editor", 200, excerpt="By the editor")
    assert edited["excerpt"] == "By the editor"
    published = await patch(harness, item["id"], "editor", 200, status="published")
    assert published["status"] == "published"
    assert published["author_id"] == harness.users["author"].id


# Lifecycle


async def test_transitions_maintain_their_timestamps(harness: Harness, world: World) -> None:
    item = await create_item(harness, world, custom_fields=COMPLETE)
    published = await patch(harness, item["id"], "editor", 200, status="published")
    assert published["published_at"] and not published["archived_at"]
    archived = await patch(harness, item["id"], "editor", 200, status="archived")
    assert archived["archived_at"] and archived["published_at"] == published["published_at"]
    draft = await patch(harness, item["id"], "editor", 200, status="draft")
    assert (draft["published_at"], draft["archived_at"], draft["expired_at"]) == (None,) * 3
    await patch(harness, item["id"], "editor", 200, status="published")
    expired = await patch(harness, item["id"], "editor", 200, status="expired")
    assert expired["expired_at"] and expired["status"] == "expired"


async def test_forbidden_transitions_are_conflicts(harness: Harness, world: World) -> None:
    item = await create_item(harness, world, custom_fields=COMPLETE)
    for status in ("archived", "expired"):
        problem = await patch(harness, item["id"], "editor", 409, status=status)
        assert problem["code"] == "invalid_transition"
    await patch(harness, item["id"], "editor", 200, status="published")
    problem = await patch(harness, item["id"], "editor", 409, status="draft")
    assert problem["code"] == "invalid_transition"


async def test_scheduling_takes_a_future_publication_time(harness: Harness, world: World) -> None:
    item = await create_item(harness, world, custom_fields=COMPLETE)
    missing = await patch(harness, item["id"], "editor", 422, status="scheduled")
    assert missing["code"] == "publish_date_required"
    past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    problem = await patch(harness, item["id"], "editor", 422, status="scheduled", published_at=past)
    assert problem["code"] == "schedule_in_past"
    for ancient in ("0001-01-01T00:00:00+14:00", "1000-01-01T00:00:00Z"):
        problem = await patch(
            harness, item["id"], "editor", 422, status="published", published_at=ancient
        )
        assert problem["code"] == "invalid_published_at"
    later = (datetime.now(UTC) + timedelta(days=3)).replace(microsecond=0)
    scheduled = await patch(
        harness, item["id"], "editor", 200, status="scheduled", published_at=later.isoformat()
    )
    assert scheduled["status"] == "scheduled"
    assert datetime.fromisoformat(scheduled["published_at"]) == later
    published = await patch(harness, item["id"], "editor", 200, status="published")
    assert datetime.fromisoformat(published["published_at"]) < later


# Hierarchy


async def test_parents_belong_to_hierarchical_types_and_cycles_are_refused(
    harness: Harness, world: World
) -> None:
    article = await create_item(harness, world)
    flat = await create_item(harness, world, expect=422, parent_id=article["id"])
    assert flat["code"] == "not_hierarchical"
    root = await create_item(harness, world, content_type_id=world.page)
    child = await create_item(harness, world, content_type_id=world.page, parent_id=root["id"])
    grandchild = await create_item(
        harness, world, content_type_id=world.page, parent_id=child["id"]
    )
    cycle = await patch(harness, root["id"], "admin", 409, parent_id=grandchild["id"])
    assert cycle["code"] == "content_cycle"
    itself = await patch(harness, root["id"], "admin", 409, parent_id=root["id"])
    assert itself["code"] == "content_cycle"
    wrong = await create_item(
        harness, world, expect=422, content_type_id=world.page, parent_id=article["id"]
    )
    assert wrong["code"] == "invalid_parent"
    moved = await patch(harness, grandchild["id"], "admin", 200, parent_id=None)
    assert moved["parent_id"] is None
    assert await listed(harness, f"filter[parent_id]={root['id']}") == [child["id"]]
    blocked = await body_of(await harness.call("DELETE", item_path(root["id"]), role="admin"), 409)
    assert blocked["code"] == "content_has_children"


async def test_moving_an_item_to_another_site_follows_the_site_rule(
    harness: Harness, world: World
) -> None:
    closed = await add_site(harness)
    async with transaction(harness.app[keys.SESSIONS]) as db:
        db.add(SiteUser(site_id=closed, user_id=harness.users["editor"].id))
    item = await create_item(harness, world, role="author")
    refused = await patch(harness, item["id"], "author", 403, site_id=closed)
    assert refused["code"] == "not_site_member"
    moved = await patch(harness, item["id"], "editor", 200, site_id=closed)
    assert moved["site_id"] == closed


# Visibility and password


async def test_a_password_is_required_stored_hashed_and_never_returned(
    harness: Harness, world: World
) -> None:
    missing = await create_item(harness, world, expect=422, visibility="password")
    assert missing["code"] == "password_required"
    stray = await create_item(harness, world, expect=422, password="not applicable")
    assert stray["code"] == "password_not_applicable"
    item = await create_item(harness, world, visibility="password", password="s3cret")
    stored = await harness.scalar(
        sa.select(ContentItem.password).where(ContentItem.id == item["id"])
    )
    assert stored.startswith("$argon2id$")
    response = await harness.call("GET", item_path(item["id"]), role="admin")
    assert "argon2" not in await response.text() and "password" not in item
    public = await patch(harness, item["id"], "admin", 200, visibility="public")
    assert public["visibility"] == "public"
    assert (
        await harness.scalar(sa.select(ContentItem.password).where(ContentItem.id == item["id"]))
        is None
    )


# Listing


async def test_items_filter_by_every_documented_field(harness: Harness, world: World) -> None:
    word = unique()
    a = await create_item(
        harness,
        world,
        role="author",
        title=f"Alpha {word}",
        categories=world.categories[:1],
        tags=world.tags[:1],
    )
    b = await create_item(
        harness,
        world,
        role="editor",
        title=f"Beta {word}",
        excerpt=f"mentions {word.upper()}",
        status="published",
        custom_fields=COMPLETE,
        tags=world.tags,
    )
    mine = f"filter[id][in]={a['id']},{b['id']}"
    assert await listed(harness, f"{mine}&filter[status]=published") == [b["id"]]
    author = harness.users["author"].id
    assert await listed(harness, f"{mine}&filter[author_id]={author}") == [a["id"]]
    assert await listed(harness, f"{mine}&filter[category_id]={world.categories[0]}") == [a["id"]]
    assert await listed(harness, f"{mine}&filter[tag_id][in]={world.tags[1]}") == [b["id"]]
    assert await listed(harness, f"filter[title][contains]=alpha {word}") == [a["id"]]
    assert await listed(harness, f"q={word}&sort=-id") == [b["id"], a["id"]]
    since = b["published_at"].replace("+00:00", "Z")
    assert await listed(harness, f"{mine}&filter[published_at][gte]={since}") == [b["id"]]
    assert await listed(harness, f"{mine}&filter[published_at][lte]=2000-01-01T00:00:00Z") == []
    assert await listed(harness, f"{mine}&filter[content_type_id]={world.page}") == []
    body = await body_of(await harness.call("GET", f"{ITEMS}?{mine}", role="viewer"), 200)
    assert all("body" not in entry for entry in body["data"])
    assert body["data"][0]["custom_fields"]["subtitle"] is None


# Custom field values and terms


async def test_field_values_are_read_set_and_removed(harness: Harness, world: World) -> None:
    item = await create_item(harness, world, role="author", custom_fields={"rating": 2})
    path = item_path(item["id"], "/fields")
    read_back = await body_of(await harness.call("GET", path, role="viewer"), 200)
    assert read_back["data"]["fields"]["rating"] == 2
    response = await harness.call(
        "PUT", path, role="author", json={"fields": {"rating": None, "subtitle": "New"}}
    )
    fields = (await body_of(response, 200))["data"]["fields"]
    assert (fields["rating"], fields["subtitle"]) == (None, "New")
    stored = await harness.scalar(
        sa.select(sa.func.count())
        .select_from(CustomFieldValue)
        .where(
            CustomFieldValue.content_item_id == item["id"],
            CustomFieldValue.field_value.is_not(None),
        )
    )
    assert stored == 1
    bad = await harness.call("PUT", path, role="author", json={"fields": {"rating": "high"}})
    assert errors_named(await body_of(bad, 422)) == ["rating"]


async def test_a_published_item_keeps_its_required_fields(harness: Harness, world: World) -> None:
    item = await create_item(harness, world, status="published", custom_fields=COMPLETE)
    response = await harness.call(
        "PUT", item_path(item["id"], "/fields"), role="admin", json={"fields": {"source": None}}
    )
    problem = await body_of(response, 422)
    assert (problem["code"], errors_named(problem)) == ("missing_required_fields", ["source"])


async def test_body_changes_go_through_the_live_document(harness: Harness, world: World) -> None:
    item = await create_item(harness, world, role="author", body="one two three")
    changed = await patch(harness, item["id"], "author", 200, body="one 2 three")
    assert changed["body"] == "one 2 three"
    state = await harness.app[keys.CONTENT].current(item["id"])
    assert state.body == "one 2 three" and state.fields["title"] == item["title"]


async def test_categories_and_tags_are_replaced_and_respect_the_types_flags(
    harness: Harness, world: World
) -> None:
    item = await create_item(harness, world, role="author", tags=world.tags)
    response = await harness.call(
        "PUT", item_path(item["id"], "/tags"), role="author", json={"ids": world.tags[1:]}
    )
    assert (await body_of(response, 200))["data"] == {"item_id": item["id"], "ids": world.tags[1:]}
    response = await harness.call(
        "PUT",
        item_path(item["id"], "/categories"),
        role="author",
        json={"ids": world.categories},
    )
    assert (await body_of(response, 200))["data"]["ids"] == world.categories
    assert (await read(harness, item["id"]))["tags"] == world.tags[1:]
    page = await create_item(harness, world, content_type_id=world.page)
    refused = await harness.call(
        "PUT", item_path(page["id"], "/categories"), role="admin", json={"ids": world.categories}
    )
    assert (await body_of(refused, 422))["code"] == "categories_not_allowed"


# Optimistic concurrency input


async def test_unknown_base_versions_are_refused(harness: Harness, world: World) -> None:
    item = await create_item(harness, world)
    problem = await patch(harness, item["id"], "admin", 422, title="x", base_version=987654321)
    assert problem["code"] == "unknown_base_version"
    response = await harness.call(
        "PATCH",
        item_path(item["id"]),
        role="admin",
        json={"title": "x"},
        headers={"If-Match": '"' + "0" * 64 + '"'},
    )
    assert (await body_of(response, 412))["code"] == "unknown_base_version"
    assert (await read(harness, item["id"]))["title"] == item["title"]


# Delete, audit and history


async def test_an_author_deletes_their_own_item_but_not_anothers(
    harness: Harness, world: World
) -> None:
    own = await create_item(harness, world, role="author")
    others = await create_item(harness, world, role="editor")
    denied = await harness.call("DELETE", item_path(others["id"]), role="author")
    assert (await body_of(denied, 403))["code"] == "permission_denied"
    await patch(harness, own["id"], "author", 200, body="typed before deletion")
    assert (await harness.call("DELETE", item_path(own["id"]), role="author")).status == 204
    gone = await harness.call("GET", item_path(own["id"]), role="admin")
    assert (await body_of(gone, 404))["code"] == "content_not_found"
    document = await harness.call("GET", f"/api/v1/documents/content:{own['id']}", role="admin")
    assert (await body_of(document, 404))["code"] == "document_not_found"


async def test_every_change_is_audited_and_recorded_with_old_and_new_values(
    harness: Harness, world: World
) -> None:
    item = await create_item(harness, world, role="author", title="Before")
    await patch(harness, item["id"], "author", 200, title="After")
    await patch(harness, item["id"], "admin", 200, visibility="password", password="pw")
    assert (await harness.call("DELETE", item_path(item["id"]), role="admin")).status == 204
    async with transaction(harness.app[keys.SESSIONS]) as db:
        rows = (
            await db.scalars(
                sa.select(VersionHistory)
                .where(
                    VersionHistory.entity_type == "content_item",
                    VersionHistory.entity_id == item["id"],
                )
                .order_by(VersionHistory.version_number)
            )
        ).all()
        actions = (
            await db.scalars(
                sa.select(AuditLog.action_type)
                .where(AuditLog.entity_type == "content_item", AuditLog.entity_id == item["id"])
                .order_by(AuditLog.id)
            )
        ).all()
    assert [row.change_type for row in rows] == ["create", "update", "update", "delete"]
    title_change = rows[1]
    assert json.loads(title_change.old_value or "{}")["title"] == "Before"
    assert json.loads(title_change.new_value or "{}")["title"] == "After"
    assert json.loads(rows[2].new_value or "{}")["password"] == "(changed)"
    assert "argon2" not in "".join(row.new_value or "" for row in rows)
    assert list(actions) == [
        "content_item.create",
        "content_item.update",
        "content_item.update",
        "content_item.delete",
    ]
