"""Categories (a tree) and tags: gated, audited and versioned changes.

Reading needs `content.view`, changing `taxonomy.manage`. A move never makes a cycle and
never makes the tree deeper than `MAX_DEPTH` levels; deleting a category lifts its children
to the top level and unassigns its items, as the schema's foreign keys say.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from realtime_cms.content.slugs import claim_slug
from realtime_cms.content.types import audited_create, audited_delete, audited_update
from realtime_cms.errors import Conflict, NotFound, Unprocessable
from realtime_cms.models.content import Category, ContentItemCategory, ContentItemTag, Tag
from realtime_cms.principal import Principal
from realtime_cms.rbac.authorize import authorize
from realtime_cms.uniqueness import taken

VIEW = "content.view"
MANAGE = "taxonomy.manage"
CATEGORY_COLUMNS = ("name", "slug", "description", "parent_id")
TAG_COLUMNS = ("name", "slug")
# Deep enough for any real taxonomy, shallow enough to nest in one JSON answer.
MAX_DEPTH = 32


# Categories


async def get_category(db: AsyncSession, principal: Principal, category_id: int) -> Category:
    authorize(principal, VIEW)
    category = await db.get(Category, category_id)
    if category is None:
        raise NotFound("No such category")
    return category


async def _ancestry(db: AsyncSession, category_id: int) -> list[int]:
    """`category_id` and its ancestors, nearest first (at most MAX_DEPTH + 1 of them)."""
    chain = [category_id]
    while len(chain) <= MAX_DEPTH:
        parent = await db.scalar(sa.select(Category.parent_id).where(Category.id == chain[-1]))
        if parent is None or parent in chain:
            break
        chain.append(parent)
    return chain


async def _height(db: AsyncSession, category_id: int) -> int:
    """Levels in the subtree under and including `category_id` (counting stops past MAX_DEPTH)."""
    level, height = [category_id], 0
    while level and height <= MAX_DEPTH:
        height += 1
        level = list(
            (await db.scalars(sa.select(Category.id).where(Category.parent_id.in_(level)))).all()
        )
    return height


def _bad_parent(message: str, code: str) -> Unprocessable:
    return Unprocessable(
        message,
        code=code,
        errors=[{"loc": ["body", "parent_id"], "message": message, "type": "value_error"}],
    )


async def _check_parent(db: AsyncSession, parent_id: int, moving: int | None) -> None:
    """The parent exists, is not `moving` or below it, and the tree stays within MAX_DEPTH."""
    if await db.get(Category, parent_id) is None:
        raise _bad_parent(f"There is no category {parent_id}", "parent_not_found")
    chain = await _ancestry(db, parent_id)
    if moving is not None and moving in chain:
        raise Conflict(
            "A category cannot move under itself or one of its subcategories",
            code="category_cycle",
        )
    height = 1 if moving is None else await _height(db, moving)
    if len(chain) + height > MAX_DEPTH:
        raise _bad_parent(f"Categories nest at most {MAX_DEPTH} levels deep", "category_too_deep")


async def create_category(
    db: AsyncSession,
    principal: Principal,
    *,
    name: str,
    slug: str | None,
    description: str | None,
    parent_id: int | None,
) -> Category:
    authorize(principal, MANAGE)
    if parent_id is not None:
        await _check_parent(db, parent_id, None)
    category = Category(
        name=name,
        slug=await claim_slug(db, Category.slug, wanted=slug, name=name),
        description=description,
        parent_id=parent_id,
    )
    await audited_create(db, principal, category, "category", CATEGORY_COLUMNS)
    return category


async def update_category(
    db: AsyncSession, principal: Principal, category_id: int, changes: dict[str, Any]
) -> Category:
    """Rename, re-describe or move a category; its slug stays unless a new one is given."""
    authorize(principal, MANAGE)
    category = await get_category(db, principal, category_id)
    parent_id = changes.get("parent_id", category.parent_id)
    if parent_id is not None and parent_id != category.parent_id:
        await _check_parent(db, parent_id, category_id)
    if "slug" in changes:
        await claim_slug(db, Category.slug, wanted=changes["slug"], name="", exclude_id=category_id)
    await audited_update(db, principal, category, "category", CATEGORY_COLUMNS, changes)
    return category


async def delete_category(db: AsyncSession, principal: Principal, category_id: int) -> None:
    """Delete a category: its children move to the top level, its items lose it.

    Done explicitly (not only by ON DELETE SET NULL / CASCADE) so that every backend
    behaves the same and each child's move is in its version_history.
    """
    authorize(principal, MANAGE)
    category = await get_category(db, principal, category_id)
    children = (
        await db.scalars(sa.select(Category).where(Category.parent_id == category_id))
    ).all()
    for child in children:
        await audited_update(
            db, principal, child, "category", CATEGORY_COLUMNS, {"parent_id": None}
        )
    removed = await db.execute(
        sa.delete(ContentItemCategory).where(ContentItemCategory.category_id == category_id)
    )
    details = {
        "children": [child.id for child in children],
        "items_unassigned": int(getattr(removed, "rowcount", 0) or 0),
    }
    await audited_delete(db, principal, category, "category", CATEGORY_COLUMNS, details)


def _node(category: Category) -> dict[str, Any]:
    return {
        "id": category.id,
        "name": category.name,
        "slug": category.slug,
        "description": category.description,
        "parent_id": category.parent_id,
        "children": [],
    }


async def category_tree(db: AsyncSession, principal: Principal) -> list[dict[str, Any]]:
    """Every category nested under its parent; each level sorted by name, then id."""
    authorize(principal, VIEW)
    rows = (await db.scalars(sa.select(Category).order_by(Category.name, Category.id))).all()
    nodes = {row.id: _node(row) for row in rows}
    roots: list[dict[str, Any]] = []
    for row in rows:
        parent = nodes.get(row.parent_id) if row.parent_id is not None else None
        (parent["children"] if parent is not None else roots).append(nodes[row.id])
    return roots


# Tags


async def get_tag(db: AsyncSession, principal: Principal, tag_id: int) -> Tag:
    authorize(principal, VIEW)
    tag = await db.get(Tag, tag_id)
    if tag is None:
        raise NotFound("No such tag")
    return tag


async def _ensure_tag_name_free(db: AsyncSession, name: str, exclude: int | None) -> None:
    if await taken(db, Tag.id, sa.func.lower(Tag.name) == name.lower(), exclude=exclude):
        raise Conflict(f"A tag named {name!r} exists", code="tag_exists")


async def create_tag(db: AsyncSession, principal: Principal, *, name: str, slug: str | None) -> Tag:
    authorize(principal, MANAGE)
    await _ensure_tag_name_free(db, name, None)
    tag = Tag(name=name, slug=await claim_slug(db, Tag.slug, wanted=slug, name=name))
    await audited_create(db, principal, tag, "tag", TAG_COLUMNS)
    return tag


async def update_tag(
    db: AsyncSession, principal: Principal, tag_id: int, changes: dict[str, Any]
) -> Tag:
    """Rename a tag or change its slug; a renamed tag keeps its slug unless a new one is given."""
    authorize(principal, MANAGE)
    tag = await get_tag(db, principal, tag_id)
    if "name" in changes:
        await _ensure_tag_name_free(db, changes["name"], tag_id)
    if "slug" in changes:
        await claim_slug(db, Tag.slug, wanted=changes["slug"], name="", exclude_id=tag_id)
    await audited_update(db, principal, tag, "tag", TAG_COLUMNS, changes)
    return tag


async def delete_tag(db: AsyncSession, principal: Principal, tag_id: int) -> None:
    """Delete a tag and its assignments to items."""
    authorize(principal, MANAGE)
    tag = await get_tag(db, principal, tag_id)
    removed = await db.execute(sa.delete(ContentItemTag).where(ContentItemTag.tag_id == tag_id))
    details = {"items_unassigned": int(getattr(removed, "rowcount", 0) or 0)}
    await audited_delete(db, principal, tag, "tag", TAG_COLUMNS, details)
