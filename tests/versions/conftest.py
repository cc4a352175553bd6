"""Fixtures for version tests: a site and a content type with SEO fields; items per author."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

from handlers import keys
from realtime_cms.content.binding import ContentState
from realtime_cms.db import transaction
from realtime_cms.principal import Principal
from realtime_cms.rbac.catalog import DEFAULT_ROLES
from realtime_cms.versions.service import create_version
from tests.support import content
from tests.support.content import World, new_world
from tests.support.harness import Harness


@pytest.fixture(scope="module")
async def world(harness: Harness) -> World:
    return await new_world(harness, ("seo_title", "seo_description"))


async def new_item(
    harness: Harness, world: World, *, role: str = "author", body: str = "", **extra: Any
) -> int:
    """An item authored by the `role` user, inserted directly."""
    return await content.new_item(harness, world, role=role, body=body, **extra)


def principal_of(harness: Harness, role: str) -> Principal:
    """The principal of the default `role` user, with that role's permissions."""
    user = harness.users[role]
    return Principal(user.id, user.username, DEFAULT_ROLES[role][1], frozenset({role}))


async def save(harness: Harness, item_id: int, state: ContentState, **kwargs: Any) -> int:
    """A version of `state` made through the service as the admin; its id."""
    async with transaction(harness.app[keys.SESSIONS]) as db:
        version = await create_version(
            db, principal_of(harness, "admin"), item_id=item_id, state=state, **kwargs
        )
        return version.id


T = TypeVar("T")


async def until(probe: Callable[[], Awaitable[T | None]], within: float = 15.0) -> T:
    """Poll an async probe until it answers something; a generous bound, not a timing test."""
    deadline = asyncio.get_running_loop().time() + within
    while (answer := await probe()) is None:
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)
    return answer
