"""Content types and custom field definitions over REST: CRUD, slugs, uniqueness, options,
changes checked against stored values, permissions, and the audit and version trails."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
import sqlalchemy as sa

from handlers import keys
from realtime_cms.content.fields import encode_value
from realtime_cms.db import transaction
from realtime_cms.history import history_of
from realtime_cms.models.content import ContentItem, CustomField, CustomFieldValue
from realtime_cms.models.sites import Site
from tests.support.harness import Harness

TYPES = "/api/v1/content-types"


def unique() -> str:
    return uuid.uuid4().hex[:10]


async def body_of(response: Any, status: int) -> Any:
    body = await response.json(content_type=None) if response.status != 204 else None
    assert response.status == status, body
    return body


async def create_type(harness: Harness, **fields: Any) -> dict[str, Any]:
    payload = {"name": f"Type {unique()}", **fields}
    response = await harness.call("POST", TYPES, role="admin", json=payload)
    created: dict[str, Any] = (await body_of(response, 201))["data"]
    return created


async def create_field(harness: Harness, type_id: int, **fields: Any) -> dict[str, Any]:
    payload = {"field_name": f"f_{unique()}", "field_label": "A field", "field_type": "text"}
    payload.update(fields)
    response = await harness.call("POST", f"{TYPES}/{type_id}/fields", role="admin", json=payload)
    created: dict[str, Any] = (await body_of(response, 201))["data"]
    return created


async def store_values(harness: Harness, type_id: int, field_id: int, *values: Any) -> None:
    """One item of the type per value, each holding the value for the field (as B stores it)."""
    async with transaction(harness.app[keys.SESSIONS]) as db:
        site = Site(name=f"Site {unique()}", domain=f"{unique()}.example.com")
        db.add(site)
        await db.flush()
        for value in values:
            item = ContentItem(
                site_id=site.id,
                content_type_id=type_id,
                author_id=harness.users["admin"].id,
                title="An item",
                slug=f"item-{unique()}",
            )
            db.add(item)
            await db.flush()
            db.add(
                CustomFieldValue(
                    content_item_id=item.id,
                    custom_field_id=field_id,
                    field_value=encode_value(value),
                )
            )


async def audit_entry(harness: Harness, action: str, entity_id: int) -> dict[str, Any]:
    query = f"filter[action_type]={action}&filter[entity_id]={entity_id}"
    body = await body_of(await harness.call("GET", f"/api/v1/audit-log?{query}", role="admin"), 200)
    assert body["data"], (action, entity_id)
    entry: dict[str, Any] = body["data"][0]
    assert entry["user_id"] == harness.users["admin"].id
    return entry


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


# Content types: create, read, list, change, delete


async def test_an_admin_creates_a_type_with_a_slug_made_from_its_name(harness: Harness) -> None:
    token = unique()
    created = await create_type(harness, name=f"Blog Post {token}", description="Posts")
    assert created["slug"] == f"blog-post-{token}"
    assert (created["description"], created["is_hierarchical"]) == ("Posts", False)
    assert (created["has_tags"], created["has_categories"]) == (True, True)
    read = await harness.call("GET", f"{TYPES}/{created['id']}", role="viewer")
    assert (await body_of(read, 200))["data"] == created


async def test_a_generated_slug_that_is_taken_gets_a_number(harness: Harness) -> None:
    token = unique()
    first = await create_type(harness, name=f"Événement {token}!")
    second = await create_type(harness, name=f"Evenement {token}?")
    assert first["slug"] == f"evenement-{token}"
    assert second["slug"] == f"evenement-{token}-2"


async def test_an_explicit_slug_is_kept_and_a_taken_one_is_a_conflict(harness: Harness) -> None:
    slug = f"custom-{unique()}"
    assert (await create_type(harness, slug=slug))["slug"] == slug
    response = await harness.call(
        "POST", TYPES, role="admin", json={"name": unique(), "slug": slug}
    )
    assert (await body_of(response, 409))["code"] == "slug_exists"


@pytest.mark.parametrize("slug", ["Upper", "two--hyphens", "-edge", "with space", "x" * 51])
async def test_a_malformed_slug_is_refused(harness: Harness, slug: str) -> None:
    response = await harness.call(
        "POST", TYPES, role="admin", json={"name": unique(), "slug": slug}
    )
    body = await body_of(response, 422)
    assert body["errors"][0]["loc"][:2] == ["body", "slug"]


async def test_type_names_are_unique_regardless_of_case(harness: Harness) -> None:
    name = f"Page {unique()}"
    await create_type(harness, name=name)
    response = await harness.call("POST", TYPES, role="admin", json={"name": name.upper()})
    assert (await body_of(response, 409))["code"] == "content_type_exists"


@pytest.mark.parametrize(
    "payload", [{"name": ""}, {"name": "x" * 51}, {"name": "ok", "is_hierarchical": "maybe"}, {}]
)
async def test_invalid_type_bodies_are_refused(harness: Harness, payload: dict[str, Any]) -> None:
    await body_of(await harness.call("POST", TYPES, role="admin", json=payload), 422)


async def test_an_unknown_type_is_not_found(harness: Harness) -> None:
    for method in ("GET", "DELETE"):
        response = await harness.call(method, f"{TYPES}/987654", role="admin")
        assert (await body_of(response, 404))["code"] == "not_found"
    response = await harness.call("PATCH", f"{TYPES}/987654", role="admin", json={"name": "x"})
    await body_of(response, 404)


async def test_types_are_listed_with_filters_sorting_and_pages(harness: Harness) -> None:
    token = unique()
    made = [await create_type(harness, name=f"{token} {n}", has_tags=n != 1) for n in range(3)]
    query = f"filter[name][contains]={token}&sort=-id&limit=2"
    body = await body_of(await harness.call("GET", f"{TYPES}?{query}", role="author"), 200)
    assert [t["id"] for t in body["data"]] == [made[2]["id"], made[1]["id"]]
    assert body["meta"] == {"total": 3, "limit": 2, "offset": 0}
    query = f"filter[name][contains]={token}&filter[has_tags]=false"
    body = await body_of(await harness.call("GET", f"{TYPES}?{query}", role="viewer"), 200)
    assert [t["id"] for t in body["data"]] == [made[1]["id"]]


async def test_a_renamed_type_keeps_its_slug_unless_given_a_new_one(harness: Harness) -> None:
    created = await create_type(harness, description="old")
    path = f"{TYPES}/{created['id']}"
    new_name = f"Renamed {unique()}"
    patch = {"name": new_name, "has_categories": False, "description": None}
    changed = (await body_of(await harness.call("PATCH", path, role="admin", json=patch), 200))[
        "data"
    ]
    assert (changed["name"], changed["slug"], changed["description"]) == (
        new_name,
        created["slug"],
        None,
    )
    assert changed["has_categories"] is False and changed["has_tags"] is True
    slug = f"moved-{unique()}"
    moved = await harness.call("PATCH", path, role="admin", json={"slug": slug})
    assert (await body_of(moved, 200))["data"]["slug"] == slug


async def test_a_patch_cannot_take_a_used_name_or_slug_or_null_a_required_column(
    harness: Harness,
) -> None:
    taken = await create_type(harness)
    created = await create_type(harness)
    path = f"{TYPES}/{created['id']}"
    for patch, status, code in (
        ({"name": taken["name"]}, 409, "content_type_exists"),
        ({"slug": taken["slug"]}, 409, "slug_exists"),
        ({"name": None}, 422, "validation_failed"),
        ({"has_tags": None}, 422, "validation_failed"),
    ):
        response = await harness.call("PATCH", path, role="admin", json=patch)
        assert (await body_of(response, status))["code"] == code, patch
    same = await harness.call("PATCH", path, role="admin", json={"slug": created["slug"]})
    assert (await body_of(same, 200))["data"]["slug"] == created["slug"]


async def test_deleting_an_unused_type_removes_it_and_its_fields(harness: Harness) -> None:
    created = await create_type(harness)
    field = await create_field(harness, created["id"])
    await body_of(await harness.call("DELETE", f"{TYPES}/{created['id']}", role="admin"), 204)
    await body_of(await harness.call("GET", f"{TYPES}/{created['id']}", role="admin"), 404)
    assert (
        await harness.scalar(sa.select(CustomField.id).where(CustomField.id == field["id"])) is None
    )
    entry = await audit_entry(harness, "content_type.delete", created["id"])
    assert json.loads(entry["details"])["fields"] == [field["field_name"]]
    assert (await history(harness, "custom_field", field["id"]))[-1][0] == "delete"


async def test_a_type_in_use_is_not_deleted_and_the_answer_says_by_how_many(
    harness: Harness,
) -> None:
    created = await create_type(harness)
    field = await create_field(harness, created["id"])
    await store_values(harness, created["id"], field["id"], "a", "b")
    response = await harness.call("DELETE", f"{TYPES}/{created['id']}", role="admin")
    body = await body_of(response, 409)
    assert body["code"] == "content_type_in_use" and "2 content items" in body["detail"]
    await body_of(await harness.call("GET", f"{TYPES}/{created['id']}", role="admin"), 200)


async def test_type_changes_are_audited_and_versioned(harness: Harness) -> None:
    created = await create_type(harness, description="v1")
    path = f"{TYPES}/{created['id']}"
    await body_of(await harness.call("PATCH", path, role="admin", json={"description": "v2"}), 200)
    await body_of(await harness.call("PATCH", path, role="admin", json={"description": "v2"}), 200)
    await body_of(await harness.call("DELETE", path, role="admin"), 204)
    entries = await history(harness, "content_type", created["id"])
    assert [entry[0] for entry in entries] == ["create", "update", "delete"]
    assert entries[1][1:] == ({"description": "v1"}, {"description": "v2"})
    assert entries[2][1]["slug"] == created["slug"]
    update = await audit_entry(harness, "content_type.update", created["id"])
    assert json.loads(update["details"]) == {
        "old": {"description": "v1"},
        "new": {"description": "v2"},
    }
    assert (await audit_entry(harness, "content_type.create", created["id"]))["entity_type"] == (
        "content_type"
    )


# Who may do what


@pytest.mark.parametrize(
    ("role", "may_write"),
    [("viewer", False), ("author", False), ("editor", False), ("admin", True)],
)
async def test_every_role_reads_types_and_only_content_types_managers_change_them(
    harness: Harness, role: str, may_write: bool
) -> None:
    created = await create_type(harness)
    field = await create_field(harness, created["id"])
    type_path, field_path = f"{TYPES}/{created['id']}", f"{TYPES}/{created['id']}/fields"
    for path in (TYPES, type_path, field_path, f"{field_path}/{field['id']}"):
        await body_of(await harness.call("GET", path, role=role), 200)
    writes = [
        ("POST", TYPES, {"name": unique()}, 201),
        ("PATCH", type_path, {"description": role}, 200),
        ("POST", field_path, {"field_name": "extra", "field_label": "E", "field_type": "url"}, 201),
        ("PATCH", f"{field_path}/{field['id']}", {"field_label": role}, 200),
        ("DELETE", f"{field_path}/{field['id']}", None, 204),
        ("DELETE", type_path, None, 204),
    ]
    for method, path, payload, status in writes:
        response = await harness.call(method, path, role=role, json=payload)
        if may_write:
            await body_of(response, status)
        else:
            assert (await body_of(response, 403))["code"] == "permission_denied", (method, path)


# Custom field definitions


async def test_a_field_is_created_with_its_options_as_an_object(harness: Harness) -> None:
    type_id = (await create_type(harness))["id"]
    created = await create_field(
        harness,
        type_id,
        field_name="colour",
        field_label="Colour",
        field_type="select",
        options={"choices": ["red", "blue"], "default": "red"},
        is_required=True,
    )
    assert created["options"] == {"choices": ["red", "blue"], "default": "red"}
    assert (created["content_type_id"], created["is_required"]) == (type_id, True)
    path = f"{TYPES}/{type_id}/fields/{created['id']}"
    assert (await body_of(await harness.call("GET", path, role="viewer"), 200))["data"] == created
    stored = await harness.scalar(
        sa.select(CustomField.options).where(CustomField.id == created["id"])
    )
    assert json.loads(stored) == created["options"]


async def test_a_field_without_options_has_an_empty_object(harness: Harness) -> None:
    type_id = (await create_type(harness))["id"]
    assert (await create_field(harness, type_id, field_type="boolean"))["options"] == {}


@pytest.mark.parametrize(
    "name", ["title", "excerpt", "slug", "body", "Upper", "1st", "with-hyphen", "_x", "a" * 101]
)
async def test_reserved_and_malformed_field_names_are_refused(harness: Harness, name: str) -> None:
    type_id = (await create_type(harness))["id"]
    payload = {"field_name": name, "field_label": "X", "field_type": "text"}
    response = await harness.call("POST", f"{TYPES}/{type_id}/fields", role="admin", json=payload)
    body = await body_of(response, 422)
    assert body["errors"][0]["loc"][:2] == ["body", "field_name"]


async def test_field_names_are_unique_per_type_only(harness: Harness) -> None:
    first, second = (await create_type(harness))["id"], (await create_type(harness))["id"]
    await create_field(harness, first, field_name="price")
    await create_field(harness, second, field_name="price")
    payload = {"field_name": "price", "field_label": "P", "field_type": "number"}
    response = await harness.call("POST", f"{TYPES}/{first}/fields", role="admin", json=payload)
    assert (await body_of(response, 409))["code"] == "field_exists"


@pytest.mark.parametrize(
    ("field_type", "options", "message"),
    [
        ("text", {"choices": ["a"]}, "do not take choices"),
        ("text", {"max_length": -1}, "max_length must be a non-negative integer"),
        ("number", {"min": "low"}, "options.min must be a finite number"),
        ("select", {}, "options.choices must be a list"),
        ("select", {"choices": ["a", "a"]}, "must not repeat a choice"),
        ("multiselect", {"choices": ["a"], "default": ["b"]}, "options.default"),
        ("date", {"min": "yesterday"}, "options.min"),
        ("boolean", {"default": "yes"}, "options.default: expected true or false"),
        ("json", {"max_bytes": 1.5}, "max_bytes must be a non-negative integer"),
    ],
)
async def test_options_that_do_not_suit_the_type_are_refused_with_the_reason(
    harness: Harness, field_type: str, options: dict[str, Any], message: str
) -> None:
    type_id = (await create_type(harness))["id"]
    payload = {"field_name": "f", "field_label": "F", "field_type": field_type, "options": options}
    response = await harness.call("POST", f"{TYPES}/{type_id}/fields", role="admin", json=payload)
    body = await body_of(response, 422)
    assert body["errors"][0]["loc"] == ["body", "options"]
    assert message in body["errors"][0]["message"]


def deep(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("field_type", "options", "message"),
    [
        ("json", {"default": deep(300)}, "levels of nesting"),
        ("json", {"default": "\ud800"}, "valid Unicode"),
        ("select", {"choices": [f"{n:03d}" * 60 for n in range(500)]}, "at most 65535 bytes"),
        ("number", {"max": 10**400}, "options.max must be a finite number"),
    ],
)
async def test_options_that_could_not_be_stored_or_answered_are_refused(
    harness: Harness, field_type: str, options: dict[str, Any], message: str
) -> None:
    type_id = (await create_type(harness))["id"]
    payload = {"field_name": "f", "field_label": "F", "field_type": field_type, "options": options}
    raw = json.dumps(payload).encode()
    response = await harness.call(
        "POST",
        f"{TYPES}/{type_id}/fields",
        role="admin",
        data=raw,
        headers={"Content-Type": "application/json"},
    )
    assert message in (await body_of(response, 422))["errors"][0]["message"]


async def test_a_description_is_at_most_what_a_text_column_holds(harness: Harness) -> None:
    payload = {"name": unique(), "description": "é" * 40_000}
    body = await body_of(await harness.call("POST", TYPES, role="admin", json=payload), 422)
    assert body["errors"][0]["loc"] == ["body", "description"]


async def test_an_unknown_field_type_is_refused(harness: Harness) -> None:
    type_id = (await create_type(harness))["id"]
    payload = {"field_name": "f", "field_label": "F", "field_type": "colour"}
    response = await harness.call("POST", f"{TYPES}/{type_id}/fields", role="admin", json=payload)
    assert (await body_of(response, 422))["errors"][0]["loc"][:2] == ["body", "field_type"]


async def test_fields_are_listed_per_type_and_not_reachable_through_another_type(
    harness: Harness,
) -> None:
    type_id, other = (await create_type(harness))["id"], (await create_type(harness))["id"]
    made = [await create_field(harness, type_id, field_type=t) for t in ("text", "url", "email")]
    await create_field(harness, other)
    body = await body_of(
        await harness.call("GET", f"{TYPES}/{type_id}/fields?sort=-id", role="viewer"), 200
    )
    assert [f["id"] for f in body["data"]] == [f["id"] for f in reversed(made)]
    query = "filter[field_type][in]=url,email"
    body = await body_of(
        await harness.call("GET", f"{TYPES}/{type_id}/fields?{query}", role="viewer"), 200
    )
    assert body["meta"]["total"] == 2
    for method in ("GET", "DELETE"):
        path = f"{TYPES}/{other}/fields/{made[0]['id']}"
        await body_of(await harness.call(method, path, role="admin"), 404)
    await body_of(await harness.call("GET", f"{TYPES}/987654/fields", role="admin"), 404)


async def test_a_field_change_that_stored_values_fit_is_applied(harness: Harness) -> None:
    type_id = (await create_type(harness))["id"]
    field = await create_field(harness, type_id, field_type="text")
    await store_values(harness, type_id, field["id"], "short", None)
    path = f"{TYPES}/{type_id}/fields/{field['id']}"
    patch = {"field_type": "textarea", "options": {"max_length": 10}, "field_label": "Notes"}
    changed = (await body_of(await harness.call("PATCH", path, role="admin", json=patch), 200))[
        "data"
    ]
    assert (changed["field_type"], changed["options"], changed["field_label"]) == (
        "textarea",
        {"max_length": 10},
        "Notes",
    )


@pytest.mark.parametrize(
    ("field_type", "options", "values", "patch", "failing"),
    [
        ("text", {}, ["12", "abc", "7"], {"field_type": "number"}, 3),
        ("number", {}, [5, 50, 500], {"options": {"max": 10}}, 2),
        ("select", {"choices": ["a", "b"]}, ["a", "b", "b"], {"options": {"choices": ["a"]}}, 2),
        ("text", {}, ["x" * 20, "short"], {"options": {"max_length": 10}}, 1),
    ],
)
async def test_a_field_change_that_stored_values_would_fail_is_refused_with_a_count(
    harness: Harness,
    field_type: str,
    options: dict[str, Any],
    values: list[Any],
    patch: dict[str, Any],
    failing: int,
) -> None:
    type_id = (await create_type(harness))["id"]
    field = await create_field(harness, type_id, field_type=field_type, options=options)
    await store_values(harness, type_id, field["id"], *values)
    path = f"{TYPES}/{type_id}/fields/{field['id']}"
    body = await body_of(await harness.call("PATCH", path, role="admin", json=patch), 409)
    assert body["code"] == "field_values_incompatible"
    assert body["detail"].startswith(f"{failing} stored value")
    unchanged = (await body_of(await harness.call("GET", path, role="admin"), 200))["data"]
    assert (unchanged["field_type"], unchanged["options"]) == (field_type, options)


async def test_a_new_type_must_suit_the_options_kept_from_the_old_one(harness: Harness) -> None:
    type_id = (await create_type(harness))["id"]
    field = await create_field(harness, type_id, field_type="text", options={"max_length": 5})
    path = f"{TYPES}/{type_id}/fields/{field['id']}"
    response = await harness.call("PATCH", path, role="admin", json={"field_type": "boolean"})
    body = await body_of(response, 422)
    assert "do not take max_length" in body["errors"][0]["message"]
    patch = {"field_type": "boolean", "options": {}}
    assert (await body_of(await harness.call("PATCH", path, role="admin", json=patch), 200))[
        "data"
    ]["options"] == {}


async def test_a_field_keeps_its_name_once_it_has_values(harness: Harness) -> None:
    type_id = (await create_type(harness))["id"]
    empty = await create_field(harness, type_id, field_name="draft_name")
    used = await create_field(harness, type_id, field_name="used_name")
    await store_values(harness, type_id, used["id"], "v")
    base = f"{TYPES}/{type_id}/fields"
    renamed = await harness.call(
        "PATCH", f"{base}/{empty['id']}", role="admin", json={"field_name": "final_name"}
    )
    assert (await body_of(renamed, 200))["data"]["field_name"] == "final_name"
    for name, code in (("other", "field_in_use"), ("final_name", "field_exists")):
        response = await harness.call(
            "PATCH", f"{base}/{used['id']}", role="admin", json={"field_name": name}
        )
        assert (await body_of(response, 409))["code"] == code


async def test_deleting_a_field_removes_its_values_and_is_audited(harness: Harness) -> None:
    type_id = (await create_type(harness))["id"]
    field = await create_field(harness, type_id)
    await store_values(harness, type_id, field["id"], "a", "b", "c")
    path = f"{TYPES}/{type_id}/fields/{field['id']}"
    await body_of(await harness.call("DELETE", path, role="admin"), 204)
    await body_of(await harness.call("GET", path, role="admin"), 404)
    left = await harness.scalar(
        sa.select(sa.func.count())
        .select_from(CustomFieldValue)
        .where(CustomFieldValue.custom_field_id == field["id"])
    )
    assert left == 0
    entry = await audit_entry(harness, "custom_field.delete", field["id"])
    assert json.loads(entry["details"])["values_removed"] == 3


async def test_field_changes_are_audited_and_versioned(harness: Harness) -> None:
    type_id = (await create_type(harness))["id"]
    field = await create_field(harness, type_id, field_type="number", options={"min": 0})
    path = f"{TYPES}/{type_id}/fields/{field['id']}"
    patch = {"options": {"min": 0, "max": 9}, "is_required": True}
    await body_of(await harness.call("PATCH", path, role="admin", json=patch), 200)
    entries = await history(harness, "custom_field", field["id"])
    assert [entry[0] for entry in entries] == ["create", "update"]
    assert entries[0][2]["options"] == {"min": 0} and entries[0][2]["content_type_id"] == type_id
    assert entries[1][1:] == (
        {"options": {"min": 0}, "is_required": False},
        {"options": {"max": 9, "min": 0}, "is_required": True},
    )
    entry = await audit_entry(harness, "custom_field.update", field["id"])
    assert json.loads(entry["details"])["new"]["is_required"] is True
