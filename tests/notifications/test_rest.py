"""The REST surface: who may call what, and the send endpoint for integrations."""

from __future__ import annotations

import pytest

from tests.notifications.support import body, new_user, notifications_of
from tests.support.harness import Harness

MANAGED = [
    ("GET", "/api/v1/notification-templates"),
    ("POST", "/api/v1/notification-templates"),
    ("GET", "/api/v1/notification-templates/1"),
    ("PATCH", "/api/v1/notification-templates/1"),
    ("DELETE", "/api/v1/notification-templates/1"),
    ("GET", "/api/v1/notification-categories"),
    ("POST", "/api/v1/notification-categories"),
    ("DELETE", "/api/v1/notification-categories/1"),
    ("POST", "/api/v1/notifications/send"),
    ("GET", "/api/v1/worker-notifications"),
]
OWN = [
    ("GET", "/api/v1/notifications"),
    ("GET", "/api/v1/notifications/unread-counts"),
    ("POST", "/api/v1/notifications/read-all"),
    ("GET", "/api/v1/notification-preferences"),
]


@pytest.mark.parametrize("role", ["editor", "author", "viewer"])
async def test_only_admins_manage_and_send(harness: Harness, role: str) -> None:
    for method, path in MANAGED:
        response = await harness.call(
            method, path, role=role, json={} if method in ("POST", "PATCH") else None
        )
        assert (await body(response, 403))["code"] == "permission_denied", (method, path)


async def test_every_account_reads_its_own_and_anonymous_callers_none(harness: Harness) -> None:
    _, token = await new_user(harness)
    for method, path in OWN:
        await body(await harness.call(method, path, token=token), 200)
        assert (await body(await harness.call(method, path), 401))["code"] == "unauthorized"


async def test_send_takes_usernames_and_ids(harness: Harness) -> None:
    user_id, _ = await new_user(harness, "viewer")
    response = await harness.call(
        "POST",
        "/api/v1/notifications/send",
        role="admin",
        json={"title": "Hi", "message": "there", "usernames": ["viewer1"], "user_ids": [user_id]},
    )
    assert (await body(response, 200))["data"]["stored"] == 2
    assert [row.title for row in await notifications_of(harness, user_id)] == ["Hi"]


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (
            {"title": "t", "message": "m", "usernames": ["nobody-by-this-name"]},
            "unknown_recipients",
        ),
        ({"title": "t", "message": "m"}, "no_recipients"),
        ({"usernames": ["viewer1"]}, "notification_text_required"),
        ({"template": "no such template", "usernames": ["viewer1"]}, "template_not_found"),
        (
            {"title": "t", "message": "m", "usernames": ["viewer1"], "category_id": 2_000_000},
            "category_not_found",
        ),
    ],
)
async def test_send_refuses_what_it_cannot_deliver(
    harness: Harness, payload: dict[str, object], code: str
) -> None:
    response = await harness.call("POST", "/api/v1/notifications/send", role="admin", json=payload)
    assert response.status in (404, 422)
    assert (await body(response, response.status))["code"] == code
