"""Reads shared by the item service and the delivery API: items with their values and terms."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from realtime_cms.content.fields import FieldSpec, decode_value
from realtime_cms.errors import NotFound
from realtime_cms.listing import Condition, Field, Listing, ListQuery
from realtime_cms.models.content import (
    ContentItem,
    ContentItemCategory,
    ContentItemTag,
    CustomField,
    CustomFieldValue,
)

# The attributes an item view carries besides its values and terms.
_ATTRIBUTES = (
    "id",
    "site_id",
    "content_type_id",
    "author_id",
    "parent_id",
    "title",
    "slug",
    "excerpt",
    "status",
    "visibility",
    "published_at",
    "archived_at",
    "expired_at",
    "created_at",
    "updated_at",
)
# Filters on an item's terms, declared by listings and turned into subqueries here.
TERM_FIELDS: dict[str, tuple[Any, Any]] = {
    "category_id": (ContentItemCategory.category_id, ContentItemCategory.content_item_id),
    "tag_id": (ContentItemTag.tag_id, ContentItemTag.content_item_id),
}


def term_field(name: str) -> Field:
    """A listing field filtering items by one of their category or tag ids (`eq`, `in`)."""
    return Field(TERM_FIELDS[name][0], int, sortable=False, operators=("eq", "in"))


def split_term_filters(query: ListQuery) -> list[sa.ColumnElement[bool]]:
    """Take the category/tag conditions out of `query`, answered as `id IN (subquery)`."""
    kept: list[Condition] = []
    clauses: list[sa.ColumnElement[bool]] = []
    for condition in query.conditions:
        if condition.field not in TERM_FIELDS:
            kept.append(condition)
            continue
        term, item = TERM_FIELDS[condition.field]
        inner = ListQuery(
            listing=Listing(fields={condition.field: Field(term, int)}), conditions=[condition]
        )
        clauses.append(ContentItem.id.in_(sa.select(item).where(*inner.where())))
    query.conditions = kept
    return clauses


async def field_rows(db: AsyncSession, content_type_id: int) -> list[CustomField]:
    """The type's custom field definitions in definition order."""
    rows = await db.scalars(
        sa.select(CustomField)
        .where(CustomField.content_type_id == content_type_id)
        .order_by(CustomField.id)
    )
    return list(rows.all())


def specs_of(rows: Iterable[CustomField]) -> dict[str, FieldSpec]:
    return {row.field_name: FieldSpec.of(row) for row in rows}


async def values_of(db: AsyncSession, item_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """Decoded custom field values by item id, then by field name (null when unset)."""
    result: dict[int, dict[str, Any]] = {item_id: {} for item_id in item_ids}
    if not item_ids:
        return result
    rows = await db.execute(
        sa.select(ContentItem.id, CustomField.field_name)
        .join(CustomField, CustomField.content_type_id == ContentItem.content_type_id)
        .where(ContentItem.id.in_(item_ids))
        .order_by(CustomField.id)
    )
    for item_id, name in rows:
        result[item_id][name] = None
    stored = await db.execute(
        sa.select(
            CustomFieldValue.content_item_id, CustomField.field_name, CustomFieldValue.field_value
        )
        .join(CustomField, CustomField.id == CustomFieldValue.custom_field_id)
        .where(CustomFieldValue.content_item_id.in_(item_ids))
        .order_by(CustomFieldValue.id)
    )
    for item_id, name, text in stored:
        result[item_id][name] = decode_value(text)
    return result


async def terms_of(
    db: AsyncSession, item_ids: Sequence[int]
) -> tuple[dict[int, list[int]], dict[int, list[int]]]:
    """Category ids and tag ids by item id, each sorted."""
    categories: dict[int, list[int]] = defaultdict(list)
    tags: dict[int, list[int]] = defaultdict(list)
    if item_ids:
        for target, (term, item) in (
            (categories, TERM_FIELDS["category_id"]),
            (tags, TERM_FIELDS["tag_id"]),
        ):
            rows = await db.execute(sa.select(item, term).where(item.in_(item_ids)).order_by(term))
            for item_id, term_id in rows:
                target[item_id].append(term_id)
    return categories, tags


async def views_of(
    db: AsyncSession, items: Sequence[ContentItem], *, with_body: bool
) -> list[dict[str, Any]]:
    """Items as the API answers them: attributes, custom field values, category and tag ids."""
    ids = [item.id for item in items]
    values = await values_of(db, ids)
    categories, tags = await terms_of(db, ids)
    views = []
    for item in items:
        view = {name: getattr(item, name) for name in _ATTRIBUTES}
        view.update(
            custom_fields=values[item.id],
            categories=categories.get(item.id, []),
            tags=tags.get(item.id, []),
        )
        if with_body:
            view["body"] = item.content_body or ""
        views.append(view)
    return views


async def load_item(db: AsyncSession, item_id: int) -> ContentItem:
    """The item, or NotFound(code="content_not_found")."""
    item = await db.get(ContentItem, item_id, populate_existing=True)
    if item is None:
        raise NotFound("No such content item", code="content_not_found")
    return item
