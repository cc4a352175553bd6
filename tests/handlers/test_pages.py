"""`/` serves the web app, `/static/dist/` its committed bundle and nothing else of static/."""

from __future__ import annotations

import pytest

from tests.support.harness import Harness


async def test_the_app_page_says_whether_the_visitor_is_signed_in(harness: Harness) -> None:
    anonymous = await harness.call("GET", "/")
    assert anonymous.status == 200 and anonymous.content_type == "text/html"
    assert 'data-signed-in="false"' in await anonymous.text()
    signed_in = await harness.call("GET", "/", role="viewer")
    page = await signed_in.text()
    assert 'data-signed-in="true"' in page and "/static/dist/main.js" in page


async def test_the_app_page_and_bundle_carry_a_script_policy(harness: Harness) -> None:
    for path in ("/", "/static/dist/main.js", "/static/dist/app.css"):
        response = await harness.call("GET", path)
        assert response.status == 200, path
        assert "script-src 'self'" in response.headers["Content-Security-Policy"]
        assert response.headers["Cache-Control"] == "no-cache"


@pytest.mark.parametrize(
    "path",
    [
        "/static/dist/missing.js",
        "/static/dist/main.js.map",
        "/static/dist/..%2Fpackage.json",
        "/static/src/main.js",
        "/static/package.json",
    ],
)
async def test_only_built_files_are_served(harness: Harness, path: str) -> None:
    response = await harness.call("GET", path)
    assert response.status == 404
