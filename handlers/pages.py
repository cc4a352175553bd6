"""Browser entry points: `/` is the web app (static/app.html), `/static/dist/*` its bundle;
`/static/widget/dist/*` the embeddable notification widget, `/static/notifications-demo.html`
its demo page.

The bundles are built from `static/src` (`make static`) and `static/widget/src` (`make widget`)
and committed, so serving never needs Node. Only built files are served: sources and
node_modules stay private.
"""

from __future__ import annotations

import re
from pathlib import Path

from aiohttp import web

from handlers.auth_context import principal_for

STATIC = Path(__file__).resolve().parent.parent / "static"
APP_PAGE = STATIC / "app.html"
DIST = STATIC / "dist"
WIDGET_DIST = STATIC / "widget" / "dist"
DEMO_PAGE = STATIC / "notifications-demo.html"
_ASSET = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*\.(?:js|css)$")
# The app loads only its own bundle; content is rendered through DOMPurify, and this policy
# is the second line: no inline or foreign script, no plugins, no framing, no <base> tricks.
# Styles may be inline (CodeMirror injects its theme); images may come from any https host.
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data: https:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
# Revalidate on every load (cheap with ETag / Last-Modified): a rebuilt bundle shows at once.
_HEADERS = {"Cache-Control": "no-cache", "Content-Security-Policy": CONTENT_SECURITY_POLICY}


async def index(request: web.Request) -> web.StreamResponse:
    """The single-page app; it signs in, lists content and opens the editor by itself.

    The page says whether this request carried a live session, so that a signed-out visitor
    sees the sign-in form without a refused (401) request first.
    """
    return await _page(request, APP_PAGE)


async def notifications_demo(request: web.Request) -> web.StreamResponse:
    """The notification widget for the signed-in user, and a form to send oneself one."""
    return await _page(request, DEMO_PAGE)


async def asset(request: web.Request) -> web.StreamResponse:
    """A file of the built bundle (`static/dist/`)."""
    return _built_file(DIST, request.match_info["name"])


async def widget_asset(request: web.Request) -> web.StreamResponse:
    """A file of the built notification widget (`static/widget/dist/`), embeddable anywhere."""
    return _built_file(WIDGET_DIST, request.match_info["name"])


async def _page(request: web.Request, page: Path) -> web.StreamResponse:
    signed_in = (await principal_for(request)).is_authenticated
    text = _with_sign_in_state(page, signed_in)
    return web.Response(text=text, content_type="text/html", headers=_HEADERS)


def _with_sign_in_state(page: Path, signed_in: bool) -> str:
    """The page (small, read per request so an edit shows at once) with `{signed_in}` filled."""
    return page.read_text(encoding="utf-8").replace("{signed_in}", "true" if signed_in else "false")


def _built_file(directory: Path, name: str) -> web.StreamResponse:
    path = directory / name
    if not _ASSET.match(name) or not path.is_file():
        raise web.HTTPNotFound()
    return web.FileResponse(path, headers=_HEADERS)


def setup(app: web.Application) -> None:
    app.router.add_get("/", index)
    app.router.add_get("/static/dist/{name}", asset)
    app.router.add_get("/static/widget/dist/{name}", widget_asset)
    app.router.add_get("/static/notifications-demo.html", notifications_demo)
