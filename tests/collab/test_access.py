"""Document access levels: admins, explicit grants, content RBAC, the highest rule, ids."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from realtime_cms.collab.access import (
    Level,
    at_least,
    can_admin,
    can_write,
    content_item_id,
    document_level,
    highest,
)
from realtime_cms.db import SessionFactory, create_engine, session_factory, transaction
from realtime_cms.errors import Invalid
from realtime_cms.models.auth import User
from realtime_cms.models.content import ContentItem, ContentType
from realtime_cms.models.realtime import DocumentPermission
from realtime_cms.models.sites import Site
from realtime_cms.principal import Principal, anonymous
from tests.support.harness import create_schema


@dataclass(frozen=True)
class World:
    """Users, an item authored by `author_id`, and the factory to query with.

    Tests that add rows on the item's body use `granted_ids`, so rows never leak into
    the other tests.
    """

    sessions: SessionFactory
    author_id: int
    other_id: int
    granted_ids: tuple[int, int]
    item_id: int

    @property
    def item_doc(self) -> str:
        return f"content:{self.item_id}"


@pytest.fixture(scope="module")
async def world(database_url: str) -> AsyncIterator[World]:
    await create_schema(database_url)
    engine = create_engine(database_url)
    sessions = session_factory(engine)
    async with transaction(sessions) as db:
        site = Site(name="Main", domain="main.example")
        kind = ContentType(name="Article", slug="article")
        names = ("author", "other", "granted1", "granted2")
        users = [User(username=n, email=f"{n}@example.com", password="x") for n in names]
        db.add_all([site, kind, *users])
        await db.flush()
        item = ContentItem(
            site_id=site.id, content_type_id=kind.id, author_id=users[0].id, title="T", slug="t"
        )
        db.add(item)
        await db.flush()
        world = World(sessions, users[0].id, users[1].id, (users[2].id, users[3].id), item.id)
    yield world
    await engine.dispose()


async def grant(world: World, document_id: str, user_id: int, level: str) -> None:
    async with transaction(world.sessions) as db:
        await db.merge(
            DocumentPermission(document_id=document_id, user_id=user_id, permission_level=level)
        )


async def level_of(world: World, principal: Principal, document_id: str) -> Level | None:
    async with transaction(world.sessions) as db:
        return await document_level(db, principal, document_id)


def user(user_id: int, *permissions: str) -> Principal:
    return Principal(user_id=user_id, username=f"u{user_id}", permissions=frozenset(permissions))


async def test_a_documents_admin_is_admin_on_every_document(world: World) -> None:
    admin = user(world.other_id, "documents.admin")
    assert await level_of(world, admin, "notes.team-1") == "admin"
    assert await level_of(world, admin, world.item_doc) == "admin"


async def test_a_documents_admin_is_admin_even_on_the_body_of_a_missing_item(world: World) -> None:
    assert (
        await level_of(world, user(world.other_id, "documents.admin"), "content:999999") == "admin"
    )


async def test_without_any_rule_there_is_no_access(world: World) -> None:
    assert await level_of(world, user(world.other_id, "content.update"), "notes.nobody") is None


async def test_an_anonymous_principal_has_no_access_to_a_free_document(world: World) -> None:
    assert await level_of(world, anonymous(), "notes.public") is None


@pytest.mark.parametrize("level", ["read", "write", "admin"])
async def test_an_explicit_row_grants_its_level(world: World, level: str) -> None:
    document_id = f"notes.explicit-{level}"
    await grant(world, document_id, world.other_id, level)
    assert await level_of(world, user(world.other_id), document_id) == level


async def test_an_explicit_row_applies_to_its_user_only(world: World) -> None:
    await grant(world, "notes.mine", world.other_id, "write")
    assert await level_of(world, user(world.author_id), "notes.mine") is None


async def test_an_unknown_level_in_a_row_grants_nothing(world: World) -> None:
    await grant(world, "notes.odd", world.other_id, "owner")
    assert await level_of(world, user(world.other_id), "notes.odd") is None


async def test_content_update_grants_write_on_any_items_body(world: World) -> None:
    assert await level_of(world, user(world.other_id, "content.update"), world.item_doc) == "write"


async def test_content_update_own_grants_write_to_the_author(world: World) -> None:
    author = user(world.author_id, "content.update.own")
    assert await level_of(world, author, world.item_doc) == "write"


async def test_content_update_own_grants_nothing_to_someone_else(world: World) -> None:
    other = user(world.other_id, "content.update.own")
    assert await level_of(world, other, world.item_doc) is None


async def test_content_update_own_falls_back_to_view_for_someone_else(world: World) -> None:
    other = user(world.other_id, "content.update.own", "content.view")
    assert await level_of(world, other, world.item_doc) == "read"


async def test_content_view_grants_read(world: World) -> None:
    assert await level_of(world, user(world.other_id, "content.view"), world.item_doc) == "read"


async def test_content_permissions_do_not_apply_to_free_documents(world: World) -> None:
    editor = user(world.other_id, "content.update", "content.view")
    assert await level_of(world, editor, "notes.free") is None


async def test_the_highest_rule_wins_when_rbac_grants_more(world: World) -> None:
    granted_id = world.granted_ids[0]
    await grant(world, world.item_doc, granted_id, "read")
    assert await level_of(world, user(granted_id, "content.update"), world.item_doc) == "write"


async def test_the_highest_rule_wins_when_the_row_grants_more(world: World) -> None:
    granted_id = world.granted_ids[1]
    await grant(world, world.item_doc, granted_id, "admin")
    viewer = user(granted_id, "content.view", "content.update.own")
    assert await level_of(world, viewer, world.item_doc) == "admin"


async def test_a_row_on_an_items_body_grants_without_any_rbac(world: World) -> None:
    granted_id = world.granted_ids[1]
    await grant(world, world.item_doc, granted_id, "write")
    assert await level_of(world, user(granted_id), world.item_doc) == "write"


async def test_the_body_of_a_missing_item_is_closed_despite_rows_and_rbac(world: World) -> None:
    await grant(world, "content:424242", world.other_id, "admin")
    editor = user(world.other_id, "content.update", "content.view")
    assert await level_of(world, editor, "content:424242") is None


@pytest.mark.parametrize(
    "document_id",
    [
        "",
        "x" * 256,
        "has space",
        "slash/inside",
        "ünïcode",
        "trailing-newline\n",
        "content:",
        "content:0",
        "content:007",
        "content:abc",
        "content:12a",
        "content:1234567890123456789",
    ],
)
async def test_malformed_document_ids_are_invalid(world: World, document_id: str) -> None:
    with pytest.raises(Invalid) as caught:
        await level_of(world, user(world.other_id, "documents.admin"), document_id)
    assert caught.value.code == "invalid_document_id"


@pytest.mark.parametrize(
    ("document_id", "item_id"),
    [("x" * 255, None), ("a:b_c.d-E9", None), ("content:1", 1), ("content:90210", 90210)],
)
def test_well_formed_ids_name_a_free_document_or_an_item(
    document_id: str, item_id: int | None
) -> None:
    assert content_item_id(document_id) == item_id


def test_levels_are_ordered_read_write_admin() -> None:
    assert highest("read", None, "admin", "write") == "admin"
    assert highest(None, None) is None
    assert at_least("write", "read") and not at_least("read", "write")
    assert not at_least(None, "read")


@pytest.mark.parametrize(
    ("level", "write", "admin"),
    [(None, False, False), ("read", False, False), ("write", True, False), ("admin", True, True)],
)
def test_can_write_and_can_admin_follow_the_order(
    level: Level | None, write: bool, admin: bool
) -> None:
    assert (can_write(level), can_admin(level)) == (write, admin)
