"""Helpers for live-document tests: grants, fresh document names, polling with a bound."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from handlers import keys
from realtime_cms.db import transaction
from realtime_cms.models.realtime import DocumentPermission
from tests.support.harness import Harness

_names = itertools.count(1)


def new_document(prefix: str) -> str:
    """A document id no other test uses."""
    return f"notes:{prefix}-{next(_names)}"


async def grant(harness: Harness, document_id: str, role: str, level: str) -> None:
    """Give the default user of `role` `level` on the document (a document_permissions row)."""
    async with transaction(harness.app[keys.SESSIONS]) as db:
        db.add(
            DocumentPermission(
                document_id=document_id, user_id=harness.users[role].id, permission_level=level
            )
        )


async def eventually(check: Callable[[], bool], within: float = 15.0) -> None:
    """Poll until `check()` holds; a generous bound, never a timing assertion."""
    deadline = asyncio.get_running_loop().time() + within
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def present(harness: Harness, document_id: str) -> dict[str, dict[str, Any]]:
    """Who `GET /documents/<id>/presence` lists, by username."""
    response = await harness.call("GET", f"/api/v1/documents/{document_id}/presence", role="admin")
    body = await response.json()
    assert response.status == 200, body
    return {user["username"]: user for user in body["data"]}


async def present_soon(harness: Harness, document_id: str, usernames: set[str]) -> None:
    """Poll (with a generous bound) until exactly these users are present."""
    deadline = asyncio.get_running_loop().time() + 15
    while set(await present(harness, document_id)) != usernames:
        assert asyncio.get_running_loop().time() < deadline, "presence did not settle"
        await asyncio.sleep(0.05)


async def wait_healthy(
    url: str, *, alive: Callable[[], bool], why_not: Callable[[], str], within: float
) -> None:
    """Poll `url`'s /healthz until it answers 200; fail with `why_not()` (its log, say) as
    soon as `alive()` says the server process is gone, or once `within` seconds pass."""
    deadline = asyncio.get_running_loop().time() + within
    async with aiohttp.ClientSession() as http:
        while True:
            if not alive():
                pytest.fail(f"{url} exited:\n{why_not()}")
            try:
                async with http.get(f"{url}/healthz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            if asyncio.get_running_loop().time() > deadline:
                pytest.fail(f"{url} did not become healthy within {within:g} s")
            await asyncio.sleep(0.1)
