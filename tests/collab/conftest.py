"""Fixtures shared by the room tests: a running update store per module and backend."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from realtime_cms.collab.store import UpdateStore
from realtime_cms.db import create_engine, session_factory
from tests.support.harness import create_schema


@pytest.fixture(scope="module")
async def store(database_url: str) -> AsyncIterator[UpdateStore]:
    """A store on a fresh schema that commits each update at once (no group window)."""
    await create_schema(database_url)
    engine = create_engine(database_url)
    async with UpdateStore(session_factory(engine), commit_window=0) as store:
        yield store
    await engine.dispose()
