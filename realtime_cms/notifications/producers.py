"""The notifications other domains' changes produce: a document grant, a status change, a mention.

Each runs inside the transaction of the change (`notifications.subscribers` calls them for
the events the change publishes), so it commits or rolls back with it; the live push follows
the commit. None of them notifies the person who made the change.
"""

from __future__ import annotations

from collections.abc import Collection

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from realtime_cms.collab.access import at_least, content_item_id, document_level
from realtime_cms.models.auth import User
from realtime_cms.models.content import ContentItem
from realtime_cms.notifications.categories import CONTENT, DOCUMENTS, MENTIONS, category_id
from realtime_cms.notifications.service import notify
from realtime_cms.principal import Principal, system
from realtime_cms.rbac.service import principal_of

# Producers act for the server, with the one permission `notify` checks.
PRODUCER = system(frozenset({"notifications.send"}))


async def _item_title(db: AsyncSession, document_id: str) -> str:
    item_id = content_item_id(document_id)
    if item_id is None:
        return f"document {document_id}"
    title = await db.scalar(sa.select(ContentItem.title).where(ContentItem.id == item_id))
    return f"“{title}”" if title else f"content item {item_id}"


async def document_granted(
    db: AsyncSession, actor: Principal, *, document_id: str, user_id: int, level: str
) -> None:
    """Tell a user they were given `level` on a document (unless they gave it themselves)."""
    if actor.user_id == user_id:
        return
    what = await _item_title(db, document_id)
    await notify(
        db,
        PRODUCER,
        users=[user_id],
        title=f"You can now {level} {what}"[:255],
        message=f"{actor.username} gave you {level} access to {what} ({document_id}).",
        category_id=await category_id(db, DOCUMENTS),
        type="document_grant",
    )


async def status_changed(
    db: AsyncSession,
    actor: Principal,
    *,
    author_id: int | None,
    title: str,
    old: str,
    new: str,
) -> None:
    """Tell an item's author its status changed, when someone else changed it."""
    if author_id is None or author_id == actor.user_id:
        return
    await notify(
        db,
        PRODUCER,
        users=[author_id],
        title=f"“{title}” is now {new}"[:255],
        message=f"{actor.username} moved your item “{title}” from {old} to {new}.",
        category_id=await category_id(db, CONTENT),
        type="content_status",
    )


async def schedule_failed(
    db: AsyncSession, *, owner_id: int | None, item_id: int, title: str, error: str | None
) -> None:
    """Tell a schedule's owner it failed, and why (the server ran it: nobody to leave out)."""
    if owner_id is None:
        return
    await notify(
        db,
        PRODUCER,
        users=[owner_id],
        title=f"Scheduled publish of “{title}” failed"[:255],
        message=f"The schedule of “{title}” (content item {item_id}) failed: {error}.",
        category_id=await category_id(db, CONTENT),
        type="schedule_failed",
    )


async def mentioned(
    db: AsyncSession,
    *,
    item_id: int,
    title: str,
    usernames: Collection[str],
    authors: Collection[int],
) -> None:
    """Notify the users `usernames` names who can read the item (not its editors, `authors`)."""
    if not usernames:
        return
    users = await db.scalars(
        sa.select(User).where(User.username.in_(set(usernames)), User.is_active.is_(True))
    )
    document_id = f"content:{item_id}"
    readers = [
        user.id
        for user in users
        if user.id not in authors
        and at_least(await document_level(db, await principal_of(db, user), document_id), "read")
    ]
    if not readers:
        return
    by = "someone" if not authors else await _names(db, authors)
    await notify(
        db,
        PRODUCER,
        users=readers,
        title=f"You were mentioned in “{title}”"[:255],
        message=f"{by} mentioned you in “{title}” ({document_id}).",
        category_id=await category_id(db, MENTIONS),
        type="mention",
    )


async def _names(db: AsyncSession, user_ids: Collection[int]) -> str:
    names = await db.scalars(
        sa.select(User.username).where(User.id.in_(user_ids)).order_by(User.username)
    )
    return ", ".join(names) or "someone"
