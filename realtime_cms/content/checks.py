"""Checks an item write passes before anything is stored: site, type, parent, slug, values."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from realtime_cms.content.fields import FieldSpec, FieldValueError, check_value, missing_required
from realtime_cms.errors import Conflict, Forbidden, Unprocessable
from realtime_cms.models.content import Category, ContentItem, ContentType, Tag
from realtime_cms.models.sites import Site, SiteUser
from realtime_cms.principal import Principal

# Hierarchies deeper than this are refused rather than walked further.
MAX_DEPTH = 256
TERM_MODELS: dict[str, Any] = {"categories": Category, "tags": Tag}


def _unprocessable(code: str, message: str, loc: Sequence[str]) -> Unprocessable:
    return Unprocessable(
        message, code=code, errors=[{"loc": ["body", *loc], "message": message, "type": code}]
    )


async def require_site(db: AsyncSession, principal: Principal, site_id: int) -> Site:
    """The site, if the principal may put content on it.

    Rule: holders of `sites.manage` may use any site; a site with no members is open to
    every content creator; once a site has members (`site_users`), only they may.
    """
    site = await db.get(Site, site_id)
    if site is None:
        raise _unprocessable("site_not_found", "No such site", ["site_id"])
    if principal.can("sites.manage"):
        return site
    members = await db.scalar(
        sa.select(sa.func.count()).select_from(SiteUser).where(SiteUser.site_id == site_id)
    )
    if members and await db.get(SiteUser, (site_id, principal.user_id)) is None:
        raise Forbidden("Only members of the site may put content on it", code="not_site_member")
    return site


async def require_type(db: AsyncSession, content_type_id: int) -> ContentType:
    ctype = await db.get(ContentType, content_type_id)
    if ctype is None:
        raise _unprocessable("content_type_not_found", "No such content type", ["content_type_id"])
    return ctype


async def check_parent(
    db: AsyncSession,
    *,
    item_id: int | None,
    parent_id: int | None,
    ctype: ContentType,
    site_id: int,
) -> None:
    """A parent must be an item of the same hierarchical type and site, and not a descendant."""
    if parent_id is None:
        return
    if not ctype.is_hierarchical:
        raise _unprocessable(
            "not_hierarchical", f"Items of type {ctype.slug!r} have no parent", ["parent_id"]
        )
    parent = await db.get(ContentItem, parent_id)
    if parent is None:
        raise _unprocessable("parent_not_found", "No such parent item", ["parent_id"])
    if parent.content_type_id != ctype.id or parent.site_id != site_id:
        raise _unprocessable(
            "invalid_parent", "A parent must be of the same type and site", ["parent_id"]
        )
    ancestor: int | None = parent_id
    for _ in range(MAX_DEPTH):
        if ancestor is None:
            return
        if ancestor == item_id:
            raise Conflict("The item would become its own ancestor", code="content_cycle")
        ancestor = await db.scalar(
            sa.select(ContentItem.parent_id).where(ContentItem.id == ancestor)
        )
    raise _unprocessable("hierarchy_too_deep", f"At most {MAX_DEPTH} levels", ["parent_id"])


async def check_slug(db: AsyncSession, slug: str, content_type_id: int, exclude: int | None) -> str:
    stmt = sa.select(ContentItem.id).where(
        ContentItem.slug == slug, ContentItem.content_type_id == content_type_id
    )
    if exclude is not None:
        stmt = stmt.where(ContentItem.id != exclude)
    if await db.scalar(stmt.limit(1)) is not None:
        raise Conflict(f"Another item of this type has the slug {slug!r}", code="slug_taken")
    return slug


def check_values(specs: Mapping[str, FieldSpec], values: Mapping[str, Any]) -> dict[str, Any]:
    """Canonical values; one 422 `invalid_field_values` naming every unknown or invalid field."""
    checked: dict[str, Any] = {}
    errors: list[dict[str, Any]] = []
    for name, value in values.items():
        spec = specs.get(name)
        if spec is None:
            errors.append(_field_error(name, "not a field of this content type", "unknown_field"))
            continue
        try:
            checked[name] = check_value(spec, value)
        except FieldValueError as exc:
            errors.append(_field_error(name, str(exc), "invalid_value"))
    if errors:
        raise Unprocessable(
            "Some custom field values are invalid", code="invalid_field_values", errors=errors
        )
    return checked


def _field_error(name: str, message: str, kind: str) -> dict[str, Any]:
    return {"loc": ["body", "custom_fields", name], "message": message, "type": kind}


def require_fields(specs: Mapping[str, FieldSpec], values: Mapping[str, Any]) -> None:
    """One 422 `missing_required_fields` naming every required field without a value."""
    missing = missing_required(list(specs.values()), values)
    if missing:
        raise Unprocessable(
            f"Required fields missing: {', '.join(missing)}",
            code="missing_required_fields",
            errors=[_field_error(name, "required to publish", "missing") for name in missing],
        )


async def check_terms(
    db: AsyncSession, kind: str, ids: Sequence[int], ctype: ContentType
) -> list[int]:
    """The distinct ids, sorted, if the type takes this kind of term and every id exists."""
    wanted = sorted(set(ids))
    if not wanted:
        return wanted
    allowed = ctype.has_categories if kind == "categories" else ctype.has_tags
    if not allowed:
        raise _unprocessable(
            f"{kind}_not_allowed", f"Items of type {ctype.slug!r} take no {kind}", [kind]
        )
    model = TERM_MODELS[kind]
    found = set((await db.scalars(sa.select(model.id).where(model.id.in_(wanted)))).all())
    unknown = [term_id for term_id in wanted if term_id not in found]
    if unknown:
        raise _unprocessable(
            f"unknown_{kind}", f"No such {kind}: {', '.join(map(str, unknown))}", [kind]
        )
    return wanted
