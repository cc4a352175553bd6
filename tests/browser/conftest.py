"""Fixtures of the browser tests: one served demo installation and one Chromium per module."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from playwright.async_api import Browser, async_playwright

from tests.browser.support import CHROMIUM_ARGS, Rest, Server, require_chromium

VIEWER_PASSWORD = "viewer password, long enough"


@pytest.fixture(scope="module")
async def server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Server]:
    executable = require_chromium()
    assert executable
    served = Server(tmp_path_factory.mktemp("browser"))
    served.load_demo()
    await served.start()
    try:
        yield served
    finally:
        await served.stop()


@pytest.fixture(scope="module")
async def browser(server: Server) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=require_chromium(), args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture(scope="module")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def admin(server: Server, http: aiohttp.ClientSession) -> Rest:
    """The demo admin over REST (logged in again after a server restart)."""
    return await Rest.login(http, server.base, "admin", server.logins["admin"])


@pytest.fixture(scope="module")
async def viewer(server: Server, http: aiohttp.ClientSession) -> str:
    """A user holding only the viewer role: `read` on every content document."""
    rest = await Rest.login(http, server.base, "admin", server.logins["admin"])
    await rest.call(
        "POST",
        "/api/v1/users",
        {
            "username": "viewer",
            "email": "viewer@example.com",
            "password": VIEWER_PASSWORD,
            "roles": ["viewer"],
        },
        status=201,
    )
    return VIEWER_PASSWORD


@pytest.fixture
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where screenshots go (a temp dir: they are not committed)."""
    return tmp_path_factory.mktemp("screenshots")
