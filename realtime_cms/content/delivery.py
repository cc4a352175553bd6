"""The public delivery API: published items of active sites, as websites read them.

Only `published` items whose visibility is `public` or `password` are ever visible; every
other item answers exactly like a missing one. A password-protected item is listed without
its content and read only with the right password (argon2 verify); its hash never leaves.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from realtime_cms.content.queries import split_term_filters, views_of
from realtime_cms.errors import Forbidden, NotFound, Unauthorized
from realtime_cms.listing import ListQuery, Page
from realtime_cms.models.base import utcnow
from realtime_cms.models.content import ContentItem, ContentType
from realtime_cms.models.sites import Site
from realtime_cms.security.passwords import Passwords

DELIVERED_VISIBILITY = ("public", "password")


def _published() -> list[sa.ColumnElement[bool]]:
    return [
        ContentItem.status == "published",
        ContentItem.visibility.in_(DELIVERED_VISIBILITY),
        sa.or_(ContentItem.published_at.is_(None), ContentItem.published_at <= utcnow()),
    ]


def _of_type() -> sa.Select[ContentItem]:
    return sa.select(ContentItem).join(ContentType, ContentType.id == ContentItem.content_type_id)


async def _require_active_site(db: AsyncSession, site_id: int) -> None:
    site = await db.get(Site, site_id)
    if site is None or not site.is_active:
        raise NotFound("No such site", code="site_not_found")


async def _deliver(
    db: AsyncSession, items: Sequence[ContentItem], *, unlocked: bool
) -> list[dict[str, Any]]:
    views = await views_of(db, items, with_body=True)
    rows = await db.execute(
        sa.select(ContentType.id, ContentType.slug).where(
            ContentType.id.in_(sorted({item.content_type_id for item in items}))
        )
    )
    slugs = {type_id: slug for type_id, slug in rows}
    delivered = []
    for item, view in zip(items, views, strict=True):
        protected = item.visibility == "password"
        hidden = protected and not unlocked
        delivered.append(
            {
                "id": item.id,
                "type": slugs[item.content_type_id],
                "slug": item.slug,
                "title": item.title,
                "excerpt": None if hidden else item.excerpt,
                "body": None if hidden else view["body"],
                "custom_fields": None if hidden else view["custom_fields"],
                "categories": view["categories"],
                "tags": view["tags"],
                "parent_id": item.parent_id,
                "password_protected": protected,
                "published_at": item.published_at,
                "updated_at": item.updated_at,
            }
        )
    return delivered


async def list_published(
    db: AsyncSession, *, site_id: int, query: ListQuery
) -> Page[dict[str, Any]]:
    """A page of the site's published items; password-protected ones without content."""
    await _require_active_site(db, site_id)
    where = split_term_filters(query)
    stmt = _of_type().where(ContentItem.site_id == site_id, *_published())
    page = await query.fetch(db, stmt, *where)
    items = await _deliver(db, page.items, unlocked=False)
    return Page(items=items, total=page.total, limit=page.limit, offset=page.offset)


async def get_published(
    db: AsyncSession,
    passwords: Passwords,
    *,
    site_id: int,
    type_slug: str,
    slug: str,
    password: str | None,
) -> dict[str, Any]:
    """One published item by its type's slug and its own; a protected one needs `password`."""
    await _require_active_site(db, site_id)
    item = await db.scalar(
        _of_type().where(
            ContentItem.site_id == site_id,
            ContentType.slug == type_slug,
            ContentItem.slug == slug,
            *_published(),
        )
    )
    if item is None:
        raise NotFound("No such item", code="content_not_found")
    if item.visibility == "password":
        if password is None:
            raise Unauthorized(
                "This item is password protected: send X-Content-Password",
                code="content_password_required",
            )
        if not await passwords.verify(item.password, password):
            raise Forbidden("Wrong content password", code="content_password_invalid")
    return (await _deliver(db, [item], unlocked=True))[0]
