"""Helpers for notification tests: notify as the server, read rows, record pushes, run jobs."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from datetime import datetime
from types import SimpleNamespace
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from handlers import keys
from realtime_cms.db import SessionFactory, transaction
from realtime_cms.jobs.registry import JobContext, JobType
from realtime_cms.models.content import ContentType
from realtime_cms.models.notifications import Notification
from realtime_cms.models.sites import Site
from realtime_cms.notifications.producers import PRODUCER
from realtime_cms.notifications.service import Dispatcher, NotifyResult, notify
from realtime_cms.runtime import Runtime
from tests.support import jobs as support_jobs
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


def _runtime(hub: FakeHub) -> Runtime:
    return cast(Runtime, SimpleNamespace(notifier=Dispatcher(hub)))


def job_context(
    db: AsyncSession, job_type: JobType[Any], at: datetime, hub: FakeHub, job_id: str | None = None
) -> JobContext:
    """What a worker hands a job started at `at`, with pushes going to `hub`."""
    return support_jobs.job_context(db, job_type, _runtime(hub), at=at, job_id=job_id)


async def run_job(
    sessions: SessionFactory,
    job_type: JobType[Any],
    payload: dict[str, Any],
    at: datetime,
    hub: FakeHub,
) -> str:
    """Run a job as a worker would: the handler in one transaction, its pushes after it."""
    return str(await support_jobs.run_job(sessions, job_type, payload, _runtime(hub), at=at))


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


async def new_item(harness: Harness, token: str, text: str = "First draft.") -> dict[str, Any]:
    """A draft item authored by the token's user, on a fresh memberless site."""
    async with transaction(harness.app[keys.SESSIONS]) as db:
        name = unique("producers")
        site = Site(name=name, domain=f"{name}.example.com")
        ctype = ContentType(name=name, slug=name)
        db.add_all([site, ctype])
    response = await harness.call(
        "POST",
        "/api/v1/content-items",
        token=token,
        json={"content_type_id": ctype.id, "site_id": site.id, "title": name, "body": text},
    )
    return dict((await body(response, 201))["data"])
