"""Browser entry points: `/` leads to what a person can use today, the API reference."""

from __future__ import annotations

from aiohttp import web


async def index(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("/api/v1/docs")


def setup(app: web.Application) -> None:
    app.router.add_get("/", index)
