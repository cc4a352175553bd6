"""REST for content types and their custom field definitions."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from handlers.api import Call, Routes
from realtime_cms.content import types as service
from realtime_cms.content.schemas_types import (
    ContentTypeCreate,
    ContentTypeOut,
    ContentTypeUpdate,
    CustomFieldCreate,
    CustomFieldOut,
    CustomFieldUpdate,
)
from realtime_cms.listing import Field, Listing, Page
from realtime_cms.models.content import ContentType, CustomField

routes = Routes("content types")

TYPE = "/api/v1/content-types/{type_id:\\d+}"
FIELD = TYPE + "/fields/{field_id:\\d+}"

TYPE_LISTING = Listing(
    fields={
        "id": Field(ContentType.id, int),
        "name": Field(ContentType.name),
        "slug": Field(ContentType.slug),
        "is_hierarchical": Field(ContentType.is_hierarchical, bool),
        "has_tags": Field(ContentType.has_tags, bool),
        "has_categories": Field(ContentType.has_categories, bool),
        "created_at": Field(ContentType.created_at, datetime),
        "updated_at": Field(ContentType.updated_at, datetime),
    },
    default_sort="id",
)

FIELD_LISTING = Listing(
    fields={
        "id": Field(CustomField.id, int),
        "field_name": Field(CustomField.field_name),
        "field_label": Field(CustomField.field_label),
        "field_type": Field(CustomField.field_type),
        "is_required": Field(CustomField.is_required, bool),
        "created_at": Field(CustomField.created_at, datetime),
        "updated_at": Field(CustomField.updated_at, datetime),
    },
    default_sort="id",
)


@routes.get(
    "/api/v1/content-types",
    "List content types",
    permission="content.view",
    response=ContentTypeOut,
    listing=TYPE_LISTING,
)
async def list_content_types(call: Call) -> Page[ContentType]:
    assert call.query is not None
    return await call.query.fetch(call.db, sa.select(ContentType))


@routes.post(
    "/api/v1/content-types",
    "Create a content type",
    permission="content_types.manage",
    body=ContentTypeCreate,
    response=ContentTypeOut,
    status=201,
)
async def create_content_type(call: Call) -> ContentType:
    """The slug is made from the name (made unique with -2, -3...) unless one is given."""
    body: ContentTypeCreate = call.body
    return await service.create_type(call.db, call.principal, **body.model_dump())


@routes.get(TYPE, "Read a content type", permission="content.view", response=ContentTypeOut)
async def get_content_type(call: Call) -> ContentType:
    return await service.get_type(call.db, call.principal, call.path_int("type_id"))


@routes.patch(
    TYPE,
    "Change a content type",
    permission="content_types.manage",
    body=ContentTypeUpdate,
    response=ContentTypeOut,
)
async def update_content_type(call: Call) -> ContentType:
    """Only the fields sent change; a renamed type keeps its slug unless a new one is sent."""
    body: ContentTypeUpdate = call.body
    return await service.update_type(
        call.db, call.principal, call.path_int("type_id"), body.changes()
    )


@routes.delete(TYPE, "Delete an unused content type", permission="content_types.manage")
async def delete_content_type(call: Call) -> None:
    """Refused with 409 `content_type_in_use` while content items use the type."""
    await service.delete_type(call.db, call.principal, call.path_int("type_id"))


@routes.get(
    TYPE + "/fields",
    "List a content type's custom fields",
    permission="content.view",
    response=CustomFieldOut,
    listing=FIELD_LISTING,
)
async def list_custom_fields(call: Call) -> Page[CustomField]:
    assert call.query is not None
    type_id = call.path_int("type_id")
    await service.get_type(call.db, call.principal, type_id)
    return await call.query.fetch(
        call.db, sa.select(CustomField), CustomField.content_type_id == type_id
    )


@routes.post(
    TYPE + "/fields",
    "Add a custom field to a content type",
    permission="content_types.manage",
    body=CustomFieldCreate,
    response=CustomFieldOut,
    status=201,
)
async def create_custom_field(call: Call) -> CustomField:
    """`options` must suit the field type (422 with the reason otherwise)."""
    body: CustomFieldCreate = call.body
    return await service.create_field(
        call.db, call.principal, call.path_int("type_id"), **body.model_dump()
    )


@routes.get(FIELD, "Read a custom field", permission="content.view", response=CustomFieldOut)
async def get_custom_field(call: Call) -> CustomField:
    return await service.get_field(
        call.db, call.principal, call.path_int("type_id"), call.path_int("field_id")
    )


@routes.patch(
    FIELD,
    "Change a custom field",
    permission="content_types.manage",
    body=CustomFieldUpdate,
    response=CustomFieldOut,
)
async def update_custom_field(call: Call) -> CustomField:
    """A new type or options must keep every stored value valid (409
    `field_values_incompatible` otherwise); a field with stored values keeps its name."""
    body: CustomFieldUpdate = call.body
    return await service.update_field(
        call.db,
        call.principal,
        call.path_int("type_id"),
        call.path_int("field_id"),
        body.changes(),
    )


@routes.delete(FIELD, "Delete a custom field and its values", permission="content_types.manage")
async def delete_custom_field(call: Call) -> None:
    await service.delete_field(
        call.db, call.principal, call.path_int("type_id"), call.path_int("field_id")
    )
