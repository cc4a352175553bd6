"""`create_app(settings)` builds the aiohttp app; the only core module that imports handlers."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import socketio
from aiohttp import web
from redis.asyncio import Redis

from handlers import (
    access_watch,
    collab,
    collab_seat,
    notifications_socket,
    routes,
    ysocketio,
    ywebsocket,
)
from handlers.access_watch import ACCESS_WATCH, AccessWatch
from handlers.auth_context import origin_allowed
from handlers.middlewares import (
    error_middleware,
    request_id_middleware,
    security_headers_middleware,
)
from handlers.socket_server import SocketServer
from realtime_cms import keys
from realtime_cms.collab.manager import RoomLimits, RoomManager
from realtime_cms.collab.relay import Relay
from realtime_cms.collab.store import UpdateStore
from realtime_cms.config import Settings
from realtime_cms.content.binding import ContentBinding
from realtime_cms.db import create_engine, session_factory
from realtime_cms.documents.presence import Presence, registry_for
from realtime_cms.documents.service import apply_level_change
from realtime_cms.events import AccessChanged, EventBus, attach
from realtime_cms.mail import mail_sender_for
from realtime_cms.notifications.digests import DigestRunner
from realtime_cms.notifications.hub import NotificationHub
from realtime_cms.notifications.preferences import CACHE_SECONDS_KEY
from realtime_cms.notifications.service import Dispatcher
from realtime_cms.ratelimit import MemoryRateLimiter, RedisRateLimiter
from realtime_cms.security.passwords import Passwords
from realtime_cms.versions.autosave import Autosave
from realtime_cms.versions.retention import Policy, Retention

log = logging.getLogger(__name__)


async def _database(app: web.Application) -> AsyncIterator[None]:
    settings = app[keys.SETTINGS]
    engine = create_engine(
        settings.database_url, echo=settings.db_echo, pool_size=settings.db_pool_size
    )
    app[keys.ENGINE] = engine
    sessions = session_factory(engine)
    attach(sessions, app[keys.EVENTS])
    app[keys.SESSIONS] = sessions
    yield
    await engine.dispose()


async def _redis(app: web.Application) -> AsyncIterator[None]:
    url = app[keys.SETTINGS].redis_url
    client: Redis | None = Redis.from_url(url) if url else None
    app[keys.REDIS] = client
    app[keys.RATE_LIMITER] = (
        RedisRateLimiter(client, app[keys.SETTINGS].redis_prefix + "rl:")
        if client
        else MemoryRateLimiter()
    )
    yield
    if client is not None:
        await client.aclose()


async def _notifications(app: web.Application) -> AsyncIterator[None]:
    """Delivery of committed notifications, and the digest runner (every process runs one)."""
    settings = app[keys.SETTINGS]
    sessions = app[keys.SESSIONS]
    cache_seconds = settings.notification_preference_cache_seconds
    sessions.configure(info={**sessions.kw.get("info", {}), CACHE_SECONDS_KEY: cache_seconds})
    dispatcher = Dispatcher(app[keys.NOTIFICATION_HUB], app[keys.MAILER])
    app[keys.NOTIFIER] = dispatcher
    runner = DigestRunner(
        sessions, dispatcher, interval_seconds=settings.notification_digest_interval_seconds
    )
    async with runner:
        yield


async def _collab(app: web.Application) -> AsyncIterator[None]:
    settings = app[keys.SETTINGS]
    limits = RoomLimits(
        max_update_bytes=settings.collab_max_update_bytes,
        max_awareness_bytes=settings.collab_max_awareness_bytes,
        max_pending=settings.collab_max_pending,
        ack_deadline_seconds=settings.collab_ack_deadline_seconds,
        max_seats_per_user=settings.collab_max_seats_per_user,
        idle_unload_seconds=settings.collab_idle_unload_seconds,
    )
    store = UpdateStore(app[keys.SESSIONS], commit_window=settings.collab_commit_window_ms / 1000)
    async with store, RoomManager(store, limits) as rooms:
        relay = Relay(
            rooms,
            app[keys.REDIS],
            prefix=settings.redis_prefix,
            catchup_seconds=settings.collab_catchup_seconds,
            on_level_change=partial(apply_level_change, rooms, app[keys.SESSIONS]),
            on_access_change=app[ACCESS_WATCH].changed,
        )
        registry = registry_for(app[keys.REDIS], settings.redis_prefix)
        presence = Presence(app[keys.SESSIONS], registry)
        presence.attach(rooms.hooks)
        async with relay, presence:
            app[keys.ROOMS] = rooms
            app[keys.RELAY] = relay
            app[keys.PRESENCE] = presence
            unsubscribe = app[keys.EVENTS].subscribe(
                AccessChanged, partial(_access_changed, app[ACCESS_WATCH], relay)
            )
            try:
                yield
            finally:
                unsubscribe()
                await app[ACCESS_WATCH].close()


def _access_changed(watch: AccessWatch, relay: Relay, event: AccessChanged) -> None:
    """Connections of a user whose access changed are re-checked here and on every node."""
    watch.on_event(event)
    relay.publish_access_change(event.user_id, event.session_id)


async def _content(app: web.Application) -> AsyncIterator[None]:
    settings = app[keys.SETTINGS]
    binding = ContentBinding(
        app[keys.ROOMS],
        app[keys.SESSIONS],
        app[keys.RELAY],
        debounce_seconds=settings.content_store_debounce_seconds,
        max_wait_seconds=settings.content_store_max_wait_seconds,
        notifier=app[keys.NOTIFIER],
    )
    async with binding:
        app[keys.CONTENT] = binding
        yield


async def _versions(app: web.Application) -> AsyncIterator[None]:
    settings = app[keys.SETTINGS]
    autosave = Autosave(
        app[keys.SESSIONS],
        app[keys.CONTENT],
        quiet_seconds=settings.version_autosave_quiet_seconds,
        every_changes=settings.version_autosave_every_changes,
    )
    autosave.attach(app[keys.ROOMS].hooks)
    policy = Policy(
        keep=settings.version_autosave_keep, max_age_days=settings.version_autosave_max_age_days
    )
    retention = Retention(
        app[keys.SESSIONS], policy, interval_seconds=settings.version_retention_interval_seconds
    )
    async with autosave, retention:
        app[keys.AUTOSAVE] = autosave
        yield


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


def create_app(settings: Settings) -> web.Application:
    """A ready-to-run application for `settings`; no I/O happens until it starts."""
    app = web.Application(
        client_max_size=settings.max_body_bytes,
        middlewares=[request_id_middleware, security_headers_middleware, error_middleware],
    )
    app[keys.SETTINGS] = settings
    app[keys.EVENTS] = EventBus()
    app[keys.PASSWORDS] = Passwords(settings)
    app[keys.MAILER] = mail_sender_for(settings)
    sio = _socket_server(settings)
    sio.attach(app)
    app[keys.SIO] = sio
    routes.setup(app)
    collab_seat.setup(app)
    access_watch.setup(app)
    collab.setup(app, sio)
    msgpack_sio = _msgpack_server(settings)
    msgpack_sio.attach(app, socketio_path=collab.MSGPACK_PATH)
    app[keys.SIO_MSGPACK] = msgpack_sio
    collab.setup(app, msgpack_sio)
    app[keys.NOTIFICATION_HUB] = NotificationHub(sio)
    notifications_socket.setup(app, sio)
    ysocketio.setup(app, sio)
    ywebsocket.setup(app)
    # Sockets close on shutdown; cleanup then runs in reverse: rooms flush, then the database.
    app.cleanup_ctx.extend([_database, _redis, _notifications, _collab, _content, _versions])
    app.on_shutdown.append(_close_sockets)
    return app
