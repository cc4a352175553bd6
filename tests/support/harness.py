"""A live server per test module: fresh database, default roles, a user per role, a client."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from aiohttp import ClientResponse, DummyCookieJar, web
from aiohttp.test_utils import TestClient, TestServer

import realtime_cms.models  # noqa: F401  (registers every table)
from handlers import keys
from handlers.app import create_app
from realtime_cms.config import Settings
from realtime_cms.db import create_engine, session_factory, transaction
from realtime_cms.models.auth import User, UserRole
from realtime_cms.models.base import Base
from realtime_cms.rbac.service import role_id_by_name, seed_defaults

ROLES = ("admin", "editor", "author", "viewer")
PASSWORD = "correct horse battery staple"


def make_settings(database_url: str, redis_url: str | None = None, **overrides: Any) -> Settings:
    """Settings for a test server: a random secret and low (but real) argon2 cost."""
    values: dict[str, Any] = {
        "database_url": database_url,
        "redis_url": redis_url,
        "secret_key": secrets.token_urlsafe(48),
        "argon2_memory_kib": 8192,
        "argon2_time_cost": 1,
        "redis_prefix": f"rcms-test-{secrets.token_hex(4)}:",
        "login_ip_rate_limit": 10_000,
        "reset_ip_rate_limit": 10_000,
    }
    values.update(overrides)
    return Settings(**values)


async def create_schema(database_url: str) -> None:
    """Create every table and seed the default roles and permissions."""
    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
        async with transaction(session_factory(engine)) as db:
            await seed_defaults(db)
    finally:
        await engine.dispose()


@dataclass
class Harness:
    """One live server and a client; `users[role]` holds an account with that single role."""

    app: web.Application
    client: TestClient[web.Request, web.Application]
    users: dict[str, User] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        """The server's base URL (no trailing slash), for socket clients."""
        return str(self.client.make_url("/")).rstrip("/")

    async def add_user(
        self, username: str, *roles: str, password: str = PASSWORD, **extra: Any
    ) -> User:
        """Insert an active user directly (bypassing the API) with the given roles."""
        passwords = self.app[keys.PASSWORDS]
        async with transaction(self.app[keys.SESSIONS]) as db:
            user = User(
                username=username,
                email=extra.pop("email", f"{username}@example.com"),
                password=await passwords.hash(password),
                **extra,
            )
            db.add(user)
            await db.flush()
            for role in roles:
                db.add(UserRole(user_id=user.id, role_id=await role_id_by_name(db, role)))
        return user

    async def login(self, username: str, password: str = PASSWORD) -> str:
        """Log in through the API and return the bearer token."""
        response = await self.client.post(
            "/api/v1/auth/login", json={"login": username, "password": password}
        )
        body = await response.json()
        assert response.status == 200, body
        return str(body["data"]["token"])

    async def call(
        self,
        method: str,
        path: str,
        *,
        role: str | None = None,
        token: str | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> ClientResponse:
        """Send a request as `role` (a logged-in default user) or with an explicit token."""
        all_headers = dict(headers or {})
        bearer = token or (self.tokens[role] if role else None)
        if bearer:
            all_headers["Authorization"] = f"Bearer {bearer}"
        return await self.client.request(method, path, json=json, headers=all_headers, **kwargs)

    async def scalar(self, stmt: sa.Select[Any]) -> Any:
        async with transaction(self.app[keys.SESSIONS]) as db:
            return await db.scalar(stmt)


async def start_harness(settings: Settings) -> Harness:
    """Create the schema, start the server and log in one user per default role."""
    await create_schema(settings.database_url)
    app = create_app(settings)
    # No cookie jar: every request carries exactly the credentials a test gives it.
    client: TestClient[web.Request, web.Application] = TestClient(
        TestServer(app), cookie_jar=DummyCookieJar()
    )
    await client.start_server()
    harness = Harness(app=app, client=client)
    for role in ROLES:
        harness.users[role] = await harness.add_user(f"{role}1", role)
        harness.tokens[role] = await harness.login(f"{role}1")
    return harness


@contextlib.asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[Harness]:
    """`start_harness`, closed on the way out: the body of every harness fixture."""
    harness = await start_harness(settings)
    try:
        yield harness
    finally:
        await harness.client.close()
