"""Content items: create, read, list, change, delete; custom field values and terms.

Content attributes (title, slug, excerpt, body, custom field values) of an existing item are
written through its live document (`ContentBinding.write`) so they merge with people typing;
everything else (status, visibility, password, parent, site, terms) is plain SQL. Every
change is validated first, then audited and recorded in `version_history`; a status change
publishes `ContentStatusChanged`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from realtime_cms.audit import record
from realtime_cms.content import checks
from realtime_cms.content.binding import ContentBinding
from realtime_cms.content.events import ContentStatusChanged
from realtime_cms.content.fields import encode_value
from realtime_cms.content.lifecycle import NEEDS_REQUIRED_FIELDS, plan_status
from realtime_cms.content.queries import (
    field_rows,
    load_item,
    specs_of,
    split_term_filters,
    views_of,
)
from realtime_cms.content.schemas import ItemCreate
from realtime_cms.content.slugs import unique_slug
from realtime_cms.errors import Conflict, Unprocessable
from realtime_cms.events import publish
from realtime_cms.history import record_change
from realtime_cms.listing import ListQuery, Page
from realtime_cms.models.content import (
    ContentItem,
    ContentItemCategory,
    ContentItemTag,
    ContentType,
    CustomFieldValue,
)
from realtime_cms.models.versions import Version, VersionContent
from realtime_cms.principal import Principal
from realtime_cms.rbac.authorize import authorize
from realtime_cms.security.passwords import Passwords

TermKind = Literal["categories", "tags"]
# Text fields written through the live document's `fields` map.
CONTENT_FIELDS = ("title", "slug", "excerpt")
# Values longer than this (as JSON) appear in version_history as a SHA-256 digest.
_HISTORY_INLINE = 200
_TERM_ROWS: dict[str, tuple[Any, Any]] = {
    "categories": (ContentItemCategory, ContentItemCategory.category_id),
    "tags": (ContentItemTag, ContentItemTag.tag_id),
}


@dataclass(frozen=True, slots=True)
class Authored:
    """An item as `authorize` sees it: `<action>.own` applies to its author."""

    owner_id: int


def _require_any(principal: Principal, action: str) -> None:
    """Refuse early unless the principal holds `action` or its `.own` variant."""
    if not principal.can(f"{action}.own"):
        authorize(principal, action)


async def get_item(db: AsyncSession, principal: Principal, item_id: int) -> dict[str, Any]:
    authorize(principal, "content.view")
    item = await load_item(db, item_id)
    return (await views_of(db, [item], with_body=True))[0]


async def list_items(
    db: AsyncSession, principal: Principal, query: ListQuery
) -> Page[dict[str, Any]]:
    """A page of items (without bodies); `q` searches titles and excerpts."""
    authorize(principal, "content.view")
    where = split_term_filters(query)
    if search := query.extra.get("q"):
        needle = search.lower()
        where.append(
            sa.or_(
                sa.func.lower(ContentItem.title).contains(needle, autoescape=True),
                sa.func.lower(ContentItem.excerpt).contains(needle, autoescape=True),
            )
        )
    page = await query.fetch(db, sa.select(ContentItem), *where)
    views = await views_of(db, page.items, with_body=False)
    return Page(items=views, total=page.total, limit=page.limit, offset=page.offset)


async def create_item(
    db: AsyncSession, principal: Principal, *, passwords: Passwords, data: ItemCreate
) -> dict[str, Any]:
    """Create an item authored by the caller; a non-draft status needs `content.publish`."""
    authorize(principal, "content.create")
    site = await checks.require_site(db, principal, data.site_id)
    ctype = await checks.require_type(db, data.content_type_id)
    rows = await field_rows(db, ctype.id)
    specs = specs_of(rows)
    values = checks.check_values(specs, data.custom_fields)
    await checks.check_parent(
        db, item_id=None, parent_id=data.parent_id, ctype=ctype, site_id=site.id
    )
    terms = {
        kind: await checks.check_terms(db, kind, getattr(data, kind), ctype) for kind in _TERM_ROWS
    }
    stamps = plan_status(principal, "draft", data.status, data.published_at)
    if stamps.get("status") in NEEDS_REQUIRED_FIELDS:
        checks.require_fields(specs, values)
    if data.slug is not None:
        slug = await checks.check_slug(db, data.slug, ctype.id, None)
    else:
        scope = [ContentItem.content_type_id == ctype.id]
        slug = await unique_slug(db, ContentItem.slug, data.title, scope=scope)
    item = ContentItem(
        site_id=site.id,
        content_type_id=ctype.id,
        author_id=principal.user_id,
        parent_id=data.parent_id,
        title=data.title,
        slug=slug,
        content_body=data.body,
        excerpt=data.excerpt,
        visibility=data.visibility,
        password=await _password_hash(passwords, data.visibility, data.password, None),
        **stamps,
    )
    db.add(item)
    await db.flush()
    by_name = {row.field_name: row.id for row in rows}
    db.add_all(
        CustomFieldValue(
            content_item_id=item.id, custom_field_id=by_name[name], field_value=encode_value(value)
        )
        for name, value in values.items()
        if value is not None
    )
    for kind, ids in terms.items():
        await _replace_terms(db, item.id, kind, ids)
    await db.refresh(item)
    view = (await views_of(db, [item], with_body=True))[0]
    await record_change(db, principal, "content_item", item.id, "create", new=_history(item, view))
    await record(
        db,
        principal,
        "content_item.create",
        "content_item",
        item.id,
        {"title": item.title, "site_id": item.site_id, "status": item.status},
    )
    return view


async def _password_hash(
    passwords: Passwords, visibility: str, password: str | None, stored: str | None
) -> str | None:
    """The hash to store: a new password hashed, the stored one kept, none unless protected."""
    if visibility != "password":
        if password is not None:
            raise Unprocessable(
                "A password applies only to visibility 'password'",
                code="password_not_applicable",
                errors=[
                    {
                        "loc": ["body", "password"],
                        "message": "not applicable",
                        "type": "password_not_applicable",
                    }
                ],
            )
        return None
    if password is not None:
        return await passwords.hash(password)
    if stored is None:
        raise Unprocessable(
            "A password-protected item needs a password",
            code="password_required",
            errors=[{"loc": ["body", "password"], "message": "required", "type": "missing"}],
        )
    return stored


def _digest(value: Any) -> Any:
    text = json.dumps(value, default=str, sort_keys=True, ensure_ascii=False)
    if len(text) <= _HISTORY_INLINE:
        return value
    return {"sha256": hashlib.sha256(text.encode()).hexdigest(), "chars": len(text)}


def _history(item: ContentItem, view: Mapping[str, Any]) -> dict[str, Any]:
    """What version_history keeps of an item: attributes, long texts as digests, no secrets."""
    kept = (
        "title",
        "slug",
        "status",
        "visibility",
        "site_id",
        "parent_id",
        "published_at",
        "archived_at",
        "expired_at",
        "categories",
        "tags",
    )
    snapshot = {name: view[name] for name in kept}
    snapshot["excerpt"] = _digest(view["excerpt"])
    snapshot["body"] = _digest(view["body"])
    snapshot["custom_fields"] = {k: _digest(v) for k, v in view["custom_fields"].items()}
    snapshot["password_set"] = item.password is not None
    return snapshot


async def _replace_terms(db: AsyncSession, item_id: int, kind: str, ids: Sequence[int]) -> None:
    model, column = _TERM_ROWS[kind]
    await db.execute(sa.delete(model).where(model.content_item_id == item_id, column.not_in(ids)))
    present = set(
        (await db.scalars(sa.select(column).where(model.content_item_id == item_id))).all()
    )
    key = column.key
    db.add_all(model(content_item_id=item_id, **{key: term}) for term in ids if term not in present)
    await db.flush()


async def resolve_base(
    db: AsyncSession, item_id: int, *, version_id: int | None, if_match: str | None
) -> int | None:
    """The version a write was based on: `base_version` (an id) or `If-Match` (a content hash)."""
    if version_id is not None and if_match is not None:
        raise Conflict("Send base_version or If-Match, not both", code="ambiguous_base_version")
    if version_id is not None:
        found = await db.scalar(
            sa.select(Version.id).where(Version.id == version_id, Version.content_id == item_id)
        )
        if found is None:
            raise Unprocessable(
                "base_version is not a version of this item",
                code="unknown_base_version",
                errors=[
                    {
                        "loc": ["body", "base_version"],
                        "message": "unknown version",
                        "type": "unknown_base_version",
                    }
                ],
            )
        return version_id
    tag = (if_match or "").strip().removeprefix("W/").strip('"').lower()
    if not tag or tag == "*":
        return None
    found = await db.scalar(
        sa.select(Version.id)
        .join(VersionContent, VersionContent.version_id == Version.id)
        .where(Version.content_id == item_id, VersionContent.content_hash == tag)
        .order_by(Version.version_number.desc())
        .limit(1)
    )
    if found is None:
        raise Conflict(
            "If-Match names no version of this item", code="unknown_base_version", status=412
        )
    return int(found)


async def update_item(
    db: AsyncSession,
    principal: Principal,
    *,
    binding: ContentBinding,
    passwords: Passwords,
    item_id: int,
    changes: Mapping[str, Any],
    base_version: int | None = None,
    if_match: str | None = None,
) -> dict[str, Any]:
    """Apply a partial change: content through the live document, the rest in SQL."""
    _require_any(principal, "content.update")
    item = await load_item(db, item_id)
    authorize(principal, "content.update", Authored(item.author_id))
    ctype = await checks.require_type(db, item.content_type_id)
    specs = specs_of(await field_rows(db, ctype.id))
    base_id = await resolve_base(db, item.id, version_id=base_version, if_match=if_match)
    content = await _plan_content(db, item, specs, changes)
    attributes = await _plan_attributes(db, principal, passwords, item, ctype, changes)
    terms = {
        kind: await checks.check_terms(db, kind, changes[kind], ctype)
        for kind in _TERM_ROWS
        if changes.get(kind) is not None
    }
    status = attributes.get("status", item.status)
    if status in NEEDS_REQUIRED_FIELDS and ("status" in attributes or "custom_fields" in changes):
        current = (await binding.current(item.id)).fields
        checks.require_fields(specs, {**{k: current.get(k) for k in specs}, **content})
    before = _history(item, (await views_of(db, [item], with_body=True))[0])
    if content or changes.get("body") is not None:
        await binding.write(
            db,
            principal,
            item.id,
            body=changes.get("body"),
            fields=content or None,
            base_version_id=base_id,
            origin="rest",
        )
        item = await load_item(db, item_id)
    for name, value in attributes.items():
        setattr(item, name, value)
    for kind, ids in terms.items():
        await _replace_terms(db, item.id, kind, ids)
    await db.flush()
    await db.refresh(item)
    return await _record_update(db, principal, item, before, attributes)


async def _plan_content(
    db: AsyncSession, item: ContentItem, specs: Mapping[str, Any], changes: Mapping[str, Any]
) -> dict[str, Any]:
    """The live document's field changes (title, slug, excerpt, custom values), checked."""
    content = {name: changes[name] for name in CONTENT_FIELDS if name in changes}
    if "slug" in content and content["slug"] != item.slug:
        await checks.check_slug(db, content["slug"], item.content_type_id, item.id)
    content.update(checks.check_values(specs, changes.get("custom_fields") or {}))
    return content


async def _plan_attributes(
    db: AsyncSession,
    principal: Principal,
    passwords: Passwords,
    item: ContentItem,
    ctype: ContentType,
    changes: Mapping[str, Any],
) -> dict[str, Any]:
    """The SQL-only column changes: site, parent, visibility and password, status."""
    site_id = changes.get("site_id", item.site_id)
    parent_id = changes["parent_id"] if "parent_id" in changes else item.parent_id
    if site_id != item.site_id:
        await checks.require_site(db, principal, site_id)
        if await db.scalar(
            sa.select(ContentItem.id).where(ContentItem.parent_id == item.id).limit(1)
        ):
            raise Conflict("Move the item's children first", code="content_has_children")
    if site_id != item.site_id or "parent_id" in changes:
        await checks.check_parent(
            db, item_id=item.id, parent_id=parent_id, ctype=ctype, site_id=site_id
        )
    attributes: dict[str, Any] = {"site_id": site_id, "parent_id": parent_id}
    if "visibility" in changes or "password" in changes:
        visibility = changes.get("visibility", item.visibility)
        attributes["visibility"] = visibility
        attributes["password"] = await _password_hash(
            passwords, visibility, changes.get("password"), item.password
        )
    attributes.update(
        plan_status(principal, item.status, changes.get("status"), changes.get("published_at"))
    )
    return {name: value for name, value in attributes.items() if getattr(item, name) != value}


async def _record_update(
    db: AsyncSession,
    principal: Principal,
    item: ContentItem,
    before: Mapping[str, Any],
    attributes: Mapping[str, Any],
) -> dict[str, Any]:
    view = (await views_of(db, [item], with_body=True))[0]
    after = _history(item, view)
    old = {key: before[key] for key in after if before[key] != after[key]}
    new = {key: after[key] for key in old}
    if "password" in attributes:
        old["password"] = "(set)" if before["password_set"] else None
        new["password"] = "(changed)" if item.password is not None else None
    await record_change(db, principal, "content_item", item.id, "update", old=old, new=new)
    if "status" in old:
        await record(
            db,
            principal,
            "content_item.transition",
            "content_item",
            item.id,
            {"from": old["status"], "to": new["status"]},
        )
        changed = ContentStatusChanged(
            item_id=item.id,
            title=item.title,
            author_id=item.author_id,
            old=old["status"],
            new=new["status"],
            actor=principal,
        )
        await publish(db, changed)
    if new:
        await record(
            db, principal, "content_item.update", "content_item", item.id, {"changed": sorted(new)}
        )
    return view


async def delete_item(db: AsyncSession, principal: Principal, *, item_id: int) -> None:
    """Delete an item that has no children (its values, terms and versions go with it)."""
    _require_any(principal, "content.delete")
    item = await load_item(db, item_id)
    authorize(principal, "content.delete", Authored(item.author_id))
    if await db.scalar(sa.select(ContentItem.id).where(ContentItem.parent_id == item.id).limit(1)):
        raise Conflict("Delete or move the item's children first", code="content_has_children")
    before = _history(item, (await views_of(db, [item], with_body=True))[0])
    await db.delete(item)
    await db.flush()
    await record_change(db, principal, "content_item", item_id, "delete", old=before)
    await record(
        db, principal, "content_item.delete", "content_item", item_id, {"title": before["title"]}
    )


async def read_fields(db: AsyncSession, principal: Principal, *, item_id: int) -> dict[str, Any]:
    view = await get_item(db, principal, item_id)
    return {"item_id": item_id, "fields": view["custom_fields"]}


async def write_fields(
    db: AsyncSession,
    principal: Principal,
    *,
    binding: ContentBinding,
    passwords: Passwords,
    item_id: int,
    values: Mapping[str, Any],
    base_version: int | None = None,
    if_match: str | None = None,
) -> dict[str, Any]:
    """Set (or with null, remove) custom field values through the live document."""
    view = await update_item(
        db,
        principal,
        binding=binding,
        passwords=passwords,
        item_id=item_id,
        changes={"custom_fields": dict(values)},
        base_version=base_version,
        if_match=if_match,
    )
    return {"item_id": item_id, "fields": view["custom_fields"]}


async def set_terms(
    db: AsyncSession, principal: Principal, *, item_id: int, kind: TermKind, ids: Sequence[int]
) -> dict[str, Any]:
    """Replace the item's categories (or tags) with exactly `ids`."""
    _require_any(principal, "content.update")
    item = await load_item(db, item_id)
    authorize(principal, "content.update", Authored(item.author_id))
    ctype = await checks.require_type(db, item.content_type_id)
    wanted = await checks.check_terms(db, kind, ids, ctype)
    before = (await views_of(db, [item], with_body=False))[0][kind]
    await _replace_terms(db, item.id, kind, wanted)
    if before != wanted:
        await record_change(
            db, principal, "content_item", item.id, "update", old={kind: before}, new={kind: wanted}
        )
        await record(db, principal, f"content_item.{kind}", "content_item", item.id, {kind: wanted})
    return {"item_id": item.id, "ids": wanted}
