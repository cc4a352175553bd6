"""Categories and tags over REST: the tree, moves without cycles, re-parenting on delete,
slugs and uniqueness, listings, permissions, and the audit and version trails."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
import sqlalchemy as sa

from handlers import keys
from realtime_cms.content.taxonomy import MAX_DEPTH
from realtime_cms.db import transaction
from realtime_cms.history import history_of
from realtime_cms.models.content import (
    ContentItem,
    ContentItemCategory,
    ContentItemTag,
    ContentType,
)
from realtime_cms.models.sites import Site
from tests.support.harness import Harness

CATEGORIES = "/api/v1/categories"
TAGS = "/api/v1/tags"


def unique() -> str:
    return uuid.uuid4().hex[:10]


async def body_of(response: Any, status: int) -> Any:
    body = await response.json(content_type=None) if response.status != 204 else None
    assert response.status == status, body
    return body


async def create(harness: Harness, collection: str, **fields: Any) -> dict[str, Any]:
    payload = {"name": f"Term {unique()}", **fields}
    response = await harness.call("POST", collection, role="editor", json=payload)
    created: dict[str, Any] = (await body_of(response, 201))["data"]
    return created


async def patch(harness: Harness, path: str, changes: dict[str, Any], status: int = 200) -> Any:
    return await body_of(await harness.call("PATCH", path, role="editor", json=changes), status)


async def assign(
    harness: Harness, *, category_id: int | None = None, tag_id: int | None = None
) -> int:
    """A new item carrying the category or tag; answers the item's id."""
    async with transaction(harness.app[keys.SESSIONS]) as db:
        site = Site(name=f"Site {unique()}", domain=f"{unique()}.example.com")
        content_type = ContentType(name=f"Type {unique()}", slug=f"type-{unique()}")
        db.add_all([site, content_type])
        await db.flush()
        item = ContentItem(
            site_id=site.id,
            content_type_id=content_type.id,
            author_id=harness.users["admin"].id,
            title="Item",
            slug="item",
        )
        db.add(item)
        await db.flush()
        if category_id is not None:
            db.add(ContentItemCategory(content_item_id=item.id, category_id=category_id))
        if tag_id is not None:
            db.add(ContentItemTag(content_item_id=item.id, tag_id=tag_id))
        return item.id


async def audit_details(harness: Harness, action: str, entity_id: int) -> dict[str, Any]:
    query = f"filter[action_type]={action}&filter[entity_id]={entity_id}"
    body = await body_of(await harness.call("GET", f"/api/v1/audit-log?{query}", role="admin"), 200)
    assert body["data"], (action, entity_id)
    assert body["data"][0]["user_id"] == harness.users["editor"].id
    details: dict[str, Any] = json.loads(body["data"][0]["details"])
    return details


async def history(harness: Harness, entity: str, entity_id: int) -> list[tuple[str, Any, Any]]:
    async with transaction(harness.app[keys.SESSIONS]) as db:
        rows = await history_of(db, entity, entity_id)
    return [
        (
            row.change_type,
            json.loads(row.old_value) if row.old_value else None,
            json.loads(row.new_value) if row.new_value else None,
        )
        for row in rows
    ]


def cat(category_id: int) -> str:
    return f"{CATEGORIES}/{category_id}"


# Categories


async def test_a_category_is_created_under_a_parent_with_a_generated_slug(harness: Harness) -> None:
    token = unique()
    parent = await create(harness, CATEGORIES, name=f"Sport {token}", description="All sport")
    child = await create(harness, CATEGORIES, name=f"Ski & Snow {token}", parent_id=parent["id"])
    assert (parent["slug"], parent["description"], parent["parent_id"]) == (
        f"sport-{token}",
        "All sport",
        None,
    )
    assert (child["slug"], child["parent_id"]) == (f"ski-snow-{token}", parent["id"])
    read = await body_of(await harness.call("GET", cat(child["id"]), role="viewer"), 200)
    assert read["data"] == child


async def test_category_slugs_are_unique_and_names_may_repeat(harness: Harness) -> None:
    name = f"News {unique()}"
    first = await create(harness, CATEGORIES, name=name)
    second = await create(harness, CATEGORIES, name=name)
    assert second["slug"] == f"{first['slug']}-2"
    response = await harness.call(
        "POST", CATEGORIES, role="editor", json={"name": "x", "slug": first["slug"]}
    )
    assert (await body_of(response, 409))["code"] == "slug_exists"
    assert (await patch(harness, cat(second["id"]), {"slug": first["slug"]}, 409))[
        "code"
    ] == "slug_exists"


async def test_a_missing_parent_is_refused(harness: Harness) -> None:
    response = await harness.call(
        "POST", CATEGORIES, role="editor", json={"name": "Orphan", "parent_id": 987654}
    )
    body = await body_of(response, 422)
    assert body["code"] == "parent_not_found" and body["errors"][0]["loc"] == ["body", "parent_id"]
    created = await create(harness, CATEGORIES)
    assert (await patch(harness, cat(created["id"]), {"parent_id": 987654}, 422))[
        "code"
    ] == "parent_not_found"


@pytest.mark.parametrize("parent_id", [0, -1, 2**63, "one"])
async def test_a_malformed_parent_id_is_refused(harness: Harness, parent_id: Any) -> None:
    response = await harness.call(
        "POST", CATEGORIES, role="editor", json={"name": "x", "parent_id": parent_id}
    )
    await body_of(response, 422)


async def test_an_unknown_category_is_not_found(harness: Harness) -> None:
    for method in ("GET", "DELETE"):
        await body_of(await harness.call(method, cat(987654), role="editor"), 404)
    await patch(harness, cat(987654), {"name": "x"}, 404)


async def test_categories_are_listed_with_filters(harness: Harness) -> None:
    token = unique()
    root = await create(harness, CATEGORIES, name=f"Root {token}")
    kids = [
        await create(harness, CATEGORIES, name=f"Kid {n} {token}", parent_id=root["id"])
        for n in range(2)
    ]
    query = f"filter[parent_id]={root['id']}&sort=-name"
    body = await body_of(await harness.call("GET", f"{CATEGORIES}?{query}", role="author"), 200)
    assert [c["id"] for c in body["data"]] == [kids[1]["id"], kids[0]["id"]]
    query = f"filter[name][contains]={token}&filter[parent_id][null]=true"
    body = await body_of(await harness.call("GET", f"{CATEGORIES}?{query}", role="viewer"), 200)
    assert [c["id"] for c in body["data"]] == [root["id"]]


async def test_the_tree_nests_children_under_their_parents_sorted_by_name(
    harness: Harness,
) -> None:
    token = unique()
    root = await create(harness, CATEGORIES, name=f"Zz tree {token}")
    beta = await create(harness, CATEGORIES, name="beta", parent_id=root["id"])
    alpha = await create(harness, CATEGORIES, name="Alpha", parent_id=root["id"])
    leaf = await create(harness, CATEGORIES, name="leaf", parent_id=beta["id"])
    body = await body_of(await harness.call("GET", f"{CATEGORIES}/tree", role="viewer"), 200)
    node = next(n for n in body["data"] if n["id"] == root["id"])
    assert [c["id"] for c in node["children"]] == [alpha["id"], beta["id"]]
    assert node["children"][1]["children"] == [
        {
            "id": leaf["id"],
            "name": "leaf",
            "slug": leaf["slug"],
            "description": None,
            "parent_id": beta["id"],
            "children": [],
        }
    ]
    assert all(n["parent_id"] is None for n in body["data"])
    assert body["meta"]["total"] == len(body["data"])


async def test_a_category_moves_to_another_parent_and_to_the_top(harness: Harness) -> None:
    first, second = await create(harness, CATEGORIES), await create(harness, CATEGORIES)
    child = await create(harness, CATEGORIES, parent_id=first["id"])
    moved = await patch(harness, cat(child["id"]), {"parent_id": second["id"]})
    assert moved["data"]["parent_id"] == second["id"]
    top = await patch(harness, cat(child["id"]), {"parent_id": None, "description": "top"})
    assert (top["data"]["parent_id"], top["data"]["description"]) == (None, "top")
    assert top["data"]["slug"] == child["slug"]


async def test_a_move_under_itself_or_a_descendant_is_a_cycle(harness: Harness) -> None:
    root = await create(harness, CATEGORIES)
    middle = await create(harness, CATEGORIES, parent_id=root["id"])
    leaf = await create(harness, CATEGORIES, parent_id=middle["id"])
    for target in (root["id"], middle["id"], leaf["id"]):
        body = await patch(harness, cat(root["id"]), {"parent_id": target}, 409)
        assert body["code"] == "category_cycle"
    assert (await patch(harness, cat(middle["id"]), {"parent_id": leaf["id"]}, 409))[
        "code"
    ] == "category_cycle"
    read = await body_of(await harness.call("GET", cat(root["id"]), role="viewer"), 200)
    assert read["data"]["parent_id"] is None


async def test_the_tree_is_at_most_max_depth_levels_deep(harness: Harness) -> None:
    chain = [await create(harness, CATEGORIES)]
    for _ in range(MAX_DEPTH - 1):
        chain.append(await create(harness, CATEGORIES, parent_id=chain[-1]["id"]))
    response = await harness.call(
        "POST", CATEGORIES, role="editor", json={"name": "deep", "parent_id": chain[-1]["id"]}
    )
    assert (await body_of(response, 422))["code"] == "category_too_deep"
    other = await create(harness, CATEGORIES)
    await create(harness, CATEGORIES, parent_id=other["id"])
    body = await patch(harness, cat(other["id"]), {"parent_id": chain[-2]["id"]}, 422)
    assert body["code"] == "category_too_deep"
    tree = await body_of(await harness.call("GET", f"{CATEGORIES}/tree", role="viewer"), 200)
    assert any(node["id"] == chain[0]["id"] for node in tree["data"])


async def test_deleting_a_category_lifts_its_children_and_unassigns_its_items(
    harness: Harness,
) -> None:
    root = await create(harness, CATEGORIES)
    doomed = await create(harness, CATEGORIES, parent_id=root["id"])
    kids = [await create(harness, CATEGORIES, parent_id=doomed["id"]) for _ in range(2)]
    grandchild = await create(harness, CATEGORIES, parent_id=kids[0]["id"])
    item_id = await assign(harness, category_id=doomed["id"])
    await body_of(await harness.call("DELETE", cat(doomed["id"]), role="editor"), 204)
    for kid in kids:
        read = await body_of(await harness.call("GET", cat(kid["id"]), role="viewer"), 200)
        assert read["data"]["parent_id"] is None
        assert (await history(harness, "category", kid["id"]))[-1] == (
            "update",
            {"parent_id": doomed["id"]},
            {"parent_id": None},
        )
    read = await body_of(await harness.call("GET", cat(grandchild["id"]), role="viewer"), 200)
    assert read["data"]["parent_id"] == kids[0]["id"]
    assigned = await harness.scalar(
        sa.select(sa.func.count())
        .select_from(ContentItemCategory)
        .where(ContentItemCategory.content_item_id == item_id)
    )
    assert assigned == 0
    details = await audit_details(harness, "category.delete", doomed["id"])
    assert sorted(details["children"]) == sorted(k["id"] for k in kids)
    assert details["items_unassigned"] == 1


async def test_category_changes_are_audited_and_versioned(harness: Harness) -> None:
    parent = await create(harness, CATEGORIES)
    created = await create(harness, CATEGORIES, name="Before")
    await patch(harness, cat(created["id"]), {"name": "After", "parent_id": parent["id"]})
    await body_of(await harness.call("DELETE", cat(created["id"]), role="editor"), 204)
    entries = await history(harness, "category", created["id"])
    assert [entry[0] for entry in entries] == ["create", "update", "delete"]
    assert entries[0][2] == {
        "name": "Before",
        "slug": created["slug"],
        "description": None,
        "parent_id": None,
    }
    assert entries[1][1:] == (
        {"name": "Before", "parent_id": None},
        {"name": "After", "parent_id": parent["id"]},
    )
    details = await audit_details(harness, "category.update", created["id"])
    assert details["new"] == {"name": "After", "parent_id": parent["id"]}
    assert (await audit_details(harness, "category.create", created["id"]))["name"] == "Before"


# Tags


async def test_a_tag_gets_a_slug_and_its_name_is_unique_regardless_of_case(
    harness: Harness,
) -> None:
    name = f"Python {unique()}"
    created = await create(harness, TAGS, name=name)
    assert created["slug"] == name.lower().replace(" ", "-")
    response = await harness.call("POST", TAGS, role="editor", json={"name": name.upper()})
    assert (await body_of(response, 409))["code"] == "tag_exists"
    other = await create(harness, TAGS, name=f"{name}!")
    assert other["slug"] == f"{created['slug']}-2"
    read = await body_of(await harness.call("GET", f"{TAGS}/{created['id']}", role="viewer"), 200)
    assert read["data"] == created


async def test_a_tag_is_renamed_keeping_its_slug_and_may_take_a_free_slug(
    harness: Harness,
) -> None:
    taken, created = await create(harness, TAGS), await create(harness, TAGS)
    path = f"{TAGS}/{created['id']}"
    renamed = (await patch(harness, path, {"name": "Renamed " + unique()}))["data"]
    assert renamed["slug"] == created["slug"]
    slug = f"new-{unique()}"
    assert (await patch(harness, path, {"slug": slug}))["data"]["slug"] == slug
    for changes, status, code in (
        ({"slug": taken["slug"]}, 409, "slug_exists"),
        ({"name": taken["name"]}, 409, "tag_exists"),
        ({"name": None}, 422, "validation_failed"),
        ({"slug": "Not A Slug"}, 422, "validation_failed"),
    ):
        assert (await patch(harness, path, changes, status))["code"] == code


async def test_tags_are_listed_with_contains_filters_and_pages(harness: Harness) -> None:
    token = unique()
    made = [await create(harness, TAGS, name=f"{token} tag {n}") for n in range(3)]
    query = f"filter[name][contains]={token.upper()}&sort=-id&limit=2&offset=1"
    body = await body_of(await harness.call("GET", f"{TAGS}?{query}", role="viewer"), 200)
    assert [t["id"] for t in body["data"]] == [made[1]["id"], made[0]["id"]]
    assert body["meta"] == {"total": 3, "limit": 2, "offset": 1}
    query = f"filter[slug]={made[2]['slug']}"
    body = await body_of(await harness.call("GET", f"{TAGS}?{query}", role="viewer"), 200)
    assert [t["id"] for t in body["data"]] == [made[2]["id"]]


async def test_deleting_a_tag_unassigns_its_items_and_is_versioned(harness: Harness) -> None:
    created = await create(harness, TAGS)
    item_id = await assign(harness, tag_id=created["id"])
    path = f"{TAGS}/{created['id']}"
    await body_of(await harness.call("DELETE", path, role="editor"), 204)
    await body_of(await harness.call("GET", path, role="editor"), 404)
    assigned = await harness.scalar(
        sa.select(sa.func.count())
        .select_from(ContentItemTag)
        .where(ContentItemTag.content_item_id == item_id)
    )
    assert assigned == 0
    assert (await audit_details(harness, "tag.delete", created["id"]))["items_unassigned"] == 1
    entries = await history(harness, "tag", created["id"])
    assert [entry[0] for entry in entries] == ["create", "delete"]
    assert entries[1][1] == {"name": created["name"], "slug": created["slug"]}


# Who may do what


@pytest.mark.parametrize(
    ("role", "may_write"),
    [("viewer", False), ("author", False), ("editor", True), ("admin", True)],
)
async def test_every_role_reads_taxonomy_and_only_taxonomy_managers_change_it(
    harness: Harness, role: str, may_write: bool
) -> None:
    category, tag = await create(harness, CATEGORIES), await create(harness, TAGS)
    for path in (CATEGORIES, f"{CATEGORIES}/tree", cat(category["id"]), TAGS):
        await body_of(await harness.call("GET", path, role=role), 200)
    await body_of(await harness.call("GET", f"{TAGS}/{tag['id']}", role=role), 200)
    writes = [
        ("POST", CATEGORIES, {"name": unique()}, 201),
        ("PATCH", cat(category["id"]), {"description": role}, 200),
        ("DELETE", cat(category["id"]), None, 204),
        ("POST", TAGS, {"name": unique()}, 201),
        ("PATCH", f"{TAGS}/{tag['id']}", {"name": unique()}, 200),
        ("DELETE", f"{TAGS}/{tag['id']}", None, 204),
    ]
    for method, path, payload, status in writes:
        response = await harness.call(method, path, role=role, json=payload)
        if may_write:
            await body_of(response, status)
        else:
            assert (await body_of(response, 403))["code"] == "permission_denied", (method, path)
