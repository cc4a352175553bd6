"""No edit is stranded in a client: answered "not saved yet", `ClientDocument` resyncs by itself.

A live server answers a real client's edits `store_unavailable` (its database stalls past
the ack deadline), `store_failed` (its update store refuses appends, as a stopped store
does) or `too_many_pending` (its edits wait for a change the server lacks, past a budget of
one). Nobody but the client acts afterwards: once `flush()` returns, the log holds every
character typed, and so does the document a fresh client joins. The faults live here so
that tests/interop/test_provider_resync.py puts the JS provider through the same ones.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pycrdt
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from handlers import keys
from handlers.collab import CollabNamespace
from handlers.collab_seat import MessageRate
from realtime_cms.client import ClientDocument, CollabClient
from realtime_cms.collab.store import UpdateStore
from realtime_cms.db import create_engine
from realtime_cms.models.realtime import DocumentUpdate
from tests.support.harness import Harness, make_settings, serving
from tests.support.live import eventually, grant, new_document

# Short, so that a stalled commit is answered soon; long enough for a loaded CI machine.
ACK_DEADLINE_SECONDS = 1.0
# One held edit per sender: the second edit waiting for a missing change is over budget.
MAX_PENDING = 1
# How long a fault lasts after the client has been told: resync rounds meet it meanwhile.
FAULT_LASTS_SECONDS = 1.5
SETTLE_SECONDS = 30.0
T = TypeVar("T")


@pytest.fixture(scope="module")
async def harness(database_url: str, redis_url: str | None) -> AsyncIterator[Harness]:
    settings = make_settings(
        database_url,
        redis_url,
        collab_ack_deadline_seconds=ACK_DEADLINE_SECONDS,
        collab_max_pending=MAX_PENDING,
    )
    async with serving(settings) as h:
        yield h


def server_url(harness: Harness) -> str:
    return str(harness.client.make_url("/")).rstrip("/")


def store_of(harness: Harness) -> UpdateStore:
    return harness.app[keys.ROOMS].store


async def writable_document(harness: Harness, prefix: str) -> str:
    """A new document the default editor may write and the admin may read."""
    document_id = new_document(prefix)
    await grant(harness, document_id, "editor", "write")
    return document_id


class StalledLog:
    """The database holds a lock that makes appends to one document's log wait: on SQLite
    the write lock of another connection, on MariaDB the next-key lock of a locking read of
    the document's rows. Reads go on; the appends commit once it is released."""

    def __init__(self, database_url: str, document_id: str, sqlite_path: Path | None) -> None:
        self.database_url = database_url
        self.document_id = document_id
        self.sqlite_path = sqlite_path
        self._sqlite: sqlite3.Connection | None = None
        self._mariadb: AsyncConnection | None = None

    async def __aenter__(self) -> StalledLog:
        if self.sqlite_path is not None:
            self._sqlite = await asyncio.to_thread(self._lock_sqlite, self.sqlite_path)
        else:
            engine = create_engine(self.database_url)
            self._mariadb = await engine.connect()
            await self._mariadb.begin()
            rows = sa.select(DocumentUpdate.id).where(
                DocumentUpdate.document_id == self.document_id
            )
            await self._mariadb.execute(rows.with_for_update())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.release()

    @staticmethod
    def _lock_sqlite(path: Path) -> sqlite3.Connection:
        connection = sqlite3.connect(
            path, timeout=30, isolation_level=None, check_same_thread=False
        )
        connection.execute("BEGIN IMMEDIATE")
        return connection

    async def release(self) -> None:
        """End the stall (once; later calls do nothing)."""
        sqlite_connection, self._sqlite = self._sqlite, None
        if sqlite_connection is not None:
            await asyncio.to_thread(sqlite_connection.close)  # rolls back, releasing the lock
        mariadb, self._mariadb = self._mariadb, None
        if mariadb is not None:
            await mariadb.rollback()
            await mariadb.close()
            await mariadb.engine.dispose()


def stalled_log(harness: Harness, document_id: str) -> StalledLog:
    settings = harness.app[keys.SETTINGS]
    return StalledLog(settings.database_url, document_id, settings.sqlite_path)


class RefusingStore:
    """The update store refuses every append, as a stopped store does, until released."""

    def __init__(self, store: UpdateStore, monkeypatch: pytest.MonkeyPatch) -> None:
        self.store = store
        self.monkeypatch = monkeypatch

    def __enter__(self) -> RefusingStore:
        def refuse(document_id: str, update: bytes) -> asyncio.Future[int]:
            raise RuntimeError("the UpdateStore is not running")

        self.monkeypatch.setattr(self.store, "enqueue", refuse)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.monkeypatch.undo()

    async def release(self) -> None:
        self.monkeypatch.undo()


def withhold(document: ClientDocument, text: str) -> None:
    """Give the client a change the server never got (a peer's, passed on out of band), so
    that its next edits depend on what the server lacks."""
    peer: pycrdt.Doc = pycrdt.Doc()
    peer.get("body", type=pycrdt.Text).insert(0, text)
    document.apply_remote(peer.get_update())


def type_burst(document: ClientDocument, text: str) -> None:
    """Type `text` at the end, one character per transaction (so one update each), without
    yielding: every update is on its way before any answer comes back."""
    body = document.doc.get("body", type=pycrdt.Text)
    for char in text:
        body.insert(len(body), char)


async def type_slowly(document: ClientDocument, text: str) -> None:
    """Type `text` at the end, one character per transaction, as a person does."""
    body = document.doc.get("body", type=pycrdt.Text)
    for char in text:
        body.insert(len(body), char)
        await asyncio.sleep(0.01)


def codes(document: ClientDocument) -> list[str]:
    return [refusal.code for refusal in document.refusals]


async def logged_text(store: UpdateStore, document_id: str) -> str:
    """The document's body as its durable log says (snapshot, then every row)."""
    doc: pycrdt.Doc = pycrdt.Doc()
    (await store.load(document_id)).apply_to(doc)
    return str(doc.get("body", type=pycrdt.Text))


async def fresh_text(harness: Harness, document_id: str) -> str:
    async with CollabClient(server_url(harness), harness.tokens["admin"], timeout=10) as reader:
        return (await reader.join(document_id)).text()


async def released_after(release: Callable[[], Awaitable[None]], seconds: float) -> None:
    await asyncio.sleep(seconds)
    await release()


async def logged_once(
    harness: Harness,
    document_id: str,
    saved: Awaitable[T],
    release: Callable[[], Awaitable[None]] | None = None,
) -> tuple[T, str]:
    """What `saved` gives (the client saying every change is saved) and the log's text at
    that moment, while the fault, if any, goes on for a while (`release` ends it): a client
    that stopped short of getting its edits in would find them missing here."""
    ending = asyncio.create_task(released_after(release, FAULT_LASTS_SECONDS)) if release else None
    try:
        said = await asyncio.wait_for(saved, SETTLE_SECONDS)
        return said, await logged_text(store_of(harness), document_id)
    finally:
        if ending is not None:
            await ending


async def assert_saved(
    harness: Harness, document: ClientDocument, logged: str, expected: str
) -> None:
    """Every character was in the log once the client was done, and is in what a fresh
    client gets; the client resynced and has no error left."""
    assert logged == expected
    assert document.text() == expected
    assert await fresh_text(harness, document.document_id) == expected
    assert document.resyncs > 0
    assert document.errors == []


async def test_edits_answered_store_unavailable_are_saved_once_the_database_answers(
    harness: Harness,
) -> None:
    document_id = await writable_document(harness, "resync-unavailable")
    async with CollabClient(server_url(harness), harness.tokens["editor"], timeout=10) as client:
        document = await client.join(document_id)
        async with stalled_log(harness, document_id) as stall:
            await type_slowly(document, "slow but saved")
            await eventually(lambda: "store_unavailable" in codes(document))
            _, logged = await logged_once(harness, document_id, document.flush(), stall.release)
        await assert_saved(harness, document, logged, "slow but saved")


async def test_edits_answered_store_failed_are_saved_once_the_store_takes_them(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    document_id = await writable_document(harness, "resync-failed")
    async with CollabClient(server_url(harness), harness.tokens["editor"], timeout=10) as client:
        document = await client.join(document_id)
        with RefusingStore(store_of(harness), monkeypatch) as refusing:
            await type_slowly(document, "refused then saved")
            await eventually(lambda: "store_failed" in codes(document))
            _, logged = await logged_once(harness, document_id, document.flush(), refusing.release)
        await assert_saved(harness, document, logged, "refused then saved")


async def test_edits_answered_too_many_pending_are_saved_with_what_they_depend_on(
    harness: Harness,
) -> None:
    document_id = await writable_document(harness, "resync-pending")
    async with CollabClient(server_url(harness), harness.tokens["editor"], timeout=10) as client:
        document = await client.join(document_id)
        withhold(document, "withheld ")
        type_burst(document, "held")
        await eventually(lambda: "too_many_pending" in codes(document))
        _, logged = await logged_once(harness, document_id, document.flush())
        await assert_saved(harness, document, logged, "withheld held")


# Events one connection may send in a second, in the rate test.
RATE = 5


async def test_edits_answered_rate_limited_are_saved_by_the_next_sync_rounds(
    harness: Harness,
) -> None:
    """An update refused for the connection's message rate is not taken: the client keeps
    it and its backed-off sync rounds get it in."""
    document_id = await writable_document(harness, "resync-rate")
    async with CollabClient(server_url(harness), harness.tokens["editor"], timeout=10) as client:
        document = await client.join(document_id)
        # This connection's own limiter, made tight (the setting is read at connect).
        namespace = harness.app[keys.SIO].namespace_handlers["/collab"]
        assert isinstance(namespace, CollabNamespace)
        (peer,) = [p for p in namespace.peers.values() if p.sid == client.sio.get_sid("/collab")]
        peer.rate = MessageRate(RATE)
        type_burst(document, "x" * (4 * RATE))
        await eventually(lambda: "rate_limited" in codes(document))
        _, logged = await logged_once(harness, document_id, document.flush())
        await assert_saved(harness, document, logged, "x" * (4 * RATE))
