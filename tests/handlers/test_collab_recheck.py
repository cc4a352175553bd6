"""A session re-check that cannot reach the database is not a refusal of the edit.

A `/collab` message due for its session re-check waits for it; when the database fails, the
check is retried until the ack deadline, then answered `store_unavailable` (the client keeps
the edit and sends it again) while a background probe keeps trying. The outage is injected
by making the re-check's database lookup raise what the driver raises when the server is
gone (the fault battery, tests/faults, does the same with a real MariaDB stopped).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pycrdt
import pytest
import sqlalchemy as sa
from sqlalchemy.exc import OperationalError

import handlers.collab
from handlers import keys
from handlers.collab import CollabNamespace, SocketPeer
from realtime_cms.client import CollabClient, CollabError
from realtime_cms.db import transaction
from realtime_cms.models.realtime import DocumentPermission, UserSession
from realtime_cms.security.tokens import hash_token
from tests.support.harness import Harness, make_settings, serving
from tests.support.live import eventually, grant, new_document

ACK_DEADLINE = 1.5


@pytest.fixture(scope="module")
async def harness(database_url: str, redis_url: str | None) -> AsyncIterator[Harness]:
    settings = make_settings(database_url, redis_url, collab_ack_deadline_seconds=ACK_DEADLINE)
    async with serving(settings) as h:
        yield h


class Outage:
    """Makes the re-check's lookup fail like a database that is down, `failures` times
    (None: until `end` is called); counts the attempts."""

    def __init__(self, real: Callable[..., Awaitable[Any]], failures: int | None) -> None:
        self.real, self.failures, self.attempts = real, failures, 0

    def end(self) -> None:
        self.failures = 0

    async def __call__(self, *args: Any) -> Any:
        self.attempts += 1
        if self.failures is None or self.attempts <= self.failures:
            raise OperationalError("SELECT user_sessions", {}, ConnectionError("server gone"))
        return await self.real(*args)


def outage(monkeypatch: pytest.MonkeyPatch, failures: int | None) -> Outage:
    fault = Outage(handlers.collab.recheck_principal, failures)
    monkeypatch.setattr(handlers.collab, "recheck_principal", fault)
    return fault


def namespace(harness: Harness) -> CollabNamespace:
    handler = harness.app[keys.SIO].namespace_handlers["/collab"]
    assert isinstance(handler, CollabNamespace)
    return handler


def due_for_recheck(harness: Harness) -> SocketPeer:
    """The only connected peer, made due for its session re-check."""
    (peer,) = namespace(harness).peers.values()
    peer.checked_at = 0.0
    return peer


def edit(doc: pycrdt.Doc, words: str) -> bytes:
    before = doc.get_state()
    text = doc.get("body", type=pycrdt.Text)
    text += words
    return doc.get_update(before)


async def server_text(harness: Harness, document_id: str) -> str:
    async with CollabClient(str(harness.client.make_url("/")), harness.tokens["editor"]) as check:
        return (await check.join(document_id)).text()


@pytest.fixture
async def joined(harness: Harness) -> AsyncIterator[tuple[CollabClient, str]]:
    document_id = new_document("recheck")
    await grant(harness, document_id, "editor", "write")
    client = CollabClient(str(harness.client.make_url("/")), harness.tokens["editor"], timeout=20)
    await client.connect()
    await client.join(document_id)
    try:
        yield client, document_id
    finally:
        if client.sio.connected:
            await client.sio.disconnect()
        await eventually(lambda: not namespace(harness).peers)


async def test_a_short_outage_of_the_recheck_delays_the_ack_and_the_edit_lands(
    harness: Harness, joined: tuple[CollabClient, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, document_id = joined
    fault = outage(monkeypatch, failures=3)
    due_for_recheck(harness)
    author: pycrdt.Doc = pycrdt.Doc()
    reply = await client.call("update", {"document": document_id, "update": edit(author, "kept")})
    assert reply == {"ok": True}
    assert fault.attempts == 4  # three failures retried within the deadline, then the check
    assert await server_text(harness, document_id) == "kept"


async def test_an_outage_past_the_deadline_answers_store_unavailable_and_loses_nothing(
    harness: Harness, joined: tuple[CollabClient, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, document_id = joined
    fault = outage(monkeypatch, failures=None)
    peer = due_for_recheck(harness)
    author: pycrdt.Doc = pycrdt.Doc()
    update = edit(author, "resent")
    with pytest.raises(CollabError) as caught:
        await client.call("update", {"document": document_id, "update": update})
    assert caught.value.code == "store_unavailable"
    assert fault.attempts > 1  # retried, not refused at the first failure
    assert peer.probe is not None  # a probe keeps trying in the background
    # While the probe has not got through, messages are answered at once, not held.
    attempts = fault.attempts
    with pytest.raises(CollabError) as again:
        await client.call("update", {"document": document_id, "update": update})
    assert again.value.code == "store_unavailable" and fault.attempts >= attempts
    assert await server_text(harness, document_id) == ""
    fault.end()
    await eventually(lambda: peer.probe is None)
    assert peer.checked_at > 0.0
    # The client sends the kept edit again: it lands once.
    assert await client.call("update", {"document": document_id, "update": update}) == {"ok": True}
    assert await server_text(harness, document_id) == "resent"


async def test_a_session_that_ended_during_the_outage_is_closed_by_the_probe(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    await harness.add_user("recheck-ended", "editor")
    token = await harness.login("recheck-ended")
    document_id = new_document("recheck-ended")
    async with transaction(harness.app[keys.SESSIONS]) as db:
        user_id = await db.scalar(
            sa.select(UserSession.user_id).where(UserSession.id == hash_token(token))
        )
        db.add(
            DocumentPermission(document_id=document_id, user_id=user_id, permission_level="write")
        )
    async with CollabClient(str(harness.client.make_url("/")), token, timeout=20) as client:
        await client.join(document_id)
        fault = outage(monkeypatch, failures=None)
        peer = due_for_recheck(harness)
        author: pycrdt.Doc = pycrdt.Doc()
        with pytest.raises(CollabError):
            await client.call("update", {"document": document_id, "update": edit(author, "x")})
        assert peer.probe is not None
        # The session ends while the probe cannot reach the database (deleted directly: no
        # access-change event, so only the probe's next check can notice).
        async with transaction(harness.app[keys.SESSIONS]) as db:
            await db.execute(sa.delete(UserSession).where(UserSession.id == hash_token(token)))
        fault.end()
        await eventually(lambda: not client.sio.connected)
        assert peer.sid not in namespace(harness).peers
