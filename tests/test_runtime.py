"""The Runtime: the core assembled and run without aiohttp, stopped in reverse."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pycrdt
import pytest
import socketio
import sqlalchemy as sa

from realtime_cms.collab.access import Level
from realtime_cms.config import Settings
from realtime_cms.db import transaction
from realtime_cms.errors import Unavailable
from realtime_cms.events import AccessChanged, emit
from realtime_cms.models.realtime import DocumentUpdate
from realtime_cms.principal import Principal
from realtime_cms.runtime import Runtime
from tests.support.harness import create_schema, make_settings


class Listener:
    """A peer with no transport: what a worker process would seat in a room."""

    def __init__(self) -> None:
        self.id = "runtime-test-peer"
        self.principal = Principal(user_id=None, username="system")

    async def send_update(self, document_id: str, update: bytes) -> None: ...

    async def send_awareness(self, document_id: str, awareness_update: bytes) -> None: ...

    async def send_level(self, document_id: str, level: Level | None) -> None: ...

    async def send_sync_request(self, document_id: str, state_vector: bytes) -> None: ...

    async def send_notice(self, document_id: str, notice: Mapping[str, Any]) -> None: ...


# Nothing is pushed in these tests: a Socket.IO server that is never attached to a web app.
SIO = socketio.AsyncServer()


@pytest.fixture(scope="module")
async def settings(database_url: str, redis_url: str | None) -> Settings:
    await create_schema(database_url)
    return make_settings(database_url, redis_url)


async def test_a_runtime_runs_live_documents_and_events_and_stops_them(settings: Settings) -> None:
    changes: list[tuple[int | None, str | None]] = []
    runtime = Runtime(
        settings, sio=SIO, on_access_change=lambda user, session: changes.append((user, session))
    )
    async with runtime:
        peer = Listener()
        room = await runtime.rooms.join("notes:runtime", peer, "write")
        doc: pycrdt.Doc = pycrdt.Doc()
        doc.get("body", type=pycrdt.Text).insert(0, "durable")
        await room.apply_update(peer, doc.get_update())  # returns once committed
        async with runtime.sessions() as db:
            rows = await db.scalar(
                sa.select(sa.func.count())
                .select_from(DocumentUpdate)
                .where(DocumentUpdate.document_id == "notes:runtime")
            )
        assert rows == 1
        # A committed access change reaches the callback; a rolled-back one does not.
        async with transaction(runtime.sessions) as db:
            emit(db, AccessChanged(user_id=7))
        with pytest.raises(RuntimeError):
            async with transaction(runtime.sessions) as db:
                emit(db, AccessChanged(user_id=8))
                raise RuntimeError("rolled back")
        assert changes == [(7, None)]
        await runtime.rooms.leave("notes:runtime", peer)
    with pytest.raises(Unavailable):
        await runtime.rooms.join("notes:after", Listener(), "write")


async def test_a_runtime_starts_only_once(settings: Settings) -> None:
    runtime = Runtime(settings, sio=SIO)
    async with runtime:
        with pytest.raises(RuntimeError):
            await runtime.__aenter__()
