"""Sweeps over every registered REST route: authentication, authorization and bad input.

The routes come from the live application, so endpoints added later are covered without
touching this file.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from aiohttp import web

from handlers import keys
from handlers.api import API_KEY, Endpoint
from realtime_cms.rbac.catalog import DEFAULT_ROLES
from tests.support.harness import Harness

PROBLEM = "application/problem+json"
_PARAM = re.compile(r"\{[^}]+\}")
VIEWER_PERMISSIONS = DEFAULT_ROLES["viewer"][1]


def endpoints(harness: Harness) -> list[Endpoint]:
    return list(harness.app[API_KEY].endpoints)


def _empty(endpoint: Endpoint) -> dict[str, Any] | None:
    return {} if endpoint.body is not None else None


def takes_body(endpoint: Endpoint) -> bool:
    """A JSON body model, or a raw body the handler reads itself (e.g. octet-stream)."""
    return endpoint.body is not None or endpoint.raw_body


def concrete(path: str, value: str = "1") -> str:
    return _PARAM.sub(value, path)


async def assert_problem(response: Any, *statuses: int) -> dict[str, Any]:
    body = await response.json(content_type=None)
    assert response.status in statuses, (response.method, response.url, response.status, body)
    assert response.content_type == PROBLEM, (response.url, response.content_type)
    assert body["status"] == response.status and body["code"] and body["title"], body
    return dict(body)


async def test_the_api_has_enough_routes_for_the_sweeps_to_mean_something(harness: Harness) -> None:
    eps = endpoints(harness)
    assert len(eps) >= 30
    assert sum(1 for e in eps if e.permission and e.permission not in VIEWER_PERMISSIONS) >= 15


async def test_anonymous_requests_to_protected_routes_get_401(harness: Harness) -> None:
    for endpoint in endpoints(harness):
        if endpoint.public:
            continue
        response = await harness.call(
            endpoint.method, concrete(endpoint.path), json=_empty(endpoint)
        )
        body = await assert_problem(response, 401)
        assert body["code"] == "unauthorized"


async def test_a_viewer_gets_403_on_every_route_needing_a_permission_it_lacks(
    harness: Harness,
) -> None:
    checked = 0
    for endpoint in endpoints(harness):
        if endpoint.public or not endpoint.permission or endpoint.permission in VIEWER_PERMISSIONS:
            continue
        response = await harness.call(
            endpoint.method, concrete(endpoint.path), role="viewer", json=_empty(endpoint)
        )
        body = await assert_problem(response, 403)
        assert body["code"] == "permission_denied", (endpoint.path, body)
        checked += 1
    assert checked >= 15


async def test_every_request_body_model_rejects_unknown_fields(harness: Harness) -> None:
    for endpoint in endpoints(harness):
        if endpoint.body is not None:
            assert endpoint.body.model_config.get("extra") == "forbid", endpoint.body.__name__


def _bad_bodies(max_bytes: int) -> list[tuple[str, bytes, str, tuple[int, ...]]]:
    return [
        ("malformed json", b'{"unterminated": ', "application/json", (400,)),
        ("not utf-8", b"\xff\xfe{}", "application/json", (400,)),
        ("array instead of object", b"[1, 2]", "application/json", (422,)),
        ("unknown field", b'{"surely_not_a_field": true}', "application/json", (422,)),
        (
            "wrong types",
            b'{"name": 5, "login": [], "password": {}, "email": 1, "token": 2}',
            "application/json",
            (422,),
        ),
        ("deeply nested", b"[" * 5000 + b"]" * 5000, "application/json", (400, 422)),
        ("form encoded", b"a=1", "application/x-www-form-urlencoded", (415,)),
        ("oversized", b'{"x": "' + b"a" * (max_bytes + 10) + b'"}', "application/json", (413,)),
    ]


@pytest.mark.parametrize("role", ["admin", None])
async def test_bad_bodies_get_a_problem_4xx_on_every_route_that_takes_a_body(
    harness: Harness, role: str | None
) -> None:
    max_bytes = harness.app[keys.SETTINGS].max_body_bytes
    for endpoint in endpoints(harness):
        if endpoint.body is None or (role is None and not endpoint.public):
            continue
        for label, raw, content_type, statuses in _bad_bodies(max_bytes):
            response = await harness.call(
                endpoint.method,
                concrete(endpoint.path),
                role=role,
                data=raw,
                headers={"Content-Type": content_type},
            )
            body = await assert_problem(response, *statuses)
            assert body["status"] < 500, (label, endpoint.path)


async def test_a_body_sent_to_a_route_that_takes_none_is_refused(harness: Harness) -> None:
    for endpoint in endpoints(harness):
        if takes_body(endpoint) or endpoint.method == "GET":
            continue
        response = await harness.call(
            endpoint.method,
            concrete(endpoint.path, "999999"),
            role="admin",
            data=b'{"x": 1}',
            headers={"Content-Type": "application/json"},
        )
        await assert_problem(response, 400)


async def test_routes_taking_raw_bytes_refuse_json(harness: Harness) -> None:
    raw = [endpoint for endpoint in endpoints(harness) if endpoint.raw_body]
    for endpoint in raw:
        response = await harness.call(
            endpoint.method, concrete(endpoint.path), role="admin", json={"x": 1}
        )
        await assert_problem(response, 415)
    assert raw


async def test_list_routes_refuse_unknown_filters_operators_sorts_and_bad_pagination(
    harness: Harness,
) -> None:
    bad_queries = [
        "filter[surely_not_a_field]=1",
        "filter[id][like]=1",
        "sort=surely_not_a_field",
        "limit=0",
        "limit=abc",
        "limit=100000",
        "offset=-1",
        "unknown_param=1",
        "limit=1&limit=2",
    ]
    listed = 0
    for endpoint in endpoints(harness):
        if endpoint.listing is None or "{" in endpoint.path:
            continue
        listed += 1
        for query in bad_queries:
            response = await harness.call("GET", f"{endpoint.path}?{query}", role="admin")
            await assert_problem(response, 400)
    assert listed >= 4


async def test_huge_path_ids_are_not_found_not_a_crash(harness: Harness) -> None:
    for endpoint in endpoints(harness):
        if "{" not in endpoint.path or takes_body(endpoint):
            continue
        response = await harness.call(
            endpoint.method, concrete(endpoint.path, "9" * 30), role="admin"
        )
        await assert_problem(response, 404)


async def test_unknown_paths_and_methods_are_problems(harness: Harness) -> None:
    await assert_problem(await harness.call("GET", "/api/v1/surely-not-here", role="admin"), 404)
    await assert_problem(await harness.call("PUT", "/api/v1/openapi.json", role="admin"), 405)


def _routes_of(app: web.Application) -> set[str]:
    return {r.resource.canonical for r in app.router.routes() if r.resource is not None}


async def test_every_documented_path_is_routed(harness: Harness) -> None:
    document = await (await harness.call("GET", "/api/v1/openapi.json")).json()
    routed = {re.sub(r"\{([^}:]+)(:[^}]*)?\}", r"{\1}", path) for path in _routes_of(harness.app)}
    assert set(document["paths"]) <= routed
