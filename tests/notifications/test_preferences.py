"""Preferences: defaults, per-category rows, the cache with its expiry and invalidation."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from handlers import keys
from realtime_cms.db import transaction
from realtime_cms.models.base import utcnow
from realtime_cms.models.notifications import (
    NotificationCategory,
    NotificationPreferenceCache,
    UserNotificationPreference,
)
from realtime_cms.notifications import preferences
from tests.notifications.support import body, new_user, unique
from tests.support.harness import Harness

PREFERENCES = "/api/v1/notification-preferences"


async def _category(harness: Harness, *, is_system: bool = False) -> NotificationCategory:
    async with transaction(harness.app[keys.SESSIONS]) as db:
        category = NotificationCategory(name=unique("prefs"), is_system=is_system)
        db.add(category)
    return category


def _by_category(rows: list[dict[str, object]]) -> dict[object, dict[str, object]]:
    return {row["category_id"]: row for row in rows}


async def test_without_rows_everything_is_in_app_immediate(harness: Harness) -> None:
    _, token = await new_user(harness, "viewer")
    response = await harness.call("GET", PREFERENCES, token=token)
    rows = (await body(response, 200))["data"]
    assert rows[0] == {
        "category_id": None,
        "channels": ["in_app"],
        "frequency": "immediate",
        "explicit": False,
    }
    assert all(row["frequency"] == "immediate" and not row["explicit"] for row in rows)


async def test_a_category_row_wins_over_the_users_default(harness: Harness) -> None:
    category = await _category(harness)
    other = await _category(harness)
    _, token = await new_user(harness, "viewer")
    wanted: list[dict[str, object]] = [
        {"category_id": None, "channels": ["email"], "frequency": "daily"},
        {"category_id": category.id, "channels": ["email", "in_app"], "frequency": "hourly"},
    ]
    response = await harness.call("PUT", PREFERENCES, token=token, json={"preferences": wanted})
    rows = _by_category((await body(response, 200))["data"])
    assert rows[category.id] == {
        "category_id": category.id,
        "channels": ["in_app", "email"],
        "frequency": "hourly",
        "explicit": True,
    }
    assert rows[other.id]["frequency"] == "daily" and rows[other.id]["explicit"] is False


async def test_a_muting_default_does_not_mute_system_categories(harness: Harness) -> None:
    system = await _category(harness, is_system=True)
    _, token = await new_user(harness, "viewer")
    wanted: list[dict[str, object]] = [{"category_id": None, "channels": [], "frequency": "off"}]
    response = await harness.call("PUT", PREFERENCES, token=token, json={"preferences": wanted})
    rows = _by_category((await body(response, 200))["data"])
    assert rows[system.id]["frequency"] == "immediate"
    assert rows[None]["frequency"] == "off"


async def test_unknown_categories_and_duplicates_are_refused(harness: Harness) -> None:
    _, token = await new_user(harness, "viewer")
    unknown: list[dict[str, object]] = [
        {"category_id": 2_000_000, "channels": ["in_app"], "frequency": "daily"}
    ]
    response = await harness.call("PUT", PREFERENCES, token=token, json={"preferences": unknown})
    assert (await body(response, 404))["code"] == "category_not_found"
    twice: list[dict[str, object]] = [{"category_id": None, "channels": [], "frequency": "off"}] * 2
    response = await harness.call("PUT", PREFERENCES, token=token, json={"preferences": twice})
    assert (await body(response, 422))["code"] == "duplicate_category"


async def test_resolving_caches_and_a_change_invalidates(harness: Harness) -> None:
    user_id, token = await new_user(harness, "viewer")
    sessions = harness.app[keys.SESSIONS]
    async with transaction(sessions) as db:
        chosen = await preferences.resolve(db, [user_id], None)
    assert chosen[user_id] == preferences.SERVER_DEFAULT
    cached = sa.select(NotificationPreferenceCache).where(
        NotificationPreferenceCache.user_id == user_id
    )
    assert await harness.scalar(cached) is not None
    wanted = [{"category_id": None, "channels": ["email"], "frequency": "daily"}]
    response = await harness.call("PUT", PREFERENCES, token=token, json={"preferences": wanted})
    await body(response, 200)
    assert await harness.scalar(cached) is None
    async with transaction(sessions) as db:
        chosen = await preferences.resolve(db, [user_id], None)
    assert chosen[user_id] == preferences.Preference(("email",), "daily")


async def test_the_cache_is_used_until_it_expires(harness: Harness) -> None:
    user_id, _ = await new_user(harness, "viewer")
    sessions = harness.app[keys.SESSIONS]
    now = utcnow().replace(microsecond=0)
    async with transaction(sessions) as db:
        await preferences.resolve(db, [user_id], None, now)
        # A row written behind the service's back: the cache does not see it yet.
        db.add(UserNotificationPreference(user_id=user_id, channels=["email"], frequency="hourly"))
    async with transaction(sessions) as db:
        stale = await preferences.resolve(db, [user_id], None, now + timedelta(seconds=1))
        later = now + timedelta(seconds=preferences.DEFAULT_CACHE_SECONDS + 1)
        fresh = await preferences.resolve(db, [user_id], None, later)
    assert stale[user_id] == preferences.SERVER_DEFAULT
    assert fresh[user_id] == preferences.Preference(("email",), "hourly")


async def test_preferences_need_an_account(harness: Harness) -> None:
    response = await harness.call("GET", PREFERENCES)
    assert (await body(response, 401))["code"] == "unauthorized"
