"""Revocation reaches idle sockets at once on every transport, held updates are asked for,
seats are capped per user."""

from __future__ import annotations

import contextlib
import itertools
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pycrdt
import pytest
import socketio
import sqlalchemy as sa

from handlers import keys
from handlers.auth_context import SESSION_COOKIE
from handlers.notifications_socket import NotificationsNamespace
from handlers.ywebsocket import ACCESS_REVOKED, SESSION_ENDED
from realtime_cms.client import CollabClient, CollabError
from realtime_cms.db import transaction
from realtime_cms.models.analytics import AuditLog
from realtime_cms.models.auth import Role, User
from realtime_cms.models.content import ContentItem, ContentType
from realtime_cms.models.realtime import DocumentPermission, UserSession
from realtime_cms.models.sites import Site
from realtime_cms.notifications.hub import NAMESPACE as NOTIFICATIONS
from realtime_cms.security.tokens import hash_token
from tests.accounts.support import assert_all_revoked, new_api_token, sign_in_everywhere
from tests.accounts.test_recovery import confirm_reset, last_mail_to, request_reset
from tests.support.harness import PASSWORD, Harness, make_settings, serving
from tests.support.live import eventually, new_document
from tests.support.sockets import (
    AT_ONCE_SECONDS,
    REVOKED,
    SERVER_DISCONNECT,
    CollabSocket,
    NotificationsSocket,
    WsSocket,
    YjsSocket,
    endings,
    on_every_transport,
)

# Small enough to reach in a test; large enough for the tests that open several seats.
SEAT_CAP = 4
# Documents one connection may hold (below the user's cap, so each cap is reached alone).
PER_CONNECTION = 3
NEW_PASSWORD = "a brand new revoking passphrase"
_users = itertools.count(1)


@pytest.fixture(scope="module")
async def harness(database_url: str, redis_url: str | None) -> AsyncIterator[Harness]:
    settings = make_settings(
        database_url,
        redis_url,
        collab_max_seats_per_user=SEAT_CAP,
        collab_max_documents=PER_CONNECTION,
    )
    async with serving(settings) as h:
        yield h


async def fresh_user(harness: Harness, *roles: str) -> User:
    """A new user with these roles and no other records (so it may be deleted)."""
    return await harness.add_user(f"revoked{next(_users)}", *roles)


async def new_editor(harness: Harness) -> tuple[int, str]:
    """A fresh user with the editor role, signed in: (id, token)."""
    user = await fresh_user(harness, "editor")
    return user.id, await harness.login(user.username)


async def granted(harness: Harness, token: str, prefix: str, level: str = "write") -> str:
    """A new free document the token's user holds `level` on (a grant)."""
    document_id = new_document(prefix)
    async with transaction(harness.app[keys.SESSIONS]) as db:
        user_id = await db.scalar(
            sa.select(UserSession.user_id).where(UserSession.id == hash_token(token))
        )
        db.add(DocumentPermission(document_id=document_id, user_id=user_id, permission_level=level))
    return document_id


async def content_document(harness: Harness) -> str:
    """The body of a new content item (by the admin): roles alone give levels on it."""
    tag = uuid.uuid4().hex[:8]
    async with transaction(harness.app[keys.SESSIONS]) as db:
        site = Site(name=f"Site {tag}", domain=f"s{tag}.example.com")
        kind = ContentType(name=f"Type {tag}", slug=f"type-{tag}")
        db.add_all([site, kind])
        await db.flush()
        item = ContentItem(
            site_id=site.id,
            content_type_id=kind.id,
            author_id=harness.users["admin"].id,
            title=f"Item {tag}",
            slug=f"item-{tag}",
        )
        db.add(item)
        await db.flush()
    return f"content:{item.id}"


def url_of(harness: Harness) -> str:
    return str(harness.client.make_url("/"))


async def as_admin(harness: Harness, method: str, path: str, body: Any = None) -> None:
    response = await harness.call(method, path, role="admin", json=body)
    assert response.status in (200, 204), await response.text()


async def deactivate(harness: Harness, user_id: int) -> None:
    await as_admin(harness, "POST", f"/api/v1/users/{user_id}/deactivate")


async def revoke_role(harness: Harness, user_id: int, role: str) -> None:
    role_id = await harness.scalar(sa.select(Role.id).where(Role.name == role))
    await as_admin(harness, "DELETE", f"/api/v1/users/{user_id}/roles/{role_id}")


@contextlib.asynccontextmanager
async def notifications_sweep_stopped(harness: Harness) -> AsyncIterator[None]:
    """The `/notifications` sweep (every connection, every 5 s) stopped for the block, so
    that only the at-once path can end a connection there."""
    namespace = harness.app[keys.SIO].namespace_handlers[NOTIFICATIONS]
    assert isinstance(namespace, NotificationsNamespace)
    await namespace.stop(harness.app)
    try:
        yield
    finally:
        await namespace.start(harness.app)


# Each test opens its sockets just before the change: their seats were just checked, so
# the periodic re-check is 5 s away and only the at-once path ends them in AT_ONCE_SECONDS.


async def test_a_passive_collab_socket_of_a_deactivated_user_is_closed_at_once(
    harness: Harness,
) -> None:
    user_id, token = await new_editor(harness)
    async with CollabSocket(url_of(harness), token) as watched:
        await watched.client.join(await granted(harness, token, "revoke"))
        await deactivate(harness, user_id)
        assert await watched.ended() == SERVER_DISCONNECT


async def test_a_passive_collab_socket_of_a_deleted_user_is_closed_at_once(
    harness: Harness,
) -> None:
    user_id, token = await new_editor(harness)
    async with CollabSocket(url_of(harness), token) as watched:
        await watched.client.join(await granted(harness, token, "delete"))
        await as_admin(harness, "DELETE", f"/api/v1/users/{user_id}")
        assert await watched.ended() == SERVER_DISCONNECT


async def test_a_password_set_by_an_admin_closes_the_users_collab_sockets_at_once(
    harness: Harness,
) -> None:
    user_id, token = await new_editor(harness)
    async with CollabSocket(url_of(harness), token) as watched:
        await watched.client.join(await granted(harness, token, "password-set"))
        await as_admin(
            harness, "POST", f"/api/v1/users/{user_id}/password", {"password": NEW_PASSWORD}
        )
        assert await watched.ended() == SERVER_DISCONNECT


async def test_changing_ones_password_closes_the_other_sessions_sockets_at_once_not_this_ones(
    harness: Harness,
) -> None:
    user = await fresh_user(harness, "editor")
    this, other = await harness.login(user.username), await harness.login(user.username)
    document_id = await granted(harness, this, "password-change")
    url = url_of(harness)
    async with CollabSocket(url, this) as kept, CollabSocket(url, other) as ended:
        await kept.client.join(document_id)
        await ended.client.join(document_id)
        body = {"current_password": PASSWORD, "new_password": NEW_PASSWORD}
        response = await harness.call("POST", "/api/v1/auth/password", token=this, json=body)
        assert response.status == 204, await response.text()
        assert await ended.ended() == SERVER_DISCONNECT
        assert await kept.still_open()
        await kept.client.join(await granted(harness, this, "password-change"))


async def test_a_password_reset_by_mailed_token_closes_the_users_collab_sockets_at_once(
    harness: Harness,
) -> None:
    user = await fresh_user(harness, "editor")
    token = await harness.login(user.username)
    document_id = await granted(harness, token, "password-reset")
    assert (await request_reset(harness, user.email)).status == 202
    _, reset = last_mail_to(harness, user.email)
    async with CollabSocket(url_of(harness), token) as watched:
        await watched.client.join(document_id)
        assert (await confirm_reset(harness, reset, NEW_PASSWORD)).status == 204
        assert await watched.ended() == SERVER_DISCONNECT


async def test_losing_the_role_a_level_came_from_revokes_the_seat_at_once_and_keeps_the_socket(
    harness: Harness,
) -> None:
    """The editor role's `content.update` is the only thing giving write on a content item's
    body: without it there is no access, so the seat ends (`permission` null) while the
    connection, whose session still holds, is served on."""
    user_id, token = await new_editor(harness)
    document_id = await content_document(harness)
    async with CollabSocket(url_of(harness), token) as watched:
        assert (await watched.client.join(document_id)).role == "write"
        await revoke_role(harness, user_id, "editor")
        await eventually(lambda: (document_id, None) in watched.client.permissions, AT_ONCE_SECONDS)
        assert await watched.still_open()
        with pytest.raises(CollabError) as caught:
            await watched.client.call("sync", {"document": document_id})
        assert caught.value.code == "not_joined"


async def test_a_document_grant_outlives_a_lost_role_the_seat_is_re_levelled_at_once(
    harness: Harness,
) -> None:
    """A level is the highest any rule grants: losing the role that gave write leaves the
    read grant, and the seat gets that level at once."""
    user_id, token = await new_editor(harness)
    document_id = await content_document(harness)
    async with transaction(harness.app[keys.SESSIONS]) as db:
        db.add(
            DocumentPermission(document_id=document_id, user_id=user_id, permission_level="read")
        )
    async with CollabSocket(url_of(harness), token) as watched:
        assert (await watched.client.join(document_id)).role == "write"
        await revoke_role(harness, user_id, "editor")
        await eventually(
            lambda: (document_id, "read") in watched.client.permissions, AT_ONCE_SECONDS
        )
        assert watched.client.documents[document_id].role == "read"
        assert await watched.still_open()


@pytest.mark.parametrize(
    ("seat", "ending"),
    [(YjsSocket, SERVER_DISCONNECT), (WsSocket, ACCESS_REVOKED)],
    ids=["yjs", "ws"],
)
async def test_losing_the_role_a_level_came_from_closes_a_provider_seat_at_once(
    harness: Harness, seat: type[YjsSocket | WsSocket], ending: object
) -> None:
    """Neither provider has a message for a lost level: the seat is closed instead."""
    user_id, token = await new_editor(harness)
    document_id = await content_document(harness)
    async with seat(url_of(harness), token, document_id) as passive:
        await revoke_role(harness, user_id, "editor")
        assert await passive.ended() == ending


async def test_a_passive_collab_socket_of_a_revoked_api_token_is_closed_at_once(
    harness: Harness,
) -> None:
    _, session = await new_editor(harness)
    document_id = await granted(harness, session, "revoke-token")
    created = await new_api_token(harness, session, ["documents.write"])
    assert created.status == 201, await created.text()
    api_token = (await created.json())["data"]
    async with CollabSocket(url_of(harness), api_token["token"]) as watched:
        await watched.client.join(document_id)
        path = f"/api/v1/auth/tokens/{api_token['id']}"
        assert (await harness.call("DELETE", path, token=session)).status == 204
        assert await watched.ended() == SERVER_DISCONNECT


async def test_a_passive_y_socket_io_seat_of_a_deactivated_user_is_closed_at_once(
    harness: Harness,
) -> None:
    user_id, token = await new_editor(harness)
    document_id = await granted(harness, token, "revoke-yjs")
    async with YjsSocket(url_of(harness), token, document_id) as seat:
        await deactivate(harness, user_id)
        assert await seat.ended() == SERVER_DISCONNECT


async def test_y_websocket_seats_of_a_deactivated_user_are_closed_at_once(
    harness: Harness,
) -> None:
    user_id, token = await new_editor(harness)
    document_id = await granted(harness, token, "revoke-ws")
    async with WsSocket(url_of(harness), token, document_id) as seat:
        await deactivate(harness, user_id)
        assert await seat.ended() == SESSION_ENDED


async def test_a_notifications_socket_of_a_deactivated_user_is_told_and_closed_at_once(
    harness: Harness,
) -> None:
    user_id, token = await new_editor(harness)
    async with (
        notifications_sweep_stopped(harness),
        NotificationsSocket(url_of(harness), token) as listener,
    ):
        await deactivate(harness, user_id)
        assert await listener.ended() == SERVER_DISCONNECT
        assert listener.told.is_set()


async def test_a_passive_collab_socket_is_dropped_by_the_sweep_when_its_session_ends(
    harness: Harness,
) -> None:
    """A session ended behind the server's back (no event): the sweep still finds it."""
    _, token = await new_editor(harness)
    async with CollabSocket(url_of(harness), token) as watched:
        await watched.client.join(await granted(harness, token, "sweep"))
        async with transaction(harness.app[keys.SESSIONS]) as db:
            await db.execute(sa.delete(UserSession).where(UserSession.id == hash_token(token)))
        await watched.ended(20)


async def test_a_logout_closes_that_sessions_sockets_and_no_other(harness: Harness) -> None:
    user = await fresh_user(harness, "editor")
    first, second = await harness.login(user.username), await harness.login(user.username)
    url = url_of(harness)
    async with CollabSocket(url, first) as one, CollabSocket(url, second) as two:
        document_id = await granted(harness, first, "logout")
        await one.client.join(document_id)
        await two.client.join(document_id)
        response = await harness.call("POST", "/api/v1/auth/logout", token=first)
        assert response.status == 204, await response.text()
        assert await one.ended() == SERVER_DISCONNECT
        assert await two.still_open()
        await two.client.join(await granted(harness, second, "logout"))


async def test_signing_out_everywhere_answers_204_and_ends_every_credential_of_the_caller(
    harness: Harness,
) -> None:
    user = await fresh_user(harness, "editor")
    tokens = await sign_in_everywhere(harness, user.username)
    other = await harness.login(user.username)
    response = await harness.call("POST", "/api/v1/auth/logout-everywhere", token=tokens["session"])
    assert response.status == 204, await response.text()
    assert response.cookies[SESSION_COOKIE].value == ""
    await assert_all_revoked(harness, tokens)
    assert (await harness.call("GET", "/api/v1/auth/me", token=other)).status == 401
    audited = sa.select(AuditLog.entity_id).where(AuditLog.action_type == "auth.logout_everywhere")
    assert await harness.scalar(audited.where(AuditLog.user_id == user.id)) == user.id


async def test_signing_out_everywhere_closes_the_callers_sockets_on_every_transport_at_once(
    harness: Harness,
) -> None:
    user = await fresh_user(harness, "editor")
    this, other = await harness.login(user.username), await harness.login(user.username)
    document_id = await granted(harness, this, "everywhere")
    url = url_of(harness)
    async with notifications_sweep_stopped(harness), contextlib.AsyncExitStack() as stack:
        sockets = await on_every_transport(stack, url, other, document_id)
        own = await stack.enter_async_context(CollabSocket(url, this))
        await own.client.join(document_id)
        response = await harness.call("POST", "/api/v1/auth/logout-everywhere", token=this)
        assert response.status == 204, await response.text()
        assert await endings([*sockets, own]) == [*REVOKED, SERVER_DISCONNECT]


async def test_an_update_lacking_dependencies_is_asked_for_and_acked_once_integrated(
    harness: Harness,
) -> None:
    _, token = await new_editor(harness)
    async with CollabSocket(url_of(harness), token) as watched:
        client = watched.client
        document = await client.join(await granted(harness, token, "held"))
        author: pycrdt.Doc = pycrdt.Doc()
        text = author.get("body", type=pycrdt.Text)
        text += "first"
        withheld = author.get_update()
        before = author.get_state()
        text += " second"
        second = author.get_update(before)
        # The client holds the first change (as if its send were lost) and sends the second.
        document.apply_remote(withheld)
        reply = await client.call("update", {"document": document.document_id, "update": second})
        assert reply == {"ok": True}
        await document.flush()
        check = await CollabClient(url_of(harness), token, timeout=10).__aenter__()
        try:
            fresh = await check.join(document.document_id)
            assert fresh.text() == "first second"
        finally:
            await check.close()


async def test_the_sync_event_gives_what_each_side_lacks(harness: Harness) -> None:
    _, token = await new_editor(harness)
    async with CollabSocket(url_of(harness), token) as watched:
        client = watched.client
        document = await client.join(await granted(harness, token, "sync"))
        document.doc.get("body", type=pycrdt.Text).insert(0, "saved")
        await document.flush()
        reply = await client.call(
            "sync", {"document": document.document_id, "state_vector": b"\x00"}
        )
        lacking: pycrdt.Doc = pycrdt.Doc()
        lacking.apply_update(reply["update"])
        assert str(lacking.get("body", type=pycrdt.Text)) == "saved"
        assert reply["state_vector"] == document.doc.get_state()
        with pytest.raises(CollabError) as caught:
            await client.call("sync", {"document": "notes:never-joined"})
        assert caught.value.code == "not_joined"


async def test_one_user_holds_at_most_the_seat_cap_across_transports(harness: Harness) -> None:
    user_id, token = await new_editor(harness)
    async with CollabSocket(url_of(harness), token) as watched, aiohttp.ClientSession() as http:
        sockets = []
        for _ in range(SEAT_CAP - 1):
            url = harness.client.make_url(f"/ws/{await granted(harness, token, 'cap')}").with_query(
                token=token
            )
            sockets.append(await http.ws_connect(url))
        await watched.client.join(await granted(harness, token, "cap"))  # the last seat
        with pytest.raises(CollabError) as caught:
            await watched.client.join(await granted(harness, token, "cap"))
        assert caught.value.code == "too_many_documents"
        url = harness.client.make_url(f"/ws/{await granted(harness, token, 'cap')}").with_query(
            token=token
        )
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(url)
        assert refused.value.status == 400
        await sockets[0].close()
        rooms = harness.app[keys.ROOMS]
        await eventually(lambda: rooms.seats_of(user_id) < SEAT_CAP)
        await watched.client.join(
            await granted(harness, token, "cap")
        )  # a seat freed is a seat to take
        for ws in sockets[1:]:
            await ws.close()


async def test_one_y_socket_io_connection_holds_at_most_the_per_connection_cap(
    harness: Harness,
) -> None:
    """Namespaces asked for at once on one Engine.IO connection: the cap holds (and it is
    the connection's, not the user's: this user has a seat left)."""
    _, token = await new_editor(harness)
    namespaces = [f"/yjs|{await granted(harness, token, 'yjs-cap')}" for _ in range(SEAT_CAP)]
    client = socketio.AsyncClient(reconnection=False)
    refusals: list[Any] = []
    for namespace in namespaces:
        client.on("connect_error", refusals.append, namespace=namespace)
    try:
        with contextlib.suppress(socketio.exceptions.ConnectionError):
            await client.connect(
                url_of(harness),
                namespaces=namespaces,
                auth={"token": token},
                transports=["websocket"],
                wait_timeout=5,
            )
        await eventually(lambda: len(client.namespaces) + len(refusals) == SEAT_CAP)
        assert len(client.namespaces) == PER_CONNECTION
        refused = {
            "code": "too_many_documents",
            "message": "Too many open documents on this connection",
        }
        assert [refusal["data"] for refusal in refusals] == [refused]
    finally:
        await client.disconnect()
