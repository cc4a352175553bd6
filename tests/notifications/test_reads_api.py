"""One's own notifications over REST: listing, cursor, views, read receipts, unread counts."""

from __future__ import annotations

import sqlalchemy as sa

from handlers import keys
from realtime_cms.db import transaction
from realtime_cms.models.notifications import NotificationCategory, ReadReceipt
from realtime_cms.notifications import reads
from realtime_cms.principal import Principal
from tests.notifications.support import body, count, new_user, send, unique
from tests.support.harness import Harness
from tests.support.live import eventually

NOTIFICATIONS = "/api/v1/notifications"


async def _category(harness: Harness) -> int:
    async with transaction(harness.app[keys.SESSIONS]) as db:
        category = NotificationCategory(name=unique("reads"), color_code="#123456")
        db.add(category)
    return category.id


async def _ids(harness: Harness, token: str, query: str = "") -> list[int]:
    response = await harness.call("GET", f"{NOTIFICATIONS}{query}", token=token)
    return [row["id"] for row in (await body(response, 200))["data"]]


async def test_the_list_shows_only_ones_own_newest_first(harness: Harness) -> None:
    user_id, token = await new_user(harness, "viewer")
    other_id, _ = await new_user(harness, "viewer")
    mine = [(await send(harness, [user_id])).deliveries[0][1]["id"] for _ in range(3)]
    await send(harness, [other_id])
    assert await _ids(harness, token) == mine[::-1]


async def test_filters_by_unread_category_and_type(harness: Harness) -> None:
    user_id, token = await new_user(harness, "viewer")
    category_id = await _category(harness)
    plain = (await send(harness, [user_id], type="build")).deliveries[0][1]["id"]
    filed = (await send(harness, [user_id], category_id=category_id)).deliveries[0][1]
    assert filed["category"] == {
        "id": category_id,
        "name": filed["category"]["name"],
        "color_code": "#123456",
    }
    await harness.call("POST", f"{NOTIFICATIONS}/read", token=token, json={"ids": [plain]})
    assert await _ids(harness, token, "?unread=true") == [filed["id"]]
    assert await _ids(harness, token, "?unread=false") == [plain]
    assert await _ids(harness, token, f"?filter[category_id]={category_id}") == [filed["id"]]
    assert await _ids(harness, token, "?filter[type]=build") == [plain]
    response = await harness.call("GET", f"{NOTIFICATIONS}?unread=maybe", token=token)
    assert (await body(response, 400))["code"] == "invalid_query"


async def test_after_id_is_a_cursor_in_id_order(harness: Harness) -> None:
    user_id, token = await new_user(harness, "viewer")
    ids = [(await send(harness, [user_id])).deliveries[0][1]["id"] for _ in range(4)]
    assert await _ids(harness, token, f"?after_id={ids[1]}") == ids[2:]
    assert await _ids(harness, token, f"?after_id={ids[0]}&limit=2") == ids[1:3]
    assert await _ids(harness, token, "?limit=2&offset=1") == ids[::-1][1:3]
    principal = Principal(user_id=user_id, username="me")
    async with transaction(harness.app[keys.SESSIONS]) as db:
        since = await reads.list_since(db, principal, after_id=ids[0], limit=10)
    assert [row["id"] for row in since] == ids[1:]


async def test_reading_one_counts_a_view_and_others_get_404(harness: Harness) -> None:
    user_id, token = await new_user(harness, "viewer")
    _, other = await new_user(harness, "viewer")
    nid = (await send(harness, [user_id])).deliveries[0][1]["id"]
    for expected in (1, 2):
        response = await harness.call("GET", f"{NOTIFICATIONS}/{nid}", token=token)
        data = (await body(response, 200))["data"]
        assert data["view_count"] == expected and data["last_viewed_at"] is not None
        assert data["is_read"] is False
    response = await harness.call("GET", f"{NOTIFICATIONS}/{nid}", token=other)
    assert (await body(response, 404))["code"] == "notification_not_found"


async def test_marking_read_writes_one_receipt_and_updates_counts(harness: Harness) -> None:
    user_id, token = await new_user(harness, "viewer")
    _, other = await new_user(harness, "viewer")
    category_id = await _category(harness)
    first = (await send(harness, [user_id], category_id=category_id)).deliveries[0][1]["id"]
    second = (await send(harness, [user_id])).deliveries[0][1]["id"]
    response = await harness.call("GET", f"{NOTIFICATIONS}/unread-counts", token=token)
    assert (await body(response, 200))["data"] == {
        "total": 2,
        "by_category": {str(category_id): 1, "none": 1},
    }
    response = await harness.call(
        "POST", f"{NOTIFICATIONS}/read", token=other, json={"ids": [first]}
    )
    assert (await body(response, 200))["data"]["read"] == []
    for _ in range(2):
        response = await harness.call(
            "POST", f"{NOTIFICATIONS}/read", token=token, json={"ids": [first]}
        )
    data = (await body(response, 200))["data"]
    assert data["read"] == [] and data["unread"] == {"total": 1, "by_category": {"none": 1}}
    receipts = sa.select(ReadReceipt).where(ReadReceipt.notification_id == first)
    assert await count(harness, receipts) == 1
    response = await harness.call("POST", f"{NOTIFICATIONS}/read-all", token=token)
    data = (await body(response, 200))["data"]
    assert data == {"count": 1, "unread": {"total": 0, "by_category": {}}}
    assert (
        await count(harness, sa.select(ReadReceipt).where(ReadReceipt.notification_id == second))
        == 1
    )


async def test_read_state_is_pushed_after_commit(harness: Harness) -> None:
    user_id, token = await new_user(harness, "viewer")
    pushed: list[tuple[str, object]] = []
    hub = harness.app[keys.NOTIFIER].hub
    assert hub is not None
    original_read, original_counts = hub.read, hub.counts

    async def read(uid: int, ids: list[int] | None) -> None:
        if uid == user_id:
            pushed.append(("read", ids))

    async def counts(uid: int, unread: dict[str, object]) -> None:
        if uid == user_id:
            pushed.append(("unread", unread))

    hub.read, hub.counts = read, counts  # type: ignore[method-assign,assignment]
    try:
        nid = (await send(harness, [user_id])).deliveries[0][1]["id"]
        # The new notification's own count push runs after its commit, on its own time:
        # once it is in, only the reads' pushes follow.
        await eventually(lambda: ("unread", {"total": 1, "by_category": {"none": 1}}) in pushed)
        pushed.clear()
        await harness.call("POST", f"{NOTIFICATIONS}/read", token=token, json={"ids": [nid]})
        await harness.call("POST", f"{NOTIFICATIONS}/read-all", token=token)
    finally:
        hub.read, hub.counts = original_read, original_counts  # type: ignore[method-assign]
    assert pushed == [
        ("read", [nid]),
        ("unread", {"total": 0, "by_category": {}}),
        ("read", None),
        ("unread", {"total": 0, "by_category": {}}),
    ]


async def test_bad_read_bodies_are_refused(harness: Harness) -> None:
    _, token = await new_user(harness, "viewer")
    payloads: list[dict[str, object]] = [{"ids": []}, {"ids": [0]}, {"ids": "1"}, {}]
    for payload in payloads:
        response = await harness.call("POST", f"{NOTIFICATIONS}/read", token=token, json=payload)
        await body(response, 422)
