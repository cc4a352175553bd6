"""`GET /healthz`: 200 when the database (and Redis, when configured) answer, 503 when not."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy.engine import make_url

from handlers.app import create_app
from realtime_cms import __version__
from tests.support.harness import Harness, make_settings


def closed_port() -> int:
    """A local port nothing listens on (bound and released at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def start_app() -> AsyncIterator[Any]:
    """Start a second server with its own settings; closed when the test ends."""
    clients: list[TestClient[web.Request, web.Application]] = []

    async def start(**settings: Any) -> TestClient[web.Request, web.Application]:
        client: TestClient[web.Request, web.Application] = TestClient(
            TestServer(create_app(make_settings(**settings)))
        )
        await client.start_server()
        clients.append(client)
        return client

    yield start
    for client in clients:
        await client.close()


async def health(client: Any) -> tuple[int, dict[str, Any]]:
    response = await client.get("/healthz")
    body: dict[str, Any] = await response.json()
    return response.status, body


async def test_a_healthy_node_answers_200_with_its_version(harness: Harness) -> None:
    status, body = await health(harness.client)
    assert status == 200
    assert (body["status"], body["version"], body["checks"]["database"]) == (
        "ok",
        __version__,
        "ok",
    )


async def test_redis_is_checked_when_configured_and_reported_otherwise(
    harness: Harness, backend: str
) -> None:
    _, body = await health(harness.client)
    assert body["checks"]["redis"] == ("ok" if backend == "mariadb" else "not configured")


async def test_health_needs_no_credentials_and_is_not_a_problem_document(harness: Harness) -> None:
    response = await harness.client.get("/healthz")
    assert response.status == 200 and response.content_type == "application/json"


async def test_an_unreachable_database_gives_503(
    start_app: Any, backend: str, database_url: str, tmp_path: Path
) -> None:
    if backend == "sqlite":
        # SQLite cannot create a file in a directory that does not exist.
        url = f"sqlite+aiosqlite:///{tmp_path / 'missing' / 'db.sqlite3'}"
    else:
        moved = make_url(database_url).set(host="127.0.0.1", port=closed_port())
        url = moved.render_as_string(hide_password=False)
    client = await start_app(database_url=url)
    status, body = await health(client)
    assert status == 503
    assert (body["status"], body["checks"]["database"]) == ("degraded", "down")


async def test_an_unreachable_redis_gives_503_while_the_database_is_fine(
    start_app: Any, database_url: str
) -> None:
    client = await start_app(
        database_url=database_url, redis_url=f"redis://127.0.0.1:{closed_port()}/0"
    )
    status, body = await health(client)
    assert status == 503
    assert body["checks"] == {"database": "ok", "redis": "down"}
