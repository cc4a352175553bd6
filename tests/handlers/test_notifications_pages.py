"""The notification widget's built files and its demo page are served; its sources are not."""

from __future__ import annotations

from tests.support.harness import Harness


async def test_the_widget_bundle_is_served_to_any_page(harness: Harness) -> None:
    for name in ("rcms-notifications.js", "notifications-demo.js"):
        response = await harness.call("GET", f"/static/widget/dist/{name}")
        assert response.status == 200
        assert response.content_type == "application/javascript"
        assert response.headers["Cache-Control"] == "no-cache"


async def test_the_demo_page_says_whether_the_visitor_is_signed_in(harness: Harness) -> None:
    signed_in = await harness.call("GET", "/static/notifications-demo.html", role="viewer")
    page = await signed_in.text()
    assert signed_in.status == 200 and 'data-signed-in="true"' in page
    assert "/static/widget/dist/rcms-notifications.js" in page
    assert "default-src 'self'" in signed_in.headers["Content-Security-Policy"]
    anonymous = await harness.call("GET", "/static/notifications-demo.html")
    assert 'data-signed-in="false"' in await anonymous.text()


async def test_the_widgets_sources_and_packages_are_not_served(harness: Harness) -> None:
    for path in (
        "/static/widget/src/index.js",
        "/static/widget/package.json",
        "/static/widget/dist/missing.js",
        "/static/widget/dist/..%2Fpackage.json",
        "/static/widget/node_modules/socket.io-client/package.json",
    ):
        assert (await harness.call("GET", path)).status == 404, path
