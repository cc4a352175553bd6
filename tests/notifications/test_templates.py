"""Templates: checked on save, enforced on send, sandboxed; a failed rendering stores nothing."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import sqlalchemy as sa

from realtime_cms.errors import Unprocessable
from realtime_cms.models.auth import User
from realtime_cms.models.notifications import Notification, NotificationTemplate
from realtime_cms.notifications import templates
from tests.notifications.support import body, count, new_user, notifications_of, unique
from tests.support.harness import Harness

TEMPLATES = "/api/v1/notification-templates"
SEND = "/api/v1/notifications/send"
NESTED_LOOPS = "{% for a in range(1000) %}{% for b in range(1000) %}{% endfor %}{% endfor %}"


def template(**values: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": unique("template"),
        "subject_template": "Hello {{ recipient.username }}",
        "body_template": "{{ what }} happened",
        "variables": ["what"],
        "channels": ["in_app"],
    }
    data.update(values)
    return data


async def create(harness: Harness, **values: Any) -> dict[str, Any]:
    response = await harness.call("POST", TEMPLATES, role="admin", json=template(**values))
    return dict((await body(response, 201))["data"])


async def refused(harness: Harness, status: int = 422, **values: Any) -> dict[str, Any]:
    response = await harness.call("POST", TEMPLATES, role="admin", json=template(**values))
    return dict(await body(response, status))


async def test_a_template_is_stored_and_read_back(harness: Harness) -> None:
    created = await create(harness, description="greets")
    response = await harness.call("GET", f"{TEMPLATES}/{created['id']}", role="admin")
    read = (await body(response, 200))["data"]
    assert read == created
    assert read["variables"] == ["what"] and read["channels"] == ["in_app"]


async def test_bad_syntax_is_refused_on_save_with_the_line(harness: Harness) -> None:
    problem = await refused(harness, body_template="line one\n{% if what %}never closed")
    assert problem["code"] == "template_syntax"
    assert problem["errors"][0]["loc"] == ["body", "body_template"]
    assert problem["errors"][0]["line"] == 2
    assert problem["errors"][0]["message"].startswith("line 2:")


async def test_an_undeclared_variable_is_refused_on_save(harness: Harness) -> None:
    problem = await refused(harness, subject_template="{{ who }} did {{ what }}")
    assert problem["code"] == "template_undeclared_variables"
    assert "who" in problem["errors"][0]["message"]


async def test_reading_internals_is_refused_on_save(harness: Harness) -> None:
    for source in ("{{ ''.__class__.__mro__ }}", "{{ what['__globals__'] }}"):
        problem = await refused(harness, body_template=source)
        assert problem["code"] == "template_unsafe", source


async def test_declaring_recipient_or_a_non_identifier_is_refused(harness: Harness) -> None:
    for variables in (["recipient"], ["not-a-name"], ["what", "what"]):
        problem = await refused(harness, variables=variables)
        assert problem["code"] == "validation_failed", variables


async def test_a_change_is_checked_against_the_whole_template(harness: Harness) -> None:
    created = await create(harness)
    response = await harness.call(
        "PATCH", f"{TEMPLATES}/{created['id']}", role="admin", json={"variables": []}
    )
    assert (await body(response, 422))["code"] == "template_undeclared_variables"
    response = await harness.call(
        "PATCH",
        f"{TEMPLATES}/{created['id']}",
        role="admin",
        json={"body_template": "done", "variables": []},
    )
    assert (await body(response, 200))["data"]["variables"] == []


async def test_names_are_unique_and_deleting_works(harness: Harness) -> None:
    created = await create(harness)
    assert (await refused(harness, 409, name=created["name"]))["code"] == "template_exists"
    response = await harness.call("DELETE", f"{TEMPLATES}/{created['id']}", role="admin")
    assert response.status == 204
    response = await harness.call("GET", f"{TEMPLATES}/{created['id']}", role="admin")
    assert (await body(response, 404))["code"] == "template_not_found"


async def _send(harness: Harness, **payload: Any) -> Any:
    return await harness.call("POST", SEND, role="admin", json=payload)


async def test_sending_renders_per_recipient(harness: Harness) -> None:
    created = await create(harness)
    user_id, _ = await new_user(harness, "viewer")
    response = await _send(
        harness, template=created["name"], context={"what": "a release"}, user_ids=[user_id]
    )
    assert (await body(response, 200))["data"] == {
        "recipients": 1,
        "stored": 1,
        "queued": 0,
        "emails": 0,
    }
    [row] = await notifications_of(harness, user_id)
    assert row.title.startswith("Hello user_") and row.message == "a release happened"


async def test_missing_and_extra_variables_are_named_and_nothing_is_stored(
    harness: Harness,
) -> None:
    created = await create(
        harness, variables=["what", "when"], body_template="{{ what }}{{ when }}"
    )
    user_id, _ = await new_user(harness, "viewer")
    missing = await body(
        await _send(harness, template=created["id"], context={"what": 1}, user_ids=[user_id]), 422
    )
    assert missing["code"] == "template_missing_variables"
    assert "when" in missing["errors"][0]["message"]
    extra = await body(
        await _send(
            harness,
            template=created["id"],
            context={"what": 1, "when": 2, "why": 3},
            user_ids=[user_id],
        ),
        422,
    )
    assert extra["code"] == "template_extra_variables" and "why" in extra["errors"][0]["message"]
    assert await notifications_of(harness, user_id) == []


async def test_a_sandbox_escape_at_send_time_is_refused_and_stores_nothing(
    harness: Harness,
) -> None:
    created = await create(harness, variables=["obj", "key"], body_template="{{ obj[key] }}")
    user_id, _ = await new_user(harness, "viewer")
    problem = await body(
        await _send(
            harness,
            template=created["id"],
            context={"obj": {"a": 1}, "key": "__class__"},
            user_ids=[user_id],
        ),
        422,
    )
    assert problem["code"] == "template_unsafe"
    assert await notifications_of(harness, user_id) == []


async def test_one_recipient_failing_stores_nothing_for_the_others(harness: Harness) -> None:
    first_id, _ = await new_user(harness, "viewer")
    second_id, _ = await new_user(harness, "viewer")
    first_name = await harness.scalar(sa.select(User.username).where(User.id == first_id))
    created = await create(
        harness, variables=["names"], body_template="{{ names[recipient.username] }}"
    )
    problem = await body(
        await _send(
            harness,
            template=created["id"],
            context={"names": {first_name: "only the first has a name"}},
            user_ids=[first_id, second_id],
        ),
        422,
    )
    assert problem["code"] == "template_render_failed"
    stored = sa.select(Notification).where(Notification.user_id.in_([first_id, second_id]))
    assert await count(harness, stored) == 0


@pytest.mark.parametrize(
    ("source", "code"),
    [
        ("{{ 9 ** 999999 }}", "template_unsafe"),
        ("{{ 'x' * 100000000 }}", "template_unsafe"),
        ("{% for i in range(100000) %}{% endfor %}", "template_unsafe"),
        ("{{ missing.attribute }}", "template_render_failed"),
        ("{{ 1 // 0 }}", "template_render_failed"),
        (NESTED_LOOPS, "template_too_costly"),
        (
            "{% macro twice(n) %}{% if n %}{{ twice(n - 1) }}{{ twice(n - 1) }}{% endif %}"
            "{% endmacro %}{{ twice(20) }}",
            "template_too_costly",
        ),
        ("{{ 'a' | center(100000000) }}", "template_unsafe"),
        ("{{ '%*s' % (100000000, 'a') }}", "template_unsafe"),
        ("{{ '{:>100000000}'.format('a') }}", "template_unsafe"),
        ("{{ ('x' * 1000) | replace('x', 'y' * 2000) }}", "template_unsafe"),
        (
            "{% set ns = namespace(s='ab') %}"
            "{% for i in range(25) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
            "template_unsafe",
        ),
        (
            "{% set ns = namespace(n=10) %}"
            "{% for i in range(20) %}{% set ns.n = ns.n * ns.n %}{% endfor %}",
            "template_unsafe",
        ),
        ("{{ lipsum(100) }}", "template_render_failed"),
    ],
)
async def test_renderings_that_would_hurt_or_fail_are_refused(source: str, code: str) -> None:
    stored = NotificationTemplate(
        name="t", type="info", subject_template="s", body_template=source, variables=[], channels=[]
    )
    with pytest.raises(Unprocessable) as raised:
        await templates.render_all(stored, {"missing": {}}, [{"id": 1, "username": "u"}])
    assert raised.value.code == code


async def test_a_template_of_nested_loops_is_refused_on_save(harness: Harness) -> None:
    problem = await refused(harness, body_template=NESTED_LOOPS)
    assert problem["code"] == "template_too_costly"
    assert problem["errors"][0]["loc"] == ["body", "body_template"]
    created = await create(harness)
    response = await harness.call(
        "PATCH",
        f"{TEMPLATES}/{created['id']}",
        role="admin",
        json={"subject_template": NESTED_LOOPS},
    )
    problem = dict(await body(response, 422))
    assert problem["code"] == "template_too_costly"
    assert problem["errors"][0]["loc"] == ["body", "subject_template"]


async def test_a_template_the_sandbox_refuses_on_sample_values_is_refused_on_save(
    harness: Harness,
) -> None:
    problem = await refused(harness, subject_template="{{ what }}{{ 'x' * 100000000 }}")
    assert problem["code"] == "template_unsafe"
    assert problem["errors"][0]["loc"] == ["body", "subject_template"]


async def test_a_recursive_loop_is_refused_on_save(harness: Harness) -> None:
    problem = await refused(
        harness, body_template="{% for x in what recursive %}{{ loop(what) }}{% endfor %}"
    )
    assert problem["code"] == "template_syntax"


async def test_a_costly_send_fails_alone_while_the_server_keeps_answering(
    harness: Harness,
) -> None:
    # Cheap on the sample values tried on save, costly on the real ones: each step sorts `big`.
    created = await create(
        harness,
        variables=["items", "big"],
        body_template="{% for i in items %}{{ big | sort | first }}{% endfor %}",
    )
    user_id, _ = await new_user(harness, "viewer")
    context = {"items": list(range(400)), "big": [f"{n * 7919 % 50_000:05}" for n in range(50_000)]}
    started = time.monotonic()
    sending = asyncio.create_task(
        _send(harness, template=created["id"], context=context, user_ids=[user_id])
    )
    latencies: list[float] = []
    while not sending.done():
        asked = time.monotonic()
        assert (await harness.call("GET", "/api/v1/auth/me", role="viewer")).status == 200
        latencies.append(time.monotonic() - asked)
    took = time.monotonic() - started
    assert (await body(await sending, 422))["code"] == "template_too_costly"
    # Relative, not absolute: on today's code one request waits out most of the rendering.
    assert len(latencies) >= 3 and max(latencies) < took / 3, (latencies, took)
    assert await notifications_of(harness, user_id) == []
