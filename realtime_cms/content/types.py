"""Content types and their custom field definitions: gated, audited and versioned changes.

Reading needs `content.view`, changing `content_types.manage`. A type still used by items
is not deleted, and a field definition never changes in a way its stored values would
fail (`fields.check_value` decides).
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from realtime_cms.audit import record
from realtime_cms.content.fields import (
    FieldSpec,
    FieldValueError,
    check_options,
    check_value,
    decode_value,
    parse_options,
)
from realtime_cms.content.slugs import claim_slug
from realtime_cms.errors import Conflict, NotFound, Unprocessable
from realtime_cms.history import record_change
from realtime_cms.models.content import ContentItem, ContentType, CustomField, CustomFieldValue
from realtime_cms.principal import Principal
from realtime_cms.rbac.authorize import authorize
from realtime_cms.uniqueness import taken

VIEW = "content.view"
MANAGE = "content_types.manage"
TYPE_COLUMNS = ("name", "slug", "description", "is_hierarchical", "has_tags", "has_categories")
FIELD_COLUMNS = (
    "content_type_id",
    "field_name",
    "field_label",
    "field_type",
    "options",
    "is_required",
)
# `custom_fields.options` is TEXT: 65,535 bytes on MySQL/MariaDB.
MAX_OPTIONS_BYTES = 65_535


def snapshot(row: Any, columns: tuple[str, ...]) -> dict[str, Any]:
    """The row's columns as history and audit record them (`options` as an object)."""
    values = {column: getattr(row, column) for column in columns}
    if "options" in values:
        values["options"] = parse_options(values["options"])
    return values


async def audited_create(
    db: AsyncSession,
    principal: Principal,
    row: Any,
    entity: str,
    columns: tuple[str, ...],
) -> None:
    """Insert `row`, then audit `<entity>.create` and start its version_history."""
    db.add(row)
    await db.flush()
    # Answer what was stored: MariaDB keeps only whole seconds of the timestamps.
    await db.refresh(row)
    values = snapshot(row, columns)
    await record(db, principal, f"{entity}.create", entity, row.id, values)
    await record_change(db, principal, entity, row.id, "create", new=values)


async def audited_update(
    db: AsyncSession,
    principal: Principal,
    row: Any,
    entity: str,
    columns: tuple[str, ...],
    changes: dict[str, Any],
) -> None:
    """Apply `changes`; audit and version what actually changed (nothing changed: no entry)."""
    before = snapshot(row, columns)
    for key, value in changes.items():
        setattr(row, key, value)
    after = snapshot(row, columns)
    changed = [key for key in after if before[key] != after[key]]
    if not changed:
        return
    old = {key: before[key] for key in changed}
    new = {key: after[key] for key in changed}
    await db.flush()
    await db.refresh(row)
    await record(db, principal, f"{entity}.update", entity, row.id, {"old": old, "new": new})
    await record_change(db, principal, entity, row.id, "update", old=old, new=new)


async def audited_delete(
    db: AsyncSession,
    principal: Principal,
    row: Any,
    entity: str,
    columns: tuple[str, ...],
    details: dict[str, Any] | None = None,
) -> None:
    """Delete `row`; audit `<entity>.delete` (with `details`) and close its version_history."""
    row_id, values = row.id, snapshot(row, columns)
    await db.delete(row)
    await db.flush()
    await record(db, principal, f"{entity}.delete", entity, row_id, {**values, **(details or {})})
    await record_change(db, principal, entity, row_id, "delete", old=values)


# Content types


async def get_type(db: AsyncSession, principal: Principal, type_id: int) -> ContentType:
    authorize(principal, VIEW)
    content_type = await db.get(ContentType, type_id)
    if content_type is None:
        raise NotFound("No such content type")
    return content_type


async def _ensure_type_name_free(db: AsyncSession, name: str, exclude: int | None) -> None:
    # Case-insensitive on every backend (MariaDB's collation already compares that way).
    same_name = sa.func.lower(ContentType.name) == name.lower()
    if await taken(db, ContentType.id, same_name, exclude=exclude):
        raise Conflict(f"A content type named {name!r} exists", code="content_type_exists")


async def create_type(
    db: AsyncSession, principal: Principal, *, name: str, slug: str | None, **flags: Any
) -> ContentType:
    """A new content type; its slug comes from the name unless one is given."""
    authorize(principal, MANAGE)
    await _ensure_type_name_free(db, name, None)
    slug = await claim_slug(db, ContentType.slug, wanted=slug, name=name)
    content_type = ContentType(name=name, slug=slug, **flags)
    await audited_create(db, principal, content_type, "content_type", TYPE_COLUMNS)
    return content_type


async def update_type(
    db: AsyncSession, principal: Principal, type_id: int, changes: dict[str, Any]
) -> ContentType:
    """Change the given columns; a renamed type keeps its slug unless a new one is given."""
    authorize(principal, MANAGE)
    content_type = await get_type(db, principal, type_id)
    if "name" in changes:
        await _ensure_type_name_free(db, changes["name"], type_id)
    if "slug" in changes:
        await claim_slug(db, ContentType.slug, wanted=changes["slug"], name="", exclude_id=type_id)
    await audited_update(db, principal, content_type, "content_type", TYPE_COLUMNS, changes)
    return content_type


async def delete_type(db: AsyncSession, principal: Principal, type_id: int) -> None:
    """Delete a type and its field definitions; refused while any item uses the type."""
    authorize(principal, MANAGE)
    content_type = await get_type(db, principal, type_id)
    in_use = await db.scalar(
        sa.select(sa.func.count())
        .select_from(ContentItem)
        .where(ContentItem.content_type_id == type_id)
    )
    if in_use:
        noun = "item uses" if in_use == 1 else "items use"
        raise Conflict(
            f"{in_use} content {noun} this type; delete or move them first",
            code="content_type_in_use",
        )
    fields = (
        await db.scalars(sa.select(CustomField).where(CustomField.content_type_id == type_id))
    ).all()
    names = [field.field_name for field in fields]
    for field in fields:
        await audited_delete(db, principal, field, "custom_field", FIELD_COLUMNS)
    await audited_delete(
        db, principal, content_type, "content_type", TYPE_COLUMNS, {"fields": names}
    )


# Custom field definitions


async def get_field(
    db: AsyncSession, principal: Principal, type_id: int, field_id: int
) -> CustomField:
    await get_type(db, principal, type_id)
    field = await db.get(CustomField, field_id)
    if field is None or field.content_type_id != type_id:
        raise NotFound("No such field on this content type")
    return field


def _options_text(field_type: str, options: Any) -> str:
    """`options` checked for the type and encoded for the column, or Unprocessable."""
    try:
        checked = check_options(field_type, options)
        text = json.dumps(checked, ensure_ascii=False, allow_nan=False, sort_keys=True)
        size = len(text.encode("utf-8"))
    except FieldValueError as exc:
        message = str(exc)
    except (ValueError, TypeError, RecursionError):
        message = "options must be JSON that can be stored (valid Unicode, finite numbers)"
    else:
        if size <= MAX_OPTIONS_BYTES:
            return text
        message = f"options must encode to at most {MAX_OPTIONS_BYTES} bytes of JSON"
    raise Unprocessable(
        "The field's options do not fit its type",
        errors=[{"loc": ["body", "options"], "message": message, "type": "value_error"}],
    )


async def _ensure_field_name_free(
    db: AsyncSession, type_id: int, name: str, exclude: int | None
) -> None:
    same = (CustomField.content_type_id == type_id, CustomField.field_name == name)
    if await taken(db, CustomField.id, *same, exclude=exclude):
        raise Conflict(f"This type already has a field {name!r}", code="field_exists")


async def create_field(
    db: AsyncSession,
    principal: Principal,
    type_id: int,
    *,
    field_name: str,
    field_label: str,
    field_type: str,
    options: dict[str, Any] | None,
    is_required: bool,
) -> CustomField:
    authorize(principal, MANAGE)
    await get_type(db, principal, type_id)
    await _ensure_field_name_free(db, type_id, field_name, None)
    field = CustomField(
        content_type_id=type_id,
        field_name=field_name,
        field_label=field_label,
        field_type=field_type,
        options=_options_text(field_type, options),
        is_required=is_required,
    )
    await audited_create(db, principal, field, "custom_field", FIELD_COLUMNS)
    return field


def _fails(spec: FieldSpec, text: str | None) -> bool:
    try:
        check_value(spec, decode_value(text))
    except FieldValueError:
        return True
    return False


async def _check_rename(db: AsyncSession, field: CustomField, name: str) -> None:
    await _ensure_field_name_free(db, field.content_type_id, name, field.id)
    # Live documents key values by field_name, so a field with stored values keeps its name.
    stored = await db.scalar(
        sa.select(sa.func.count())
        .select_from(CustomFieldValue)
        .where(CustomFieldValue.custom_field_id == field.id)
    )
    if stored:
        raise Conflict(
            f"The field has {stored} stored values; a field with values keeps its name",
            code="field_in_use",
        )


async def _checked_options(
    db: AsyncSession, field: CustomField, changes: dict[str, Any]
) -> str | None:
    """The new options text when type or options change and every stored value still fits."""
    field_type = changes.get("field_type", field.field_type)
    if "options" not in changes and field_type == field.field_type:
        return None
    options = changes["options"] if "options" in changes else parse_options(field.options)
    text = _options_text(field_type, options)
    spec = FieldSpec(field.field_name, field_type, parse_options(text))
    stored = await db.scalars(
        sa.select(CustomFieldValue.field_value).where(CustomFieldValue.custom_field_id == field.id)
    )
    failing = sum(1 for value in stored if _fails(spec, value))
    if failing:
        noun = "value" if failing == 1 else "values"
        raise Conflict(
            f"{failing} stored {noun} would not fit the changed field; change them first",
            code="field_values_incompatible",
        )
    return text


async def update_field(
    db: AsyncSession, principal: Principal, type_id: int, field_id: int, changes: dict[str, Any]
) -> CustomField:
    """Change a definition; type and options changes must keep every stored value valid."""
    authorize(principal, MANAGE)
    field = await get_field(db, principal, type_id, field_id)
    if changes.get("field_name", field.field_name) != field.field_name:
        await _check_rename(db, field, changes["field_name"])
    options = await _checked_options(db, field, changes)
    changes = {key: value for key, value in changes.items() if key != "options"}
    if options is not None:
        changes["options"] = options
    await audited_update(db, principal, field, "custom_field", FIELD_COLUMNS, changes)
    return field


async def delete_field(db: AsyncSession, principal: Principal, type_id: int, field_id: int) -> None:
    """Delete a field definition and every item's value of it."""
    authorize(principal, MANAGE)
    field = await get_field(db, principal, type_id, field_id)
    # Explicitly, like the schema's ON DELETE CASCADE, whatever the backend enforces.
    removed = await db.execute(
        sa.delete(CustomFieldValue).where(CustomFieldValue.custom_field_id == field.id)
    )
    details = {"values_removed": int(getattr(removed, "rowcount", 0) or 0)}
    await audited_delete(db, principal, field, "custom_field", FIELD_COLUMNS, details)
