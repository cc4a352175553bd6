"""Request ids, security headers, problem+json errors, and the CSRF guard on cookie sessions."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from handlers import keys
from handlers.auth_context import SESSION_COOKIE
from handlers.middlewares import (
    PROBLEM_TYPE,
    error_middleware,
    request_id_middleware,
    security_headers_middleware,
)
from tests.support.harness import PASSWORD, Harness

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}
EVIL = "http://evil.example"


def unique() -> str:
    return uuid.uuid4().hex[:12]


def new_site() -> dict[str, str]:
    token = unique()
    return {"name": f"CSRF {token}", "domain": f"{token}.example.com"}


async def problem_of(response: Any, status: int) -> dict[str, Any]:
    body: dict[str, Any] = await response.json(content_type=None)
    assert response.status == status, body
    assert response.content_type == PROBLEM_TYPE
    return body


# Problem documents


async def test_an_error_is_a_complete_problem_document(harness: Harness) -> None:
    response = await harness.call("GET", "/api/v1/sites/99999999", role="admin")
    body = await problem_of(response, 404)
    assert body == {
        "type": "/problems/not_found",
        "title": "Not found",
        "status": 404,
        "detail": body["detail"],
        "instance": "/api/v1/sites/99999999",
        "code": "not_found",
        "request_id": response.headers["X-Request-ID"],
    }
    assert body["detail"]


async def test_an_unrouted_path_is_a_problem_document(harness: Harness) -> None:
    body = await problem_of(await harness.call("GET", "/surely/not/here"), 404)
    assert (body["code"], body["instance"]) == ("not_found", "/surely/not/here")


async def test_a_wrong_method_is_a_problem_document_with_allow(harness: Harness) -> None:
    response = await harness.call("DELETE", "/healthz")
    assert (await problem_of(response, 405))["code"] == "method_not_allowed"
    assert "GET" in response.headers["Allow"]


async def test_validation_errors_list_each_failure(harness: Harness) -> None:
    response = await harness.call("POST", "/api/v1/sites", role="admin", json={"name": 5})
    body = await problem_of(response, 422)
    assert body["code"] == "validation_failed"
    failed = {tuple(error["loc"]) for error in body["errors"]}
    assert {("body", "name"), ("body", "domain")} <= failed
    assert all(error["message"] and error["type"] for error in body["errors"])


async def test_an_unauthenticated_request_is_told_how_to_authenticate(harness: Harness) -> None:
    response = await harness.call("GET", "/api/v1/sites")
    assert (await problem_of(response, 401))["code"] == "unauthorized"
    assert response.headers["WWW-Authenticate"] == "Bearer"


@pytest.fixture
async def failing_client() -> AsyncIterator[TestClient[web.Request, web.Application]]:
    """An app with the project's middlewares and one route that crashes."""

    async def crash(request: web.Request) -> web.Response:
        raise RuntimeError("secret internals")

    app = web.Application(
        middlewares=[request_id_middleware, security_headers_middleware, error_middleware]
    )
    app.router.add_get("/crash", crash)
    client: TestClient[web.Request, web.Application] = TestClient(TestServer(app))
    await client.start_server()
    yield client
    await client.close()


async def test_an_unexpected_failure_is_a_500_problem_that_hides_the_cause(
    failing_client: TestClient[web.Request, web.Application],
) -> None:
    response = await failing_client.get("/crash", headers={"X-Request-ID": "crash-request-1"})
    body = await problem_of(response, 500)
    assert (body["code"], body["request_id"]) == ("internal_error", "crash-request-1")
    assert "secret internals" not in await response.text()
    assert response.headers["X-Content-Type-Options"] == "nosniff"


# Request ids


@pytest.mark.parametrize("request_id", ["abcdefgh", "Req.42_x-Y", "a" * 64])
async def test_a_well_formed_request_id_is_echoed(harness: Harness, request_id: str) -> None:
    response = await harness.call("GET", "/healthz", headers={"X-Request-ID": request_id})
    assert response.headers["X-Request-ID"] == request_id


async def test_a_well_formed_request_id_goes_into_the_problem_document(harness: Harness) -> None:
    response = await harness.call("GET", "/api/v1/sites", headers={"X-Request-ID": "trace-me-123"})
    assert (await problem_of(response, 401))["request_id"] == "trace-me-123"


@pytest.mark.parametrize(
    "request_id", ["short", "a" * 65, "has space1", "semi;colon", "slash/ed/id", "ünïcödé-id"]
)
async def test_a_malformed_request_id_is_replaced(harness: Harness, request_id: str) -> None:
    response = await harness.call("GET", "/healthz", headers={"X-Request-ID": request_id})
    replaced = response.headers["X-Request-ID"]
    assert replaced != request_id and len(replaced) == 32 and int(replaced, 16) >= 0


async def test_without_a_request_id_each_response_gets_a_fresh_one(harness: Harness) -> None:
    first = (await harness.call("GET", "/healthz")).headers["X-Request-ID"]
    second = (await harness.call("GET", "/healthz")).headers["X-Request-ID"]
    assert first != second and len(first) == len(second) == 32


# Security headers


@pytest.mark.parametrize(
    ("method", "path", "role"),
    [
        ("GET", "/healthz", None),
        ("GET", "/api/v1/sites", "viewer"),
        ("GET", "/api/v1/sites", None),
        ("GET", "/api/v1/docs", None),
        ("GET", "/api/v1/openapi.json", None),
        ("GET", "/surely/not/here", None),
    ],
)
async def test_every_response_carries_the_security_headers(
    harness: Harness, method: str, path: str, role: str | None
) -> None:
    response = await harness.call(method, path, role=role)
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get(name) == value, (path, name)


# CSRF


@pytest.fixture(scope="module")
async def session_cookie(harness: Harness) -> str:
    """A cookie session of a fresh admin, signed in through the API like a browser."""
    name = f"csrf{unique()}"
    await harness.add_user(name, "admin")
    response = await harness.client.post(
        "/api/v1/auth/login", json={"login": name, "password": PASSWORD}
    )
    assert response.status == 200
    cookie = response.cookies[SESSION_COOKIE]
    assert cookie["httponly"] and cookie["samesite"] == "Lax"
    return f"{SESSION_COOKIE}={cookie.value}"


async def post_site(harness: Harness, headers: dict[str, str], **kwargs: Any) -> Any:
    return await harness.call("POST", "/api/v1/sites", json=new_site(), headers=headers, **kwargs)


async def test_a_cookie_write_from_a_foreign_origin_is_rejected(
    harness: Harness, session_cookie: str
) -> None:
    response = await post_site(harness, {"Cookie": session_cookie, "Origin": EVIL})
    assert (await problem_of(response, 403))["code"] == "csrf_rejected"


async def test_a_rejected_cookie_write_changes_nothing(
    harness: Harness, session_cookie: str
) -> None:
    site = new_site()
    response = await harness.call(
        "POST", "/api/v1/sites", json=site, headers={"Cookie": session_cookie, "Origin": EVIL}
    )
    assert response.status == 403
    listed = await harness.call(
        "GET", "/api/v1/sites", role="admin", params={"filter[name]": site["name"]}
    )
    assert (await listed.json())["meta"]["total"] == 0


async def test_a_cookie_write_from_an_allowed_origin_succeeds(
    harness: Harness, session_cookie: str
) -> None:
    origin = harness.app[keys.SETTINGS].allowed_origins[0]
    response = await post_site(harness, {"Cookie": session_cookie, "Origin": origin})
    assert response.status == 201, await response.text()


async def test_a_cookie_write_from_the_servers_own_origin_succeeds(
    harness: Harness, session_cookie: str
) -> None:
    own = f"http://{harness.client.host}:{harness.client.port}"
    response = await post_site(harness, {"Cookie": session_cookie, "Origin": own})
    assert response.status == 201, await response.text()


async def test_a_cookie_write_without_origin_from_a_cross_site_fetch_is_rejected(
    harness: Harness, session_cookie: str
) -> None:
    response = await post_site(harness, {"Cookie": session_cookie, "Sec-Fetch-Site": "cross-site"})
    assert (await problem_of(response, 403))["code"] == "csrf_rejected"


async def test_a_cookie_write_without_any_origin_hint_succeeds(
    harness: Harness, session_cookie: str
) -> None:
    response = await post_site(harness, {"Cookie": session_cookie})
    assert response.status == 201, await response.text()


async def test_a_cookie_read_from_a_foreign_origin_is_allowed(
    harness: Harness, session_cookie: str
) -> None:
    response = await harness.call(
        "GET", "/api/v1/sites", headers={"Cookie": session_cookie, "Origin": EVIL}
    )
    assert response.status == 200


async def test_a_bearer_write_from_a_foreign_origin_is_not_subject_to_csrf(
    harness: Harness,
) -> None:
    response = await post_site(harness, {"Origin": EVIL}, role="admin")
    assert response.status == 201, await response.text()


async def test_a_foreign_origin_with_an_invalid_cookie_is_unauthorized_not_csrf(
    harness: Harness,
) -> None:
    response = await post_site(harness, {"Cookie": f"{SESSION_COOKIE}=rcs_forged", "Origin": EVIL})
    assert (await problem_of(response, 401))["code"] == "unauthorized"
