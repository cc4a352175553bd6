"""The `/notifications` namespace on a real server: admission, pushes, read state, catch-up."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import socketio
import sqlalchemy as sa

from handlers import keys
from handlers.notifications_socket import EVENTS_PER_SECOND, NotificationsNamespace
from realtime_cms.db import transaction
from realtime_cms.models.auth import User
from realtime_cms.notifications.hub import NAMESPACE
from tests.support.harness import Harness
from tests.support.live import eventually

_titles = (f"live notification {n}" for n in itertools.count(1))


class Listener:
    """A python-socketio client on `/notifications` that records every server event."""

    def __init__(self, url: str, token: str | None) -> None:
        self.url, self.token = url, token
        self.sio = socketio.AsyncClient(reconnection=False)
        self.events: list[tuple[str, Any]] = []
        self.refusal: Any = None
        for event in ("notification", "unread", "read", "session_ended"):
            self.sio.on(event, self._recorder(event), namespace=NAMESPACE)
        self.sio.on("connect_error", self._refused, namespace=NAMESPACE)

    def _recorder(self, event: str) -> Callable[[Any], Awaitable[None]]:
        async def record(data: Any) -> None:
            self.events.append((event, data))

        return record

    async def _refused(self, data: Any) -> None:
        self.refusal = data

    async def connect(self, **kwargs: Any) -> Listener:
        auth = {"token": self.token} if self.token is not None else None
        await self.sio.connect(
            self.url,
            namespaces=[NAMESPACE],
            auth=auth,
            transports=["websocket"],
            wait_timeout=10,
            **kwargs,
        )
        return self

    async def call(self, event: str, data: Any = None) -> Any:
        return await self.sio.call(event, data, namespace=NAMESPACE, timeout=15)

    def received(self, event: str) -> list[Any]:
        return [data for name, data in self.events if name == event]

    def titles(self) -> list[str]:
        return [notification["title"] for notification in self.received("notification")]


Connect = Callable[..., Awaitable[Listener]]


@pytest.fixture
def url(harness: Harness) -> str:
    return str(harness.client.make_url("/"))


@pytest.fixture
async def connect(url: str, harness: Harness) -> AsyncIterator[Connect]:
    """Open a listener as a default role's user (or with an explicit token)."""
    listeners: list[Listener] = []

    async def open_listener(role: str, token: str | None = None) -> Listener:
        listener = await Listener(url, token or harness.tokens[role]).connect()
        listeners.append(listener)
        return listener

    yield open_listener
    for listener in listeners:
        if listener.sio.connected:
            await listener.sio.disconnect()


async def send(harness: Harness, role: str, title: str | None = None) -> str:
    """Notify the default user of `role` through the REST send endpoint (as the admin)."""
    title = title or next(_titles)
    body = {"user_ids": [harness.users[role].id], "title": title, "message": f"about {title}"}
    response = await harness.call("POST", "/api/v1/notifications/send", role="admin", json=body)
    assert response.status == 200, await response.text()
    return title


async def caught_up(
    listener: Listener, after_id: int = 0, limit: int = 200
) -> list[dict[str, Any]]:
    """Every notification after `after_id`, paging with `since` until the server has no more."""
    found: list[dict[str, Any]] = []
    while True:
        answer = await listener.call("since", {"after_id": after_id, "limit": limit})
        assert answer["ok"], answer
        found += answer["notifications"]
        if not answer["more"]:
            return found
        after_id = answer["notifications"][-1]["id"]


def namespace(harness: Harness) -> NotificationsNamespace:
    handler = harness.app[keys.SIO].namespace_handlers[NAMESPACE]
    assert isinstance(handler, NotificationsNamespace)
    return handler


async def test_connecting_without_a_valid_token_is_refused_with_a_code(url: str) -> None:
    for token in ("rcs_not-a-real-token", "", None):
        listener = Listener(url, token)
        with pytest.raises(socketio.exceptions.ConnectionError):
            await listener.connect()
        assert listener.refusal["data"]["code"] == "unauthorized", listener.refusal


async def test_a_foreign_origin_is_refused(url: str, harness: Harness) -> None:
    listener = Listener(url, harness.tokens["viewer"])
    with pytest.raises(socketio.exceptions.ConnectionError):
        await listener.connect(headers={"Origin": "http://evil.example"})


async def test_a_notification_reaches_every_connection_of_its_user_and_no_one_else(
    harness: Harness, connect: Connect
) -> None:
    tab1, tab2, other = await connect("viewer"), await connect("viewer"), await connect("editor")
    title = await send(harness, "viewer")
    await eventually(lambda: title in tab1.titles() and title in tab2.titles())
    await eventually(lambda: bool(tab1.received("unread")) and bool(tab2.received("unread")))
    assert tab1.received("unread")[-1]["total"] >= 1
    # The editor's own notification arrives after the viewer's was sent: nothing else came.
    own = await send(harness, "editor")
    await eventually(lambda: own in other.titles())
    assert other.titles() == [own]


async def test_the_pushed_notification_has_the_rest_shape(
    harness: Harness, connect: Connect
) -> None:
    tab = await connect("author")
    title = await send(harness, "author")
    await eventually(lambda: title in tab.titles())
    pushed = tab.received("notification")[-1]
    assert pushed["user_id"] == harness.users["author"].id and pushed["is_read"] is False
    assert set(pushed) >= {"id", "category_id", "message", "type", "view_count", "created_at"}
    assert set(pushed) >= {"last_viewed_at", "category"}


async def test_marking_read_in_one_connection_updates_the_others(
    harness: Harness, connect: Connect
) -> None:
    reader, watcher = await connect("viewer"), await connect("viewer")
    await send(harness, "viewer")
    await send(harness, "viewer")
    pending = [n for n in await caught_up(reader) if not n["is_read"]]
    assert len(pending) >= 2
    first = pending[0]["id"]
    answer = await reader.call("mark_read", {"ids": [first]})
    assert answer["ok"] and answer["read"] == [first], answer
    assert answer["unread"]["total"] == len(pending) - 1
    await eventually(lambda: {"ids": [first]} in watcher.received("read"))
    await eventually(lambda: watcher.received("unread")[-1] == answer["unread"])
    again = await reader.call("mark_read", {"ids": [first]})
    assert again["ok"] and again["read"] == []
    everything = await reader.call("mark_all_read")
    assert everything["ok"] and everything["count"] == len(pending) - 1
    assert everything["unread"]["total"] == 0
    await eventually(lambda: {"all": True} in watcher.received("read"))
    await eventually(lambda: watcher.received("unread")[-1]["total"] == 0)


async def test_no_one_marks_another_users_notifications(harness: Harness, connect: Connect) -> None:
    owner, intruder = await connect("author"), await connect("editor")
    await send(harness, "author")
    mine = [n["id"] for n in await caught_up(owner) if not n["is_read"]]
    answer = await intruder.call("mark_read", {"ids": mine})
    assert answer["ok"] and answer["read"] == []
    assert [n["id"] for n in await caught_up(owner) if not n["is_read"]] == mine
    theirs = await caught_up(intruder, after_id=min(mine) - 1)
    assert all(n["user_id"] == harness.users["editor"].id for n in theirs)


async def test_since_catches_up_in_id_order_with_no_loss_and_no_duplicates(
    harness: Harness, connect: Connect
) -> None:
    first = await connect("editor")
    cursor = max([n["id"] for n in await caught_up(first)], default=0)
    await first.sio.disconnect()
    missed = [await send(harness, "editor") for _ in range(7)]
    later = await connect("editor")
    # Small pages, and live pushes racing the catch-up: the union by id is exactly the missed.
    racing = asyncio.gather(*(send(harness, "editor") for _ in range(3)))
    pages = await caught_up(later, after_id=cursor, limit=3)
    raced = await racing
    ids = [n["id"] for n in pages]
    assert ids == sorted(ids) and len(ids) == len(set(ids))
    assert [n["title"] for n in pages][:7] == missed
    await eventually(lambda: set(raced) <= set(later.titles()) | {n["title"] for n in pages})
    seen = {n["id"]: n["title"] for n in pages} | {
        n["id"]: n["title"] for n in later.received("notification")
    }
    assert sorted(seen.values()) == sorted(missed + list(raced))


async def test_latest_gives_the_newest_first_for_a_first_paint(
    harness: Harness, connect: Connect
) -> None:
    listener = await connect("author")
    titles = [await send(harness, "author") for _ in range(4)]
    answer = await listener.call("latest", {"limit": 3})
    assert answer["ok"], answer
    assert [n["title"] for n in answer["notifications"]] == titles[:0:-1]
    assert answer["unread"]["total"] >= 4
    everything = await listener.call("latest")
    assert [n["title"] for n in everything["notifications"]][:4] == titles[::-1]


async def test_bad_payloads_get_error_acks_and_the_connection_goes_on(
    harness: Harness, connect: Connect
) -> None:
    bad: list[tuple[str, Any, str]] = [
        ("mark_read", None, "invalid_payload"),
        ("mark_read", {"ids": []}, "invalid_payload"),
        ("mark_read", {"ids": "1"}, "invalid_payload"),
        ("mark_read", {"ids": [True]}, "invalid_payload"),
        ("mark_read", {"ids": [0]}, "invalid_payload"),
        ("mark_read", {"ids": [1.5]}, "invalid_payload"),
        ("mark_read", {"ids": [2**40]}, "invalid_payload"),
        ("mark_read", {"ids": list(range(1, 600))}, "invalid_payload"),
        ("mark_read", [1, 2], "invalid_payload"),
        ("since", {}, "invalid_payload"),
        ("since", {"after_id": -1}, "invalid_payload"),
        ("since", {"after_id": "5"}, "invalid_payload"),
        ("since", {"after_id": 0, "limit": 0}, "invalid_payload"),
        ("since", {"after_id": 0, "limit": 10_000}, "invalid_payload"),
        ("since", "garbage", "invalid_payload"),
        ("since", b"\x00\xff", "invalid_payload"),
        ("unread", 42, "invalid_payload"),
        ("latest", {"limit": "all"}, "invalid_payload"),
        ("latest", {"limit": 201}, "invalid_payload"),
        ("mark_all_read", ["x"], "invalid_payload"),
        ("delete_everything", {}, "unknown_event"),
        ("connect", {}, "unknown_event"),
        ("disconnect", "client namespace disconnect", "unknown_event"),
    ]
    # A connection per few events keeps below the rate limit.
    for start in range(0, len(bad), EVENTS_PER_SECOND // 2):
        listener = await connect("viewer")
        for event, payload, code in bad[start : start + EVENTS_PER_SECOND // 2]:
            answer = await listener.call(event, payload)
            assert answer["ok"] is False, (event, payload, answer)
            assert answer["error"]["code"] == code and answer["error"]["message"], answer
        assert listener.sio.connected
    answer = await listener.call("unread")
    assert answer["ok"] and set(answer["unread"]) == {"total", "by_category"}


async def test_too_many_events_in_a_second_are_refused(harness: Harness, connect: Connect) -> None:
    listener = await connect("viewer")
    answers = await asyncio.gather(
        *(listener.call("unread") for _ in range(EVENTS_PER_SECOND * 2 + 5))
    )
    codes = {answer["error"]["code"] for answer in answers if not answer["ok"]}
    assert codes == {"rate_limited"}


async def test_an_ended_session_is_told_and_closed_at_once(
    harness: Harness, connect: Connect
) -> None:
    """A logout re-checks the user's connections at once (no event needed from them)."""
    token = await harness.login("viewer1")
    listener = await connect("viewer", token)
    assert (await listener.call("unread"))["ok"]
    response = await harness.call("POST", "/api/v1/auth/logout", token=token)
    assert response.status < 300
    await eventually(lambda: not listener.sio.connected)
    assert listener.received("session_ended")[0]["code"] == "session_ended"


async def test_an_idle_connection_of_an_ended_session_stops_receiving(
    harness: Harness, connect: Connect
) -> None:
    token = await harness.login("author1")
    idle, other = await connect("author", token), await connect("author")
    response = await harness.call("POST", "/api/v1/auth/logout", token=token)
    assert response.status < 300
    await namespace(harness).sweep()
    await eventually(lambda: not idle.sio.connected)
    assert idle.received("session_ended")[0]["code"] == "session_ended"
    title = await send(harness, "author")
    await eventually(lambda: title in other.titles())
    assert title not in idle.titles()


async def test_a_revoked_api_token_stops_being_served(harness: Harness, connect: Connect) -> None:
    body = {"name": "bell", "scopes": ["content.view"]}
    response = await harness.call("POST", "/api/v1/auth/tokens", role="editor", json=body)
    created = (await response.json())["data"]
    assert response.status == 201, created
    by_token, by_session = await connect("editor", created["token"]), await connect("editor")
    await namespace(harness).sweep()
    assert by_token.sio.connected and (await by_token.call("unread"))["ok"]
    path = f"/api/v1/auth/tokens/{created['id']}"
    assert (await harness.call("DELETE", path, role="editor")).status == 204
    await namespace(harness).sweep()
    await eventually(lambda: not by_token.sio.connected)
    assert by_session.sio.connected and not by_session.received("session_ended")


async def test_a_deactivated_user_stops_being_served(harness: Harness, connect: Connect) -> None:
    user = await harness.add_user("live-deactivated", "viewer")
    token = await harness.login("live-deactivated")
    listener = await connect("viewer", token)
    async with transaction(harness.app[keys.SESSIONS]) as db:
        await db.execute(sa.update(User).where(User.id == user.id).values(is_active=False))
    await namespace(harness).sweep()
    await eventually(lambda: not listener.sio.connected)
    assert [data["code"] for data in listener.received("session_ended")] == ["session_ended"]
