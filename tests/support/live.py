"""Helpers for live-document tests: grants, fresh document names, polling with a bound."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable

from realtime_cms import keys
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
