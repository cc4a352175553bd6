"""Browser entry points: `/` is the web app (static/app.html), `/static/dist/*` its bundle.

The bundle is built from `static/src` with `make static` and committed, so serving the app
never needs Node. Only the built files are served: sources and node_modules stay private.
"""

from __future__ import annotations

import re
from pathlib import Path

from aiohttp import web

from handlers.auth_context import principal_for

STATIC = Path(__file__).resolve().parent.parent / "static"
APP_PAGE = STATIC / "app.html"
DIST = STATIC / "dist"
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
    signed_in = (await principal_for(request)).is_authenticated
    page = APP_PAGE.read_text(encoding="utf-8").replace(
        "{signed_in}", "true" if signed_in else "false"
    )
    return web.Response(text=page, content_type="text/html", headers=_HEADERS)


async def asset(request: web.Request) -> web.StreamResponse:
    """A file of the built bundle (`static/dist/`)."""
    name = request.match_info["name"]
    path = DIST / name
    if not _ASSET.match(name) or not path.is_file():
        raise web.HTTPNotFound()
    return web.FileResponse(path, headers=_HEADERS)


def setup(app: web.Application) -> None:
    app.router.add_get("/", index)
    app.router.add_get("/static/dist/{name}", asset)
