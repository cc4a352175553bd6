"""REST for content items: CRUD, lifecycle, custom field values, categories and tags.

Changing, deleting and assigning need `content.update` / `content.delete`, or their `.own`
variants on items one authored: no single permission gates those routes, so they declare
none and the service decides (a caller holding neither gets `403 permission_denied`).
"""

from __future__ import annotations

from datetime import datetime

from handlers import keys
from handlers.api import Call, Routes
from realtime_cms.content import items
from realtime_cms.content.queries import term_field
from realtime_cms.content.schemas import (
    FieldsOut,
    FieldsUpdate,
    IdsOut,
    IdsUpdate,
    ItemCreate,
    ItemOut,
    ItemSummaryOut,
    ItemUpdate,
)
from realtime_cms.listing import Field, Listing, Page
from realtime_cms.models.content import ContentItem

routes = Routes("content")

ITEM = "/api/v1/content-items/{item_id:\\d+}"
ITEM_LISTING = Listing(
    fields={
        "id": Field(ContentItem.id, int),
        "site_id": Field(ContentItem.site_id, int),
        "content_type_id": Field(ContentItem.content_type_id, int),
        "author_id": Field(ContentItem.author_id, int),
        "parent_id": Field(ContentItem.parent_id, int),
        "status": Field(ContentItem.status),
        "visibility": Field(ContentItem.visibility),
        "title": Field(ContentItem.title),
        "slug": Field(ContentItem.slug),
        "published_at": Field(ContentItem.published_at, datetime),
        "created_at": Field(ContentItem.created_at, datetime),
        "updated_at": Field(ContentItem.updated_at, datetime),
        "category_id": term_field("category_id"),
        "tag_id": term_field("tag_id"),
    },
    default_sort="id",
    extra_params=frozenset({"q"}),
)


@routes.get(
    "/api/v1/content-items",
    "List content items",
    permission="content.view",
    response=ItemSummaryOut,
    listing=ITEM_LISTING,
)
async def list_content_items(call: Call) -> Page[dict[str, object]]:
    """Items without their bodies. `q` is a case-insensitive search of titles and excerpts;
    `filter[category_id]` and `filter[tag_id]` take `eq` or `in`."""
    assert call.query is not None
    return await items.list_items(call.db, call.principal, call.query)


@routes.post(
    "/api/v1/content-items",
    "Create a content item",
    permission="content.create",
    body=ItemCreate,
    response=ItemOut,
    status=201,
)
async def create_content_item(call: Call) -> dict[str, object]:
    """The caller becomes the author. A status other than draft needs `content.publish`."""
    return await items.create_item(
        call.db, call.principal, passwords=call.app[keys.PASSWORDS], data=call.body
    )


@routes.get(ITEM, "Read a content item", permission="content.view", response=ItemOut)
async def get_content_item(call: Call) -> dict[str, object]:
    return await items.get_item(call.db, call.principal, call.path_int("item_id"))


@routes.patch(ITEM, "Change a content item", body=ItemUpdate, response=ItemOut)
async def update_content_item(call: Call) -> dict[str, object]:
    """Needs `content.update` (or `content.update.own` on one's own item); status changes
    need `content.publish`. Title, slug, excerpt, body and custom field values merge with
    live edits; `If-Match` (a version's content hash) or `base_version` names what the
    change was based on."""
    body: ItemUpdate = call.body
    return await items.update_item(
        call.db,
        call.principal,
        binding=call.app[keys.CONTENT],
        passwords=call.app[keys.PASSWORDS],
        item_id=call.path_int("item_id"),
        changes=body.changes(),
        base_version=body.base_version,
        if_match=call.request.headers.get("If-Match"),
    )


@routes.delete(ITEM, "Delete a content item")
async def delete_content_item(call: Call) -> None:
    """Needs `content.delete` (or `content.delete.own`); live editors are disconnected."""
    item_id = call.path_int("item_id")
    await items.delete_item(call.db, call.principal, item_id=item_id)
    binding = call.app[keys.CONTENT]
    call.after_commit.append(lambda: binding.close(item_id))


@routes.get(
    f"{ITEM}/fields",
    "Read an item's custom field values",
    permission="content.view",
    response=FieldsOut,
)
async def get_content_item_fields(call: Call) -> dict[str, object]:
    return await items.read_fields(call.db, call.principal, item_id=call.path_int("item_id"))


@routes.put(
    f"{ITEM}/fields", "Set an item's custom field values", body=FieldsUpdate, response=FieldsOut
)
async def put_content_item_fields(call: Call) -> dict[str, object]:
    """Sets the fields named (null removes a value); others keep theirs. Needs
    `content.update` (or `.own`)."""
    body: FieldsUpdate = call.body
    return await items.write_fields(
        call.db,
        call.principal,
        binding=call.app[keys.CONTENT],
        passwords=call.app[keys.PASSWORDS],
        item_id=call.path_int("item_id"),
        values=body.fields,
        base_version=body.base_version,
        if_match=call.request.headers.get("If-Match"),
    )


@routes.put(f"{ITEM}/categories", "Set an item's categories", body=IdsUpdate, response=IdsOut)
async def put_content_item_categories(call: Call) -> dict[str, object]:
    """Replaces the item's categories. Needs `content.update` (or `.own`)."""
    body: IdsUpdate = call.body
    return await items.set_terms(
        call.db, call.principal, item_id=call.path_int("item_id"), kind="categories", ids=body.ids
    )


@routes.put(f"{ITEM}/tags", "Set an item's tags", body=IdsUpdate, response=IdsOut)
async def put_content_item_tags(call: Call) -> dict[str, object]:
    """Replaces the item's tags. Needs `content.update` (or `.own`)."""
    body: IdsUpdate = call.body
    return await items.set_terms(
        call.db, call.principal, item_id=call.path_int("item_id"), kind="tags", ids=body.ids
    )
