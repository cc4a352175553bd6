"""`GET /metrics`: the job system for Prometheus (and KEDA's prometheus trigger).

With `RCMS_METRICS_TOKEN` set, a scrape must present it as a bearer token (compared in
constant time); without one, only loopback clients are answered, so an installation never
publishes its queues to the world by default.
"""

from __future__ import annotations

import hmac
import ipaddress

from aiohttp import web

from handlers import keys
from handlers.auth_context import client_ip
from realtime_cms.errors import Forbidden, Unauthorized
from realtime_cms.jobs.metrics import CONTENT_TYPE, render, snapshot
from realtime_cms.models.base import utcnow


def _allowed(request: web.Request) -> None:
    token = request.app[keys.SETTINGS].metrics_token
    if token:
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), token.encode()):
            raise Unauthorized("Present RCMS_METRICS_TOKEN as a bearer token", code="bad_token")
        return
    try:
        loopback = ipaddress.ip_address(client_ip(request) or "").is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise Forbidden(
            "Set RCMS_METRICS_TOKEN to scrape from elsewhere", code="metrics_local_only"
        )


async def metrics(request: web.Request) -> web.Response:
    _allowed(request)
    async with request.app[keys.SESSIONS]() as db:
        data = await snapshot(db, utcnow())
    return web.Response(body=render(data), headers={"Content-Type": CONTENT_TYPE})


def setup(app: web.Application) -> None:
    app.router.add_get("/metrics", metrics)
