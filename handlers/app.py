"""`create_app(settings)`: the web process, a way in to the core's `Runtime`.

It builds the Socket.IO servers, the routes and the socket namespaces, and enters the
runtime in one `cleanup_ctx`, publishing its parts under the app's typed keys for the
handlers. Sockets close on shutdown, before the runtime stops in reverse.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import socketio
from aiohttp import web

from handlers import (
    access_watch,
    collab,
    collab_seat,
    keys,
    notifications_socket,
    routes,
    ysocketio,
    ywebsocket,
)
from handlers.access_watch import ACCESS_WATCH
from handlers.auth_context import origin_allowed
from handlers.middlewares import (
    error_middleware,
    request_id_middleware,
    security_headers_middleware,
)
from handlers.socket_server import SocketServer
from realtime_cms.config import Settings
from realtime_cms.jobs.worker import WorkerOptions
from realtime_cms.runtime import Runtime, worker_options

log = logging.getLogger(__name__)


async def _runtime(app: web.Application) -> AsyncIterator[None]:
    """Run the core for the app's life; its parts under the keys the handlers read."""
    async with app[keys.RUNTIME] as runtime:
        app[keys.ENGINE] = runtime.engine
        app[keys.SESSIONS] = runtime.sessions
        app[keys.REDIS] = runtime.redis
        app[keys.RATE_LIMITER] = runtime.rate_limiter
        app[keys.NOTIFIER] = runtime.notifier
        app[keys.ROOMS] = runtime.rooms
        app[keys.RELAY] = runtime.relay
        app[keys.PRESENCE] = runtime.presence
        app[keys.CONTENT] = runtime.content
        app[keys.AUTOSAVE] = runtime.autosave
        try:
            yield
        finally:
            await app[ACCESS_WATCH].close()


async def _close_sockets(app: web.Application) -> None:
    # On shutdown, before aiohttp waits for open handlers: otherwise live sockets hold it up.
    await app[keys.SIO].shutdown()
    await app[keys.SIO_MSGPACK].shutdown()


async def _refuse_root_namespace(sid: str, environ: object, auth: object = None) -> None:
    raise socketio.exceptions.ConnectionRefusedError("Connect to a feature namespace, not '/'")


def _socket_origin_allowed(origin: str | None, environ: dict[str, Any]) -> bool:
    """Socket.IO's Origin check: the allowed origins or the server's own, as for REST.

    Engine.IO also asks without an Origin (a non-browser client's long-polling request,
    when it builds CORS headers): no CORS header is due then."""
    return origin is not None and origin_allowed(environ["aiohttp.request"], origin)


def _socket_server(settings: Settings) -> SocketServer:
    # The channel carries the prefix: installations sharing a Redis must not share emits.
    manager = (
        socketio.AsyncRedisManager(settings.redis_url, channel=f"{settings.redis_prefix}socketio")
        if settings.redis_url
        else None
    )
    sio = SocketServer(
        async_mode="aiohttp",
        client_manager=manager,
        cors_allowed_origins=_socket_origin_allowed,
        max_http_buffer_size=settings.max_body_bytes,
        # Any namespace may connect; ysocketio's catch-all handler refuses all but `/yjs|<doc>`.
        namespaces="*",
    )
    # The default namespace serves nothing; refusing it keeps anonymous sockets out.
    sio.on("connect", _refuse_root_namespace, namespace="/")
    return sio


def _msgpack_server(settings: Settings) -> SocketServer:
    """`/collab` for clients that ask for msgpack framing (socket.io-msgpack-parser): each
    event is one binary frame, where the default parser sends a JSON header and one more
    frame per binary attachment. Only `/collab` is served here."""
    return SocketServer(
        async_mode="aiohttp",
        serializer="msgpack",
        cors_allowed_origins=_socket_origin_allowed,
        max_http_buffer_size=settings.max_body_bytes,
        namespaces=[collab.NAMESPACE],
    )


def _embedded_worker(settings: Settings) -> WorkerOptions | None:
    """The worker `serve` runs beside the web server unless dedicated workers do the work."""
    if not settings.worker_embedded:
        return None
    return worker_options(settings, settings.job_queues, kind="web")


def create_app(settings: Settings) -> web.Application:
    """A ready-to-run application for `settings`; no I/O happens until it starts."""
    app = web.Application(
        client_max_size=settings.max_body_bytes,
        middlewares=[request_id_middleware, security_headers_middleware, error_middleware],
    )
    app[keys.SETTINGS] = settings
    sio = _socket_server(settings)
    sio.attach(app)
    app[keys.SIO] = sio
    # Access changes re-check this process's connections (the watch is set up below).
    runtime = Runtime(
        settings,
        sio=sio,
        on_access_change=lambda *c: app[ACCESS_WATCH].changed(*c),
        worker=_embedded_worker(settings),
    )
    app[keys.RUNTIME] = runtime
    app[keys.EVENTS] = runtime.events
    app[keys.PASSWORDS] = runtime.passwords
    app[keys.MAILER] = runtime.mailer
    app[keys.NOTIFICATION_HUB] = runtime.notification_hub
    routes.setup(app)
    collab_seat.setup(app)
    access_watch.setup(app)
    collab.setup(app, sio)
    msgpack_sio = _msgpack_server(settings)
    msgpack_sio.attach(app, socketio_path=collab.MSGPACK_PATH)
    app[keys.SIO_MSGPACK] = msgpack_sio
    collab.setup(app, msgpack_sio)
    notifications_socket.setup(app, sio)
    ysocketio.setup(app, sio)
    ywebsocket.setup(app)
    # Sockets close on shutdown; then the runtime stops in reverse: rooms flush, then the
    # database.
    app.cleanup_ctx.append(_runtime)
    app.on_shutdown.append(_close_sockets)
    return app
