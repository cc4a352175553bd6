"""Helpers for notification tests: notify as the server, read rows, record pushes and mail."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from realtime_cms import keys
from realtime_cms.db import transaction
from realtime_cms.models.notifications import Notification
from realtime_cms.notifications.producers import PRODUCER
from realtime_cms.notifications.service import NotifyResult, notify
from tests.support.harness import Harness

_names = itertools.count(1)


def unique(prefix: str) -> str:
    """A name no other test uses."""
    return f"{prefix}-{next(_names)}"


class FakeHub:
    """Records what would be pushed live."""

    def __init__(self) -> None:
        self.events: list[tuple[str, int, Any]] = []

    async def deliver(self, user_id: int, notification: dict[str, Any]) -> None:
        self.events.append(("notification", user_id, notification))

    async def counts(self, user_id: int, unread: dict[str, Any]) -> None:
        self.events.append(("unread", user_id, unread))

    async def read(self, user_id: int, ids: list[int] | None) -> None:
        self.events.append(("read", user_id, ids))


async def send(harness: Harness, users: list[int], **options: Any) -> NotifyResult:
    """`notify` as the server in a transaction of its own."""
    options.setdefault("title", unique("title"))
    options.setdefault("message", "a message")
    async with transaction(harness.app[keys.SESSIONS]) as db:
        return await notify(db, PRODUCER, users=users, **options)


async def notifications_of(harness: Harness, user_id: int, **where: Any) -> list[Notification]:
    async with transaction(harness.app[keys.SESSIONS]) as db:
        stmt = sa.select(Notification).where(Notification.user_id == user_id)
        for name, value in where.items():
            stmt = stmt.where(getattr(Notification, name) == value)
        return list(await db.scalars(stmt.order_by(Notification.id)))


async def count(harness: Harness, stmt: sa.Select[Any]) -> int:
    return int(await harness.scalar(sa.select(sa.func.count()).select_from(stmt.subquery())))


async def new_user(harness: Harness, *roles: str) -> tuple[int, str]:
    """A fresh user with `roles` and its bearer token."""
    name = unique("user").replace("-", "_")
    user = await harness.add_user(name, *roles)
    return user.id, await harness.login(name)


async def body(response: Any, status: int) -> Mapping[str, Any]:
    data = await response.json(content_type=None)
    assert response.status == status, data
    return dict(data)
