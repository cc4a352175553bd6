"""The core assembled without aiohttp: `Runtime(settings)`, entered with `async with`.

Building it does no I/O (settings, the event bus, password hashing, the mailer, the
notification hub). Entering opens, in order, the database, Redis and the rate limiter,
notification delivery with its digest runner, live documents (the update store, rooms,
the Redis relay, presence), the content binding, and versioning (autosave, retention);
leaving closes them in reverse, each once, whatever failed (one `AsyncExitStack`). The web
app enters it in one `cleanup_ctx` (handlers/app.py); any other process (a CLI command, a
worker) can enter it directly. Ways in hand it what only they have: the Socket.IO server
live pushes go out through, and what to do when an access change is committed here or
reported by another node (re-check the connections concerned).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from functools import partial
from types import TracebackType
from typing import Self

import socketio
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from realtime_cms.collab.manager import RoomManager
from realtime_cms.collab.peer import RoomLimits
from realtime_cms.collab.relay import Relay
from realtime_cms.collab.store import UpdateStore
from realtime_cms.config import Settings
from realtime_cms.content.binding import ContentBinding
from realtime_cms.db import create_engine, session_factory
from realtime_cms.documents.presence import Presence, registry_for
from realtime_cms.documents.service import apply_level_change
from realtime_cms.events import AccessChanged, EventBus, attach
from realtime_cms.mail import MailSender, mail_sender_for
from realtime_cms.notifications.digests import DigestRunner
from realtime_cms.notifications.hub import NotificationHub
from realtime_cms.notifications.preferences import CACHE_SECONDS_KEY
from realtime_cms.notifications.service import Dispatcher
from realtime_cms.ratelimit import MemoryRateLimiter, RateLimiter, RedisRateLimiter
from realtime_cms.security.passwords import Passwords
from realtime_cms.versions.autosave import Autosave
from realtime_cms.versions.retention import Policy, Retention

# Re-check now the connections of a user (None: any) on a login session (None: any);
# returns at once (handlers.access_watch.AccessWatch.changed).
AccessCallback = Callable[[int | None, str | None], None]


class Runtime:
    """Every long-lived part of the core, started once and stopped in reverse."""

    def __init__(
        self,
        settings: Settings,
        *,
        sio: socketio.AsyncServer,
        on_access_change: AccessCallback | None = None,
    ) -> None:
        self.settings = settings
        self.events = EventBus()
        self.passwords = Passwords(settings)
        self.mailer: MailSender = mail_sender_for(settings)
        self.notification_hub = NotificationHub(sio)
        self._on_access_change = on_access_change
        self._stack: contextlib.AsyncExitStack | None = None

    async def __aenter__(self) -> Self:
        if self._stack is not None:
            raise RuntimeError("a Runtime starts only once")
        self._stack = contextlib.AsyncExitStack()
        try:
            await self._start(self._stack)
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._stack is not None:
            await self._stack.aclose()

    async def _start(self, stack: contextlib.AsyncExitStack) -> None:
        settings = self.settings
        # The database, with the event bus dispatching after each commit.
        self.engine: AsyncEngine = create_engine(
            settings.database_url, echo=settings.db_echo, pool_size=settings.db_pool_size
        )
        stack.push_async_callback(self.engine.dispose)
        sessions = session_factory(self.engine)
        attach(sessions, self.events)
        cache_seconds = settings.notification_preference_cache_seconds
        sessions.configure(info={**sessions.kw.get("info", {}), CACHE_SECONDS_KEY: cache_seconds})
        self.sessions: async_sessionmaker[AsyncSession] = sessions

        url = settings.redis_url
        self.redis: Redis | None = Redis.from_url(url) if url else None
        if self.redis is not None:
            stack.push_async_callback(self.redis.aclose)
        self.rate_limiter: RateLimiter = (
            RedisRateLimiter(self.redis, settings.redis_prefix + "rl:")
            if self.redis is not None
            else MemoryRateLimiter()
        )

        # Delivery of committed notifications, and the digest runner (every process runs one).
        self.notifier = Dispatcher(self.notification_hub, self.mailer)
        await stack.enter_async_context(
            DigestRunner(
                sessions,
                self.notifier,
                interval_seconds=settings.notification_digest_interval_seconds,
            )
        )

        await self._start_documents(stack)

        self.content = await stack.enter_async_context(
            ContentBinding(
                self.rooms,
                sessions,
                self.relay,
                debounce_seconds=settings.content_store_debounce_seconds,
                max_wait_seconds=settings.content_store_max_wait_seconds,
                notifier=self.notifier,
            )
        )
        self.autosave = Autosave(
            sessions,
            self.content,
            quiet_seconds=settings.version_autosave_quiet_seconds,
            every_changes=settings.version_autosave_every_changes,
        )
        self.autosave.attach(self.rooms.hooks)
        policy = Policy(
            keep=settings.version_autosave_keep, max_age_days=settings.version_autosave_max_age_days
        )
        retention = Retention(
            sessions, policy, interval_seconds=settings.version_retention_interval_seconds
        )
        await stack.enter_async_context(self.autosave)
        await stack.enter_async_context(retention)

    async def _start_documents(self, stack: contextlib.AsyncExitStack) -> None:
        """The update store, the rooms, the relay to other nodes and presence."""
        settings = self.settings
        limits = RoomLimits(
            max_update_bytes=settings.collab_max_update_bytes,
            max_awareness_bytes=settings.collab_max_awareness_bytes,
            max_pending=settings.collab_max_pending,
            ack_deadline_seconds=settings.collab_ack_deadline_seconds,
            max_seats_per_user=settings.collab_max_seats_per_user,
            idle_unload_seconds=settings.collab_idle_unload_seconds,
        )
        store = UpdateStore(self.sessions, commit_window=settings.collab_commit_window_ms / 1000)
        await stack.enter_async_context(store)
        self.rooms = await stack.enter_async_context(RoomManager(store, limits))
        self.relay = Relay(
            self.rooms,
            self.redis,
            prefix=settings.redis_prefix,
            catchup_seconds=settings.collab_catchup_seconds,
            on_level_change=partial(apply_level_change, self.rooms, self.sessions),
            on_access_change=self._access_changed_elsewhere,
        )
        self.presence = Presence(self.sessions, registry_for(self.redis, settings.redis_prefix))
        self.presence.attach(self.rooms.hooks)
        await stack.enter_async_context(self.relay)
        await stack.enter_async_context(self.presence)
        stack.callback(self.events.subscribe(AccessChanged, self._access_changed))

    def _access_changed(self, event: AccessChanged) -> None:
        """An access change committed here: re-check connections here and on every node."""
        self.relay.publish_access_change(event.user_id, event.session_id)
        self._access_changed_elsewhere(event.user_id, event.session_id)

    def _access_changed_elsewhere(self, user_id: int | None, session_id: str | None) -> None:
        if self._on_access_change is not None:
            self._on_access_change(user_id, session_id)
