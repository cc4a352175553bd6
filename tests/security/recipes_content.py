"""Recipes of the content operations: types and fields, taxonomy, items, versions, delivery.

Importing this module registers them in `tests.security.recipes.RECIPES`.
"""

from __future__ import annotations

from tests.security.principals import Who, unique
from tests.security.recipes import Request, recipe
from tests.security.world import World


@recipe("create_content_type")
async def create_content_type(world: World, who: Who) -> Request:
    return Request(json={"name": unique("Type ")})


@recipe("get_content_type", "list_custom_fields")
async def content_type(world: World, who: Who) -> Request:
    return Request({"type_id": world.type_id})


@recipe("update_content_type")
async def update_content_type(world: World, who: Who) -> Request:
    return Request({"type_id": world.type_id}, json={"description": "Articles"})


@recipe("delete_content_type")
async def delete_content_type(world: World, who: Who) -> Request:
    return Request({"type_id": await world.new_type()})


@recipe("create_custom_field")
async def create_custom_field(world: World, who: Who) -> Request:
    body = {"field_name": unique("f_"), "field_label": "Field", "field_type": "text"}
    return Request({"type_id": world.type_id}, json=body)


@recipe("get_custom_field")
async def custom_field(world: World, who: Who) -> Request:
    return Request({"type_id": world.type_id, "field_id": world.field_id})


@recipe("update_custom_field")
async def update_custom_field(world: World, who: Who) -> Request:
    params = {"type_id": world.type_id, "field_id": world.field_id}
    return Request(params, json={"field_label": "Renamed"})


@recipe("delete_custom_field")
async def delete_custom_field(world: World, who: Who) -> Request:
    return Request({"type_id": world.type_id, "field_id": await world.new_field()})


@recipe("create_category", "create_tag")
async def create_term(world: World, who: Who) -> Request:
    return Request(json={"name": unique("Term ")})


@recipe("get_category")
async def category(world: World, who: Who) -> Request:
    return Request({"category_id": world.category_id})


@recipe("update_category")
async def update_category(world: World, who: Who) -> Request:
    return Request({"category_id": world.category_id}, json={"description": "Matrix"})


@recipe("delete_category")
async def delete_category(world: World, who: Who) -> Request:
    return Request({"category_id": await world.new_term("categories")})


@recipe("get_tag")
async def tag(world: World, who: Who) -> Request:
    return Request({"tag_id": world.tag_id})


@recipe("update_tag")
async def update_tag(world: World, who: Who) -> Request:
    return Request({"tag_id": world.tag_id}, json={"name": unique("Tag ")})


@recipe("delete_tag")
async def delete_tag(world: World, who: Who) -> Request:
    return Request({"tag_id": await world.new_term("tags")})


@recipe("create_content_item")
async def create_content_item(world: World, who: Who) -> Request:
    body = {"site_id": world.site_id, "content_type_id": world.type_id, "title": unique("I")}
    return Request(json=body)


@recipe(
    "get_content_item",
    "get_content_item_fields",
    "list_versions",
    "list_restorations",
    "list_conflicts",
)
async def item(world: World, who: Who) -> Request:
    return Request({"item_id": world.item_id})


@recipe("update_content_item")
async def update_content_item(world: World, who: Who) -> Request:
    return Request({"item_id": world.item_id}, json={"title": unique("Title ")})


@recipe("delete_content_item")
async def delete_content_item(world: World, who: Who) -> Request:
    return Request({"item_id": (await world.new_item())["id"]})


@recipe("put_content_item_fields")
async def put_fields(world: World, who: Who) -> Request:
    return Request({"item_id": world.item_id}, json={"fields": {}})


@recipe("put_content_item_categories")
async def put_categories(world: World, who: Who) -> Request:
    return Request({"item_id": world.item_id}, json={"ids": [world.category_id]})


@recipe("put_content_item_tags")
async def put_tags(world: World, who: Who) -> Request:
    return Request({"item_id": world.item_id}, json={"ids": [world.tag_id]})


@recipe("create_version")
async def create_version(world: World, who: Who) -> Request:
    return Request({"item_id": world.item_id}, json={"notes": "matrix"})


@recipe("diff_versions")
async def diff_versions(world: World, who: Who) -> Request:
    first, second = world.version_ids
    return Request({"item_id": world.item_id}, query={"from": str(first), "to": str(second)})


@recipe("get_version", "restore_version")
async def version(world: World, who: Who) -> Request:
    return Request({"item_id": world.item_id, "version_id": world.version_ids[0]})


@recipe("list_delivered_items")
async def delivered_items(world: World, who: Who) -> Request:
    return Request({"site_id": world.site_id})


@recipe("get_delivered_item")
async def delivered_item(world: World, who: Who) -> Request:
    type_slug, slug = world.published
    return Request({"site_id": world.site_id, "type_slug": type_slug, "slug": slug})
