"""A content item's content as one value, read from its SQL rows and written back to them.

`ContentState` is an item's body and fields (title, excerpt, slug and custom field values)
as the live document `content:<id>` holds them. `materialize` writes a state into
`content_items` and `custom_field_values`, validating every value first: an invalid one is
not written (the last valid value stays) and is reported by field name instead.

REST refuses text with NUL characters (U+0000), but live editing can type them: into the
body, where `content_body` gets the text without them (the live document keeps what was
typed), so SQL holds the same text on every backend; into a title or excerpt, which is then
refused like any invalid value.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from realtime_cms.content.events import Mentioned
from realtime_cms.content.fields import (
    MAX_TEXT,
    FieldSpec,
    FieldValueError,
    check_value,
    decode_value,
    encode_value,
)
from realtime_cms.content.mentions import added_mentions
from realtime_cms.content.slugs import is_slug
from realtime_cms.events import publish
from realtime_cms.models.content import ContentItem, CustomField, CustomFieldValue

# The fields every item has, stored in `content_items` columns of the same names.
STANDARD_FIELDS = ("title", "excerpt", "slug")
TITLE_MAX = 255
SLUG_MAX = 255
NUL = "\x00"
# Yjs hands every number over as a float; whole numbers up to here are integers.
_MAX_SAFE_INTEGER = 2**53 - 1


def plain(value: Any) -> Any:
    """A field value as plain JSON data: whole floats as integers, containers copied."""
    if isinstance(value, float) and value.is_integer() and abs(value) <= _MAX_SAFE_INTEGER:
        return int(value)
    if isinstance(value, Mapping):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    return value


@dataclass(frozen=True, slots=True)
class ContentState:
    """An item's content: the Markdown body and the fields by name (absent: no value)."""

    body: str
    fields: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, body: str | None, fields: Mapping[str, Any]) -> ContentState:
        """The canonical state: None values dropped, numbers as JSON gives them back."""
        return cls(body or "", {k: plain(v) for k, v in fields.items() if v is not None})


@dataclass(frozen=True, slots=True)
class Outcome:
    """What `materialize` did: whether the item exists, what changed, what it refused."""

    found: bool
    changed: bool = False
    errors: dict[str, str] = field(default_factory=dict)


async def definitions(db: AsyncSession, content_type_id: int) -> dict[str, CustomField]:
    """The type's custom field definitions by field name."""
    rows = await db.scalars(
        sa.select(CustomField).where(CustomField.content_type_id == content_type_id)
    )
    return {row.field_name: row for row in rows}


async def _stored_values(db: AsyncSession, item_id: int) -> dict[int, CustomFieldValue]:
    """The item's value rows by custom field id (the first row of each field)."""
    rows = await db.scalars(
        sa.select(CustomFieldValue)
        .where(CustomFieldValue.content_item_id == item_id)
        .order_by(CustomFieldValue.id)
    )
    values: dict[int, CustomFieldValue] = {}
    for row in rows:
        values.setdefault(row.custom_field_id, row)
    return values


async def sql_state(db: AsyncSession, item_id: int) -> ContentState | None:
    """The item's content as its SQL rows hold it; None if there is no such item."""
    item = await db.get(ContentItem, item_id)
    if item is None:
        return None
    fields: dict[str, Any] = {"title": item.title, "excerpt": item.excerpt, "slug": item.slug}
    names = {row.id: name for name, row in (await definitions(db, item.content_type_id)).items()}
    for field_id, row in (await _stored_values(db, item_id)).items():
        if field_id in names:
            fields[names[field_id]] = decode_value(row.field_value)
    return ContentState.of(item.content_body, fields)


def _no_nul(value: str) -> str:
    if NUL in value:
        raise FieldValueError("must not contain NUL characters (U+0000)")
    return value


def _check_title(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise FieldValueError("a title is required")
    if len(value) > TITLE_MAX:
        raise FieldValueError(f"at most {TITLE_MAX} characters")
    return _no_nul(value)


def _check_excerpt(value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise FieldValueError("expected text")
    if value is not None and len(value) > MAX_TEXT:
        raise FieldValueError(f"at most {MAX_TEXT} characters")
    return None if value is None else _no_nul(value)


async def _check_slug(db: AsyncSession, item: ContentItem, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise FieldValueError("a slug is required")
    if len(value) > SLUG_MAX or not is_slug(value):
        raise FieldValueError(
            f"lowercase letters, digits and single hyphens, at most {SLUG_MAX} characters"
        )
    clash = await db.scalar(
        sa.select(ContentItem.id)
        .where(
            ContentItem.slug == value,
            ContentItem.content_type_id == item.content_type_id,
            ContentItem.id != item.id,
        )
        .limit(1)
    )
    if clash is not None:
        raise FieldValueError("another item of this type has this slug")
    return value


async def _standard(
    db: AsyncSession, item: ContentItem, state: ContentState, errors: dict[str, str]
) -> dict[str, Any]:
    """The valid standard column values of `state`; the refused ones go to `errors`."""
    fields = state.fields
    values: dict[str, Any] = {"content_body": state.body.replace(NUL, "")}
    checks = {
        "title": lambda: _check_title(fields.get("title")),
        "excerpt": lambda: _check_excerpt(fields.get("excerpt")),
    }
    for name, check in checks.items():
        try:
            values[name] = check()
        except FieldValueError as exc:
            errors[name] = str(exc)
    try:
        values["slug"] = await _check_slug(db, item, fields.get("slug"))
    except FieldValueError as exc:
        errors["slug"] = str(exc)
    return values


async def invalid_fields(
    db: AsyncSession, item: ContentItem, fields: Mapping[str, Any]
) -> dict[str, str]:
    """Why each of `fields` (a write's values by name) could not be stored; empty if all can."""
    state = ContentState.of(None, fields)
    errors: dict[str, str] = {}
    await _standard(db, item, state, errors)
    custom = await definitions(db, item.content_type_id)
    for name in fields:
        if name in custom:
            try:
                check_value(FieldSpec.of(custom[name]), state.fields.get(name))
            except FieldValueError as exc:
                errors[name] = str(exc)
        elif name not in STANDARD_FIELDS:
            errors[name] = "not a field of this content type"
    return {name: message for name, message in errors.items() if name in fields}


async def _write_custom(
    db: AsyncSession, item: ContentItem, state: ContentState, errors: dict[str, str]
) -> bool:
    """Write the valid custom field values that differ from the stored ones."""
    stored = await _stored_values(db, item.id)
    changed = False
    for name, definition in sorted((await definitions(db, item.content_type_id)).items()):
        try:
            value = check_value(FieldSpec.of(definition), state.fields.get(name))
        except FieldValueError as exc:
            errors[name] = str(exc)
            continue
        text = encode_value(value)
        row = stored.get(definition.id)
        if row is None:
            if text is not None:
                db.add(
                    CustomFieldValue(
                        content_item_id=item.id, custom_field_id=definition.id, field_value=text
                    )
                )
                changed = True
        elif row.field_value != text:
            row.field_value = text
            changed = True
    return changed


async def materialize(
    db: AsyncSession, item_id: int, state: ContentState, *, editors: Collection[int] = ()
) -> Outcome:
    """Write `state` into the item's rows in `db` (flushed, not committed); see the module.

    Users newly @mentioned in the body are published as `Mentioned` by `editors`.
    """
    item = await db.get(ContentItem, item_id, with_for_update=True)
    if item is None:
        return Outcome(found=False)
    previous_body = item.content_body
    errors: dict[str, str] = {}
    values = await _standard(db, item, state, errors)
    changed = await _write_custom(db, item, state, errors)
    for column, value in values.items():
        if getattr(item, column) != value:
            setattr(item, column, value)
            changed = True
    if changed:
        item.updated_at = datetime.now(UTC)
    await db.flush()
    if item.content_body != previous_body:
        added = added_mentions(previous_body, state.body)
        if added:
            event = Mentioned(item.id, item.title, added, frozenset(editors))
            await publish(db, event)
    return Outcome(found=True, changed=changed, errors=errors)
