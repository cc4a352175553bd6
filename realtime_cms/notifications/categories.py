"""Notification categories: name, colour and the system flag (system ones stay on, always)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from realtime_cms.audit import record
from realtime_cms.errors import Conflict, NotFound
from realtime_cms.models.notifications import NotificationCategory
from realtime_cms.principal import Principal
from realtime_cms.rbac.authorize import authorize
from realtime_cms.uniqueness import taken

# name -> (description, colour). Producers file their notifications under these.
SYSTEM = "System"
MENTIONS = "Mentions"
DOCUMENTS = "Documents"
CONTENT = "Content"
DEFAULT_CATEGORIES: dict[str, tuple[str, str]] = {
    SYSTEM: ("Announcements from the server and its operators", "#e74c3c"),
    MENTIONS: ("Someone mentioned you in a document", "#9b59b6"),
    DOCUMENTS: ("Access to live documents granted to you", "#3498db"),
    CONTENT: ("Status changes of content you wrote", "#27ae60"),
}


async def ensure_default_categories(db: AsyncSession) -> dict[str, int]:
    """Create the missing default (system) categories; their ids by name. Idempotent."""
    names = list(DEFAULT_CATEGORIES)
    rows = await db.execute(
        sa.select(NotificationCategory.name, NotificationCategory.id)
        .where(NotificationCategory.name.in_(names))
        .order_by(NotificationCategory.id)
    )
    ids: dict[str, int] = {}
    for name, category_id in rows:
        ids.setdefault(name, category_id)
    for name in names:
        if name not in ids:
            description, color = DEFAULT_CATEGORIES[name]
            category = NotificationCategory(
                name=name, description=description, color_code=color, is_system=True
            )
            db.add(category)
            await db.flush()
            ids[name] = category.id
    return ids


async def category_id(db: AsyncSession, name: str) -> int:
    """The id of a default category, creating the defaults first if needed."""
    return (await ensure_default_categories(db))[name]


async def require_category(db: AsyncSession, category_id: int) -> NotificationCategory:
    category = await db.get(NotificationCategory, category_id)
    if category is None:
        raise NotFound("No such notification category", code="category_not_found")
    return category


async def get_category(
    db: AsyncSession, principal: Principal, category_id: int
) -> NotificationCategory:
    authorize(principal, "notifications.manage")
    return await require_category(db, category_id)


async def _ensure_unique(db: AsyncSession, name: str, exclude: int | None) -> None:
    if await taken(db, NotificationCategory.id, NotificationCategory.name == name, exclude=exclude):
        raise Conflict(f"A category named {name!r} exists", code="category_exists")


async def create_category(
    db: AsyncSession, principal: Principal, **values: Any
) -> NotificationCategory:
    authorize(principal, "notifications.manage")
    await _ensure_unique(db, values["name"], None)
    category = NotificationCategory(**values)
    db.add(category)
    await db.flush()
    await db.refresh(category)
    await record(
        db,
        principal,
        "notification_category.create",
        "notification_category",
        category.id,
        {"name": category.name, "is_system": category.is_system},
    )
    return category


async def update_category(
    db: AsyncSession, principal: Principal, category_id: int, **changes: Any
) -> NotificationCategory:
    category = await get_category(db, principal, category_id)
    wanted = {key: value for key, value in changes.items() if value is not None}
    if "name" in wanted:
        await _ensure_unique(db, wanted["name"], category.id)
    for key, value in wanted.items():
        setattr(category, key, value)
    await db.flush()
    await db.refresh(category)
    await record(
        db,
        principal,
        "notification_category.update",
        "notification_category",
        category.id,
        {"changed": sorted(wanted)},
    )
    return category


async def delete_category(db: AsyncSession, principal: Principal, category_id: int) -> None:
    """Delete a non-system category; its notifications stay, uncategorised."""
    category = await get_category(db, principal, category_id)
    if category.is_system:
        raise Conflict("System categories cannot be deleted", code="category_is_system")
    await db.delete(category)
    await db.flush()
    await record(
        db,
        principal,
        "notification_category.delete",
        "notification_category",
        category_id,
        {"name": category.name},
    )
