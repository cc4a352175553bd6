"""`GET /healthz`: is this node able to serve (database and Redis reachable)? With the
process's counters (the job system's are on `/metrics`)."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from handlers import keys
from handlers.socket_junk import junk_packets
from realtime_cms import __version__
from realtime_cms.db import ping

log = logging.getLogger(__name__)
_TIMEOUT = 3.0


async def _check(name: str, probe: asyncio.Future[object] | object) -> tuple[str, str]:
    try:
        await asyncio.wait_for(probe, _TIMEOUT)  # type: ignore[arg-type]
    except Exception as exc:  # noqa: BLE001 - any failure means unhealthy
        log.warning("health check %s failed: %s", name, exc)
        return name, "down"
    return name, "ok"


async def healthz(request: web.Request) -> web.Response:
    """200 with per-dependency status when everything answers, 503 otherwise; `counters`
    are this process's (`socket_junk_packets`: malformed Socket.IO packets refused)."""
    app = request.app
    checks = [_check("database", ping(app[keys.ENGINE]))]
    redis = app[keys.REDIS]
    if redis is not None:
        checks.append(_check("redis", redis.ping()))
    results = dict(await asyncio.gather(*checks))
    if redis is None:
        results["redis"] = "not configured"
    healthy = all(value != "down" for value in results.values())
    body = {
        "status": "ok" if healthy else "degraded",
        "version": __version__,
        "checks": results,
        "counters": {"socket_junk_packets": junk_packets()},
    }
    return web.json_response(body, status=200 if healthy else 503)


def setup(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
