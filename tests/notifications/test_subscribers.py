"""Notifications follow content events: rows in the change's transaction, pushes after its commit.

Each test calls the content service itself, on sessions of its own whose event bus pushes to
a recording hub: no handler is involved, so whatever is pushed, the events pushed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from handlers import keys
from realtime_cms.content import items
from realtime_cms.db import SessionFactory, session_factory, transaction
from realtime_cms.events import EventBus, attach
from realtime_cms.notifications.service import Dispatcher
from realtime_cms.notifications.subscribers import LivePushes
from realtime_cms.principal import Principal
from realtime_cms.rbac.service import permissions_for
from tests.notifications.support import FakeHub, new_item, new_user, notifications_of
from tests.support.harness import Harness
from tests.support.live import eventually


@dataclass
class Node:
    sessions: SessionFactory
    hub: FakeHub


@pytest.fixture
async def node(harness: Harness) -> AsyncIterator[Node]:
    """Sessions on the harness' database whose committed notifications reach `hub`."""
    sessions, bus, hub = session_factory(harness.app[keys.ENGINE]), EventBus(), FakeHub()
    attach(sessions, bus)
    async with LivePushes(bus, Dispatcher(hub)):
        yield Node(sessions, hub)


async def _editor(harness: Harness) -> Principal:
    user = harness.users["editor"]
    async with transaction(harness.app[keys.SESSIONS]) as db:
        roles, permissions = await permissions_for(db, user.id)
    return Principal(user_id=user.id, username=user.username, permissions=permissions, roles=roles)


async def _publish(harness: Harness, node: Node, item_id: int, *, fail: bool = False) -> None:
    """Publish the item as the editor in one transaction (rolled back when `fail`)."""
    async with transaction(node.sessions) as db:
        await items.update_item(
            db,
            await _editor(harness),
            binding=harness.app[keys.CONTENT],
            passwords=harness.app[keys.PASSWORDS],
            item_id=item_id,
            changes={"status": "published"},
        )
        assert node.hub.events == []  # nothing is pushed before the commit
        if fail:
            raise LookupError("the change fails after the status was set")


async def test_a_committed_status_change_notifies_once_and_pushes_after_the_commit(
    harness: Harness, node: Node
) -> None:
    author_id, token = await new_user(harness, "author")
    item = await new_item(harness, token)
    await _publish(harness, node, item["id"])
    [row] = await notifications_of(harness, author_id)
    assert row.type == "content_status"
    await eventually(lambda: len(node.hub.events) == 2)
    [(kind, user_id, data), (counted, counted_user, unread)] = node.hub.events
    assert (kind, user_id, data["id"]) == ("notification", author_id, row.id)
    assert (counted, counted_user, unread["total"]) == ("unread", author_id, 1)


async def test_a_rolled_back_status_change_notifies_nobody_and_pushes_nothing(
    harness: Harness, node: Node
) -> None:
    author_id, token = await new_user(harness, "author")
    item = await new_item(harness, token)
    with pytest.raises(LookupError):
        await _publish(harness, node, item["id"], fail=True)
    assert await notifications_of(harness, author_id) == []
    await asyncio.sleep(0.1)  # a push, had one been queued, would have gone out by now
    assert node.hub.events == []
