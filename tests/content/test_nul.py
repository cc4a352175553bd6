"""NUL characters (U+0000): refused in every REST body alike on both backends; stripped from
bodies that arrive through live editing when they are materialized into SQL."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from handlers import keys
from realtime_cms.content.materialize import ContentState, materialize
from realtime_cms.db import transaction
from realtime_cms.models.content import ContentItem
from tests.content.conftest import COMPLETE, ITEMS, World, body_of, create_item
from tests.support.harness import Harness

NUL = "\x00"


def assert_names(problem: dict[str, Any], *loc: str) -> None:
    assert problem["status"] == 422 and problem["code"] == "validation_failed"
    assert [error["loc"] for error in problem["errors"]] == [["body", *loc]]
    assert problem["errors"][0]["type"] == "nul_character"


@pytest.mark.parametrize(
    ("fields", "loc"),
    [
        ({"title": f"Hello{NUL}world"}, ("title",)),
        ({"body": f"one{NUL}two"}, ("body",)),
        ({"excerpt": f"short{NUL}"}, ("excerpt",)),
        ({"custom_fields": {**COMPLETE, "subtitle": f"a{NUL}b"}}, ("custom_fields", "subtitle")),
        (
            {"custom_fields": {**COMPLETE, "topics": ["a", f"b{NUL}"]}},
            ("custom_fields", "topics", "1"),
        ),
        ({"custom_fields": {**COMPLETE, f"sub{NUL}": "x"}}, ("custom_fields", f"sub{NUL}")),
    ],
    ids=["title", "body", "excerpt", "field", "list-item", "field-name"],
)
async def test_a_content_item_with_a_nul_is_refused_naming_the_field(
    harness: Harness, world: World, fields: dict[str, Any], loc: tuple[str, ...]
) -> None:
    problem = await create_item(harness, world, expect=422, **fields)
    assert_names(problem, *loc)


async def test_a_change_with_a_nul_is_refused_and_nothing_changes(
    harness: Harness, world: World
) -> None:
    created = await create_item(harness, world, custom_fields=COMPLETE, body="kept")
    path = f"{ITEMS}/{created['id']}"
    response = await harness.call("PATCH", path, role="admin", json={"body": f"lost{NUL}"})
    assert_names(await body_of(response, 422), "body")
    read = await body_of(await harness.call("GET", path, role="admin"), 200)
    assert read["data"]["body"] == "kept"


@pytest.mark.parametrize(
    ("path", "payload", "loc"),
    [
        ("/api/v1/content-types", {"name": f"Type{NUL}"}, ("name",)),
        ("/api/v1/content-types", {"name": "T", "description": f"d{NUL}"}, ("description",)),
        ("/api/v1/sites", {"name": f"Site{NUL}", "domain": "nul.example.com"}, ("name",)),
        (
            "/api/v1/notification-templates",
            {"name": "n", "subject_template": "s", "body_template": f"b{NUL}"},
            ("body_template",),
        ),
    ],
    ids=["type-name", "type-description", "site-name", "template-body"],
)
async def test_names_and_descriptions_with_a_nul_are_refused_everywhere(
    harness: Harness, path: str, payload: dict[str, Any], loc: tuple[str, ...]
) -> None:
    response = await harness.call("POST", path, role="admin", json=payload)
    assert_names(await body_of(response, 422), *loc)


async def test_a_live_body_with_a_nul_is_stored_without_it(harness: Harness, world: World) -> None:
    created = await create_item(harness, world, custom_fields=COMPLETE)
    fields = {"title": created["title"], "slug": created["slug"], **COMPLETE}
    async with transaction(harness.app[keys.SESSIONS]) as db:
        state = ContentState(body=f"typed{NUL} live {NUL}{uuid.uuid4().hex}", fields=fields)
        outcome = await materialize(db, created["id"], state)
    assert outcome.found and outcome.changed and not outcome.errors
    async with transaction(harness.app[keys.SESSIONS]) as db:
        item = await db.get(ContentItem, created["id"])
        assert item is not None
        assert item.content_body == state.body.replace(NUL, "")


async def test_a_live_title_with_a_nul_is_refused_by_name(harness: Harness, world: World) -> None:
    created = await create_item(harness, world, custom_fields=COMPLETE)
    fields = {"title": f"Typed{NUL}", "excerpt": f"Also{NUL}", "slug": created["slug"], **COMPLETE}
    async with transaction(harness.app[keys.SESSIONS]) as db:
        outcome = await materialize(db, created["id"], ContentState(body="b", fields=fields))
    assert set(outcome.errors) == {"title", "excerpt"}
    async with transaction(harness.app[keys.SESSIONS]) as db:
        item = await db.get(ContentItem, created["id"])
        assert item is not None and item.title == created["title"]
