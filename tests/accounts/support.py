"""Helpers shared by the accounts tests: unique names, raw logins, credential sets, DB tweaks,
the job behind a mail."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

import sqlalchemy as sa
from aiohttp import ClientResponse, ClientSession, CookieJar

from handlers import keys
from realtime_cms.db import transaction
from realtime_cms.models.auth import User
from realtime_cms.models.workers import WorkerJob
from tests.support.harness import PASSWORD, Harness

_MESSAGE_ID = re.compile(r"<([^@>]+)@[^>]+>")


def unique() -> str:
    """A username no other test of the shared server uses."""
    return f"u{uuid.uuid4().hex[:12]}"


async def new_user(harness: Harness, *roles: str, **extra: Any) -> tuple[str, str]:
    """A new user (a viewer unless told) with a unique name and address; (name, email)."""
    name = unique()
    email = f"{name}@example.com"
    await harness.add_user(name, *(roles or ("viewer",)), email=email, **extra)
    return name, email


async def post_login(
    harness: Harness, login: str, password: str = PASSWORD, **extra: Any
) -> ClientResponse:
    return await harness.client.post(
        "/api/v1/auth/login", json={"login": login, "password": password, **extra}
    )


@asynccontextmanager
async def browser(harness: Harness) -> AsyncIterator[ClientSession]:
    """A client that keeps cookies like a browser (the harness client keeps none)."""
    base = str(harness.client.make_url("/"))
    async with ClientSession(base_url=base, cookie_jar=CookieJar(unsafe=True)) as session:
        yield session


async def new_api_token(harness: Harness, session: str, scopes: list[str], **extra: Any) -> Any:
    return await harness.call(
        "POST", "/api/v1/auth/tokens", token=session, json={"name": "ci", "scopes": scopes, **extra}
    )


async def execute(harness: Harness, stmt: sa.Executable) -> None:
    """Change the database behind the API's back (e.g. to make a token expire)."""
    async with transaction(harness.app[keys.SESSIONS]) as db:
        await db.execute(stmt)


async def sign_in_everywhere(harness: Harness, name: str) -> dict[str, str]:
    """A session, a remember-me token and an API token of `name`."""
    signed_in = (await (await post_login(harness, name, remember=True)).json())["data"]
    created = await new_api_token(harness, signed_in["token"], ["content.view"])
    assert created.status == 201
    return {
        "session": signed_in["token"],
        "remember": signed_in["remember_token"],
        "api": (await created.json())["data"]["token"],
    }


async def assert_all_revoked(harness: Harness, tokens: dict[str, str]) -> None:
    for bearer in (tokens["session"], tokens["api"]):
        assert (await harness.call("GET", "/api/v1/auth/me", token=bearer)).status == 401
    remember = await harness.client.post(
        "/api/v1/auth/remember", json={"token": tokens["remember"]}
    )
    assert remember.status == 401


def job_id_of(message_id: object) -> str:
    """The id of the job that sent a mail: its Message-ID is `<job id@host>`."""
    match = _MESSAGE_ID.fullmatch(str(message_id))
    assert match is not None, message_id
    return match[1]


async def job_of(harness: Harness, message_id: object) -> WorkerJob:
    """The job row that sent the mail with this Message-ID."""
    async with transaction(harness.app[keys.SESSIONS]) as db:
        job = await db.get(WorkerJob, job_id_of(message_id))
    assert job is not None
    return job


async def jobs_for(
    harness: Harness, job_type: str, key: str, values: Iterable[Any]
) -> list[WorkerJob]:
    """The jobs of `job_type` whose payload's `key` is one of `values`, in that order."""
    order = list(values)
    async with transaction(harness.app[keys.SESSIONS]) as db:
        found = await db.scalars(sa.select(WorkerJob).where(WorkerJob.type == job_type))
        mine = [job for job in found if job.payload[key] in order]
    return sorted(mine, key=lambda job: order.index(job.payload[key]))


async def user_row(harness: Harness, email: str) -> User:
    found = await harness.scalar(sa.select(User).where(User.email == email))
    assert isinstance(found, User)
    return found
