"""Categories: admin CRUD, defaults created once, system categories never deleted or muted."""

from __future__ import annotations

from handlers import keys
from realtime_cms.db import transaction
from realtime_cms.notifications.categories import DEFAULT_CATEGORIES, ensure_default_categories
from tests.notifications.support import body, unique
from tests.support.harness import Harness

CATEGORIES = "/api/v1/notification-categories"
PREFERENCES = "/api/v1/notification-preferences"


async def _create(harness: Harness, **values: object) -> dict[str, object]:
    payload = {"name": unique("category"), "color_code": "#aa00ff", **values}
    response = await harness.call("POST", CATEGORIES, role="admin", json=payload)
    return dict((await body(response, 201))["data"])


async def test_default_categories_are_created_once(harness: Harness) -> None:
    async with transaction(harness.app[keys.SESSIONS]) as db:
        first = await ensure_default_categories(db)
    async with transaction(harness.app[keys.SESSIONS]) as db:
        second = await ensure_default_categories(db)
    assert first == second and set(first) == set(DEFAULT_CATEGORIES)
    response = await harness.call(
        "GET", f"{CATEGORIES}?filter[is_system]=true&limit=200", role="admin"
    )
    listed = (await body(response, 200))["data"]
    assert {row["name"] for row in listed} >= set(DEFAULT_CATEGORIES)


async def test_a_category_is_created_changed_and_deleted(harness: Harness) -> None:
    created = await _create(harness, description="builds")
    assert created["color_code"] == "#aa00ff" and created["is_system"] is False
    response = await harness.call(
        "PATCH", f"{CATEGORIES}/{created['id']}", role="admin", json={"color_code": "#000000"}
    )
    assert (await body(response, 200))["data"]["color_code"] == "#000000"
    response = await harness.call("DELETE", f"{CATEGORIES}/{created['id']}", role="admin")
    assert response.status == 204


async def test_colours_must_be_hex_and_names_unique(harness: Harness) -> None:
    response = await harness.call(
        "POST", CATEGORIES, role="admin", json={"name": unique("c"), "color_code": "red"}
    )
    await body(response, 422)
    created = await _create(harness)
    response = await harness.call("POST", CATEGORIES, role="admin", json={"name": created["name"]})
    assert (await body(response, 409))["code"] == "category_exists"


async def test_a_system_category_cannot_be_deleted(harness: Harness) -> None:
    created = await _create(harness, is_system=True)
    response = await harness.call("DELETE", f"{CATEGORIES}/{created['id']}", role="admin")
    assert (await body(response, 409))["code"] == "category_is_system"


async def test_a_system_category_cannot_be_muted(harness: Harness) -> None:
    created = await _create(harness, is_system=True)
    for wanted in (
        {"channels": ["in_app"], "frequency": "off"},
        {"channels": [], "frequency": "daily"},
    ):
        response = await harness.call(
            "PUT",
            PREFERENCES,
            role="viewer",
            json={"preferences": [{"category_id": created["id"], **wanted}]},
        )
        assert (await body(response, 422))["code"] == "category_is_system", wanted


async def test_only_notification_managers_manage_categories(harness: Harness) -> None:
    created = await _create(harness)
    for method, path in (("GET", CATEGORIES), ("DELETE", f"{CATEGORIES}/{created['id']}")):
        response = await harness.call(method, path, role="editor")
        assert (await body(response, 403))["code"] == "permission_denied"
