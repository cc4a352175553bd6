"""Fixtures for the document REST tests: live `/collab` clients closed after each test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from realtime_cms.client import CollabClient
from tests.support.harness import Harness

Connect = Callable[..., Awaitable[CollabClient]]


@pytest.fixture
async def connect(harness: Harness) -> AsyncIterator[Connect]:
    """Open a `/collab` client as a role's default user (or with a token, or to another URL)."""
    clients: list[CollabClient] = []

    async def open_client(
        role: str, *, token: str | None = None, url: str | None = None
    ) -> CollabClient:
        address = url or str(harness.client.make_url("/"))
        client = CollabClient(address, token or harness.tokens[role], timeout=10)
        await client.connect()
        clients.append(client)
        return client

    yield open_client
    for client in clients:
        if client.sio.connected:
            await client.sio.disconnect()
