"""REST for taxonomy: the category tree and tags."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from handlers.api import Call, Routes
from realtime_cms.content import taxonomy as service
from realtime_cms.content.schemas_types import (
    CategoryCreate,
    CategoryNode,
    CategoryOut,
    CategoryUpdate,
    TagCreate,
    TagOut,
    TagUpdate,
)
from realtime_cms.listing import Field, Listing, Page
from realtime_cms.models.content import Category, Tag

routes = Routes("taxonomy")

CATEGORY = "/api/v1/categories/{category_id:\\d+}"
TAG = "/api/v1/tags/{tag_id:\\d+}"

CATEGORY_LISTING = Listing(
    fields={
        "id": Field(Category.id, int),
        "name": Field(Category.name),
        "slug": Field(Category.slug),
        "parent_id": Field(Category.parent_id, int),
        "created_at": Field(Category.created_at, datetime),
        "updated_at": Field(Category.updated_at, datetime),
    },
    default_sort="id",
)

TAG_LISTING = Listing(
    fields={
        "id": Field(Tag.id, int),
        "name": Field(Tag.name),
        "slug": Field(Tag.slug),
        "created_at": Field(Tag.created_at, datetime),
        "updated_at": Field(Tag.updated_at, datetime),
    },
    default_sort="id",
)


@routes.get(
    "/api/v1/categories",
    "List categories",
    permission="content.view",
    response=CategoryOut,
    listing=CATEGORY_LISTING,
)
async def list_categories(call: Call) -> Page[Category]:
    """Flat; `filter[parent_id][null]=true` lists the top level."""
    assert call.query is not None
    return await call.query.fetch(call.db, sa.select(Category))


@routes.get(
    "/api/v1/categories/tree",
    "Read the category tree",
    permission="content.view",
    response=CategoryNode,
)
async def category_tree(call: Call) -> Page[dict[str, Any]]:
    """The top-level categories, each with its `children` nested; sorted by name."""
    roots = await service.category_tree(call.db, call.principal)
    return Page(items=roots, total=len(roots), limit=len(roots), offset=0)


@routes.post(
    "/api/v1/categories",
    "Create a category",
    permission="taxonomy.manage",
    body=CategoryCreate,
    response=CategoryOut,
    status=201,
)
async def create_category(call: Call) -> Category:
    """The slug is made from the name (made unique with -2, -3...) unless one is given."""
    body: CategoryCreate = call.body
    return await service.create_category(call.db, call.principal, **body.model_dump())


@routes.get(CATEGORY, "Read a category", permission="content.view", response=CategoryOut)
async def get_category(call: Call) -> Category:
    return await service.get_category(call.db, call.principal, call.path_int("category_id"))


@routes.patch(
    CATEGORY,
    "Change or move a category",
    permission="taxonomy.manage",
    body=CategoryUpdate,
    response=CategoryOut,
)
async def update_category(call: Call) -> Category:
    """`parent_id` moves it (null: to the top level); a move under itself is 409
    `category_cycle`."""
    body: CategoryUpdate = call.body
    return await service.update_category(
        call.db, call.principal, call.path_int("category_id"), body.changes()
    )


@routes.delete(CATEGORY, "Delete a category", permission="taxonomy.manage")
async def delete_category(call: Call) -> None:
    """Its children move to the top level; its items lose the category."""
    await service.delete_category(call.db, call.principal, call.path_int("category_id"))


@routes.get(
    "/api/v1/tags", "List tags", permission="content.view", response=TagOut, listing=TAG_LISTING
)
async def list_tags(call: Call) -> Page[Tag]:
    assert call.query is not None
    return await call.query.fetch(call.db, sa.select(Tag))


@routes.post(
    "/api/v1/tags",
    "Create a tag",
    permission="taxonomy.manage",
    body=TagCreate,
    response=TagOut,
    status=201,
)
async def create_tag(call: Call) -> Tag:
    """Tag names are unique regardless of case; the slug is made from the name unless given."""
    body: TagCreate = call.body
    return await service.create_tag(call.db, call.principal, **body.model_dump())


@routes.get(TAG, "Read a tag", permission="content.view", response=TagOut)
async def get_tag(call: Call) -> Tag:
    return await service.get_tag(call.db, call.principal, call.path_int("tag_id"))


@routes.patch(TAG, "Change a tag", permission="taxonomy.manage", body=TagUpdate, response=TagOut)
async def update_tag(call: Call) -> Tag:
    body: TagUpdate = call.body
    return await service.update_tag(
        call.db, call.principal, call.path_int("tag_id"), body.changes()
    )


@routes.delete(TAG, "Delete a tag", permission="taxonomy.manage")
async def delete_tag(call: Call) -> None:
    """Its items lose the tag."""
    await service.delete_tag(call.db, call.principal, call.path_int("tag_id"))
