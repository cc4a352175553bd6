"""Browser entry points: `/` is the web app (static/app.html), `/static/dist/*` its bundle;
`/static/widget/dist/*` the embeddable notification widget, `/static/notifications-demo.html`
its demo page.

The bundles are built from `static/src` (`make static`) and `static/widget/src` (`make widget`)
and committed, so serving never needs Node. Only built files are served: sources and
node_modules stay private.
"""

from __future__ import annotations

import re
import secrets
from pathlib import Path

from aiohttp import web

from handlers.auth_context import principal_for

STATIC = Path(__file__).resolve().parent.parent / "static"
APP_PAGE = STATIC / "app.html"
DIST = STATIC / "dist"
WIDGET_DIST = STATIC / "widget" / "dist"
DEMO_PAGE = STATIC / "notifications-demo.html"
_ASSET = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*\.(?:js|css)$")
# The app loads only its own bundle; content is rendered through an allowlisting sanitizer
# (static/src/editor/preview.js), and this policy is the second line: no inline or foreign
# script, no inline style attributes, no <style> element without the page's nonce (CodeMirror
# adds its theme as one, given the nonce; CSSOM writes such as `el.style.color = ...` are not
# inline styles and stay allowed), images from this origin or inline data only, no plugins,
# no frames, no framing, no <base> tricks.
_POLICY = (
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'{nonce}",
    "img-src 'self' data:",
    "connect-src 'self'",
    "object-src 'none'",
    "frame-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
)
# Built files (scripts, stylesheets) need no nonce: nothing renders them as a page.
ASSET_POLICY = "; ".join(_POLICY).format(nonce="")
_ASSET_HEADERS = {"Cache-Control": "no-cache", "Content-Security-Policy": ASSET_POLICY}


def page_policy(nonce: str) -> str:
    """The Content-Security-Policy of a page whose own <style> elements carry `nonce`."""
    return "; ".join(_POLICY).format(nonce=f" 'nonce-{nonce}'")


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
    # A fresh nonce per response: stored content rendered later cannot know it.
    nonce = secrets.token_urlsafe(18)
    text = _filled(page, signed_in, nonce)
    headers = {"Cache-Control": "no-cache", "Content-Security-Policy": page_policy(nonce)}
    return web.Response(text=text, content_type="text/html", headers=headers)


def _filled(page: Path, signed_in: bool, nonce: str) -> str:
    """The page (small, read per request so an edit shows at once) with `{signed_in}` and
    `{style_nonce}` filled."""
    text = page.read_text(encoding="utf-8")
    return text.replace("{signed_in}", "true" if signed_in else "false").replace(
        "{style_nonce}", nonce
    )


def _built_file(directory: Path, name: str) -> web.StreamResponse:
    path = directory / name
    if not _ASSET.match(name) or not path.is_file():
        raise web.HTTPNotFound()
    return web.FileResponse(path, headers=_ASSET_HEADERS)


def setup(app: web.Application) -> None:
    app.router.add_get("/", index)
    app.router.add_get("/static/dist/{name}", asset)
    app.router.add_get("/static/widget/dist/{name}", widget_asset)
    app.router.add_get("/static/notifications-demo.html", notifications_demo)
