"""Per-user, per-category notification preferences, cached in `notification_preference_cache`.

A preference is a set of channels and a frequency. A user's row for a category wins; else
their default row (`category_id` NULL); else the server default, `in_app` `immediate` (no
mail until a user asks for it). System categories cannot be muted: an explicit preference
muting one is refused, and a muting default does not apply to them.

A user's rows are cached as one JSON document until `expires_at`, and the cache entry is
deleted whenever the user changes a preference. The lifetime comes from the session's
`info[CACHE_SECONDS_KEY]` (the app sets it from `RCMS_NOTIFICATION_PREFERENCE_CACHE_SECONDS`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from realtime_cms.errors import Unprocessable
from realtime_cms.models.base import utcnow
from realtime_cms.models.notifications import (
    NotificationCategory,
    NotificationPreferenceCache,
    UserNotificationPreference,
)
from realtime_cms.notifications.categories import require_category
from realtime_cms.notifications.owner import require_user
from realtime_cms.notifications.schemas import CHANNELS, PreferenceIn, PreferenceOut
from realtime_cms.principal import Principal

CACHE_SECONDS_KEY = "rcms.notification_preference_cache_seconds"
DEFAULT_CACHE_SECONDS = 300.0


@dataclass(frozen=True, slots=True)
class Preference:
    channels: tuple[str, ...]
    frequency: str

    @property
    def muted(self) -> bool:
        return self.frequency == "off" or not self.channels

    def as_json(self) -> dict[str, Any]:
        return {"channels": list(self.channels), "frequency": self.frequency}

    @classmethod
    def of(cls, data: dict[str, Any]) -> Preference:
        channels = tuple(c for c in CHANNELS if c in (data.get("channels") or []))
        return cls(channels, str(data.get("frequency") or "immediate"))


SERVER_DEFAULT = Preference(("in_app",), "immediate")


def _cache_seconds(db: AsyncSession) -> float:
    return float(db.info.get(CACHE_SECONDS_KEY, DEFAULT_CACHE_SECONDS))


async def _stored(db: AsyncSession, user_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """Each user's rows as the cache holds them: `{"default": ..., "categories": {...}}`."""
    result: dict[int, dict[str, Any]] = {
        uid: {"default": None, "categories": {}} for uid in user_ids
    }
    rows = await db.scalars(
        sa.select(UserNotificationPreference).where(
            UserNotificationPreference.user_id.in_(user_ids)
        )
    )
    for row in rows:
        value = Preference.of({"channels": row.channels, "frequency": row.frequency}).as_json()
        entry = result[row.user_id]
        if row.category_id is None:
            entry["default"] = value
        else:
            entry["categories"][str(row.category_id)] = value
    return result


async def _write_cache(
    db: AsyncSession, documents: dict[int, dict[str, Any]], now: datetime
) -> None:
    """Upsert the cache rows (concurrent writers of one user both succeed)."""
    if not documents or _cache_seconds(db) <= 0:
        return
    expires = now + timedelta(seconds=_cache_seconds(db))
    values = [
        {"user_id": uid, "preferences": doc, "cached_at": now, "expires_at": expires}
        for uid, doc in documents.items()
    ]
    table = NotificationPreferenceCache
    if db.get_bind().dialect.name == "sqlite":
        lite = sqlite.insert(table).values(values)
        stmt: Any = lite.on_conflict_do_update(
            index_elements=["user_id"],
            set_={name: lite.excluded[name] for name in ("preferences", "cached_at", "expires_at")},
        )
    else:
        my = mysql.insert(table).values(values)
        stmt = my.on_duplicate_key_update(
            {name: my.inserted[name] for name in ("preferences", "cached_at", "expires_at")}
        )
    await db.execute(stmt)


async def documents_for(
    db: AsyncSession, user_ids: Sequence[int], now: datetime | None = None
) -> dict[int, dict[str, Any]]:
    """Every user's preference document: from the cache while fresh, else rebuilt and cached."""
    now = now or utcnow()
    wanted = sorted(set(user_ids))
    if not wanted:
        return {}
    cached = await db.execute(
        sa.select(NotificationPreferenceCache.user_id, NotificationPreferenceCache.preferences)
        .where(NotificationPreferenceCache.user_id.in_(wanted))
        .where(NotificationPreferenceCache.expires_at > now)
    )
    found: dict[int, dict[str, Any]] = {uid: doc for uid, doc in cached if isinstance(doc, dict)}
    missing = [uid for uid in wanted if uid not in found]
    if missing:
        fresh = await _stored(db, missing)
        await _write_cache(db, fresh, now)
        found.update(fresh)
    return found


def choose(document: dict[str, Any], category_id: int | None, is_system: bool) -> Preference:
    """The preference a document gives for a category (see the module's rules)."""
    own = (document.get("categories") or {}).get(str(category_id)) if category_id else None
    if own is not None:
        return Preference.of(own)
    default = document.get("default")
    if default is None:
        return SERVER_DEFAULT
    chosen = Preference.of(default)
    return SERVER_DEFAULT if is_system and chosen.muted else chosen


async def resolve(
    db: AsyncSession,
    user_ids: Sequence[int],
    category: NotificationCategory | None,
    now: datetime | None = None,
) -> dict[int, Preference]:
    """Each user's preference for `category` (None: uncategorised)."""
    documents = await documents_for(db, user_ids, now)
    category_id = category.id if category is not None else None
    is_system = bool(category is not None and category.is_system)
    return {uid: choose(documents[uid], category_id, is_system) for uid in documents}


async def invalidate(db: AsyncSession, user_id: int) -> None:
    """Drop a user's cached preferences (after any change to them)."""
    await db.execute(
        sa.delete(NotificationPreferenceCache).where(NotificationPreferenceCache.user_id == user_id)
    )


async def list_preferences(db: AsyncSession, principal: Principal) -> list[PreferenceOut]:
    """The caller's default and their effective preference for every category."""
    user_id = require_user(principal)
    document = (await _stored(db, [user_id]))[user_id]
    default = document["default"]
    out = [
        PreferenceOut(
            category_id=None, explicit=default is not None, **(default or SERVER_DEFAULT.as_json())
        )
    ]
    categories = await db.scalars(sa.select(NotificationCategory).order_by(NotificationCategory.id))
    for category in categories:
        explicit = str(category.id) in document["categories"]
        chosen = choose(document, category.id, bool(category.is_system))
        out.append(PreferenceOut(category_id=category.id, explicit=explicit, **chosen.as_json()))
    return out


async def _check(db: AsyncSession, wanted: PreferenceIn) -> None:
    if wanted.category_id is None:
        return
    category = await require_category(db, wanted.category_id)
    if category.is_system and (wanted.frequency == "off" or not wanted.channels):
        raise Unprocessable(
            f"The system category {category.name!r} cannot be muted",
            code="category_is_system",
            errors=[
                {
                    "loc": ["body", "preferences", str(wanted.category_id)],
                    "message": "system categories need a channel and a frequency other than off",
                    "type": "category_is_system",
                }
            ],
        )


async def put_preferences(
    db: AsyncSession, principal: Principal, wanted: Sequence[PreferenceIn]
) -> list[PreferenceOut]:
    """Set the caller's preferences (one per category, null = default) and drop the cache."""
    user_id = require_user(principal)
    keys = [item.category_id for item in wanted]
    if len(set(keys)) != len(keys):
        raise Unprocessable("A category is listed twice", code="duplicate_category")
    for item in wanted:
        await _check(db, item)
        row = await db.scalar(
            sa.select(UserNotificationPreference).where(
                UserNotificationPreference.user_id == user_id,
                UserNotificationPreference.category_id.is_(None)
                if item.category_id is None
                else UserNotificationPreference.category_id == item.category_id,
            )
        )
        if row is None:
            row = UserNotificationPreference(user_id=user_id, category_id=item.category_id)
            db.add(row)
        row.channels = [c for c in CHANNELS if c in item.channels]
        row.frequency = item.frequency
    await db.flush()
    await invalidate(db, user_id)
    return await list_preferences(db, principal)
