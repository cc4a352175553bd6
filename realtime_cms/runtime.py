"""The core assembled without aiohttp: `Runtime(settings)`, entered with `async with`.

Building it does no I/O (settings, the event bus, password hashing, the mailer, the
notification hub, the job types). Entering opens, in order, the database, Redis and the
rate limiter, notification delivery, live documents (the update store, rooms, the Redis
relay, presence), the content binding, autosave, the job wake-up and, in a process with
the worker role, the job worker (on SQLite with one connection of its own for its jobs);
leaving closes them in reverse, each once, whatever failed (one `AsyncExitStack`), so the
worker stops first and its jobs finish with everything up.

The web app enters it in one `cleanup_ctx` (handlers/app.py), with an embedded worker by
default; `realtime-cms worker` enters it with the worker role only (handlers/worker.py).
Ways in hand it what only they have: the Socket.IO server live pushes go out through (a
process without one pushes through Redis, write-only), and what to do when an access change
is committed here or reported by another node (re-check the connections concerned).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable
from functools import partial
from types import TracebackType
from typing import Any, Protocol, Self

import socketio
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from realtime_cms.collab.manager import RoomManager
from realtime_cms.collab.peer import RoomLimits
from realtime_cms.collab.relay import Relay
from realtime_cms.collab.store import UpdateStore
from realtime_cms.config import Settings
from realtime_cms.content.binding import ContentBinding
from realtime_cms.db import create_engine, one_connection_engine, session_factory
from realtime_cms.documents.presence import Presence, registry_for
from realtime_cms.documents.service import apply_level_change
from realtime_cms.events import AccessChanged, EventBus, attach
from realtime_cms.jobs import service as jobs_service
from realtime_cms.jobs.catalog import build_registry, schedules
from realtime_cms.jobs.wakeup import Wakeup
from realtime_cms.jobs.worker import JobWorker, WorkerOptions
from realtime_cms.mail import MailSender, mail_sender_for
from realtime_cms.notifications.hub import NotificationHub
from realtime_cms.notifications.preferences import CACHE_SECONDS_KEY
from realtime_cms.notifications.service import Dispatcher
from realtime_cms.notifications.subscribers import LivePushes
from realtime_cms.ratelimit import MemoryRateLimiter, RateLimiter, RedisRateLimiter
from realtime_cms.scheduling.pushes import ScheduleNotices
from realtime_cms.security.passwords import Passwords
from realtime_cms.subscriptions import install as install_subscriptions
from realtime_cms.versions.autosave import Autosave
from realtime_cms.versions.service import CONTENT_VERSIONS

# Re-check now the connections of a user (None: any) on a login session (None: any);
# returns at once (handlers.access_watch.AccessWatch.changed).
AccessCallback = Callable[[int | None, str | None], None]


class Emitter(Protocol):
    """What live pushes go out through: a Socket.IO server, or a write-only manager."""

    async def emit(self, event: str, data: Any = None, **kwargs: Any) -> Any: ...


def worker_options(
    settings: Settings,
    queues: list[str],
    *,
    kind: str = "worker",
    concurrency: int | None = None,
) -> WorkerOptions:
    """The worker of a process, from settings (`queues`: what it takes; empty: every queue)."""
    return WorkerOptions(
        kind=kind,
        queues=tuple(queues),
        concurrency=concurrency or settings.job_concurrency,
        heartbeat_seconds=settings.job_heartbeat_seconds,
        stale_after_seconds=settings.job_stale_after_seconds or None,
        poll_seconds=settings.job_poll_seconds,
        grace_seconds=settings.job_grace_seconds,
        memory_limit_mb=settings.job_memory_limit_mb,
    )


def _write_only_emitter(settings: Settings) -> Emitter:
    """Pushes from a process that serves no sockets: through Redis to the web processes, or
    (without Redis) to nobody; clients read what they missed when they reconnect."""
    if settings.redis_url:
        return socketio.AsyncRedisManager(
            settings.redis_url, channel=f"{settings.redis_prefix}socketio", write_only=True
        )
    return socketio.AsyncServer()


class Runtime:
    """Every long-lived part of the core, started once and stopped in reverse."""

    def __init__(
        self,
        settings: Settings,
        *,
        sio: Emitter | None = None,
        on_access_change: AccessCallback | None = None,
        worker: WorkerOptions | None = None,
    ) -> None:
        self.settings = settings
        # In-transaction subscribers are process-wide; the bus is this runtime's.
        install_subscriptions()
        self.events = EventBus()
        self.passwords = Passwords(settings)
        self.mailer: MailSender = mail_sender_for(settings)
        self.notification_hub = NotificationHub(sio or _write_only_emitter(settings))
        self.jobs = build_registry(settings)
        self.worker_options = worker
        self.worker: JobWorker | None = None
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
        sessions = self._sessions(self.engine)
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

        # Delivery of committed notifications (live pushes; their mail goes out as jobs).
        self.notifier = Dispatcher(self.notification_hub)
        await stack.enter_async_context(LivePushes(self.events, self.notifier))

        await self._start_documents(stack)

        self.content = await stack.enter_async_context(
            ContentBinding(
                self.rooms,
                sessions,
                self.relay,
                debounce_seconds=settings.content_store_debounce_seconds,
                max_wait_seconds=settings.content_store_max_wait_seconds,
                versions=CONTENT_VERSIONS,
            )
        )
        self.autosave = Autosave(
            sessions,
            quiet_seconds=settings.version_autosave_quiet_seconds,
            every_changes=settings.version_autosave_every_changes,
        )
        self.autosave.attach(self.rooms.hooks)
        await stack.enter_async_context(self.autosave)
        await self._start_jobs(stack)

    def _sessions(self, engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
        """Sessions of `engine` whose commits reach this runtime's event bus."""
        sessions = session_factory(engine)
        attach(sessions, self.events)
        cache_seconds = self.settings.notification_preference_cache_seconds
        sessions.configure(info={**sessions.kw.get("info", {}), CACHE_SECONDS_KEY: cache_seconds})
        return sessions

    def _job_sessions(self, stack: contextlib.AsyncExitStack) -> async_sessionmaker[AsyncSession]:
        """The worker's claims and job transactions: on SQLite through one connection of
        their own (closed after the worker stops), elsewhere through the process' pool."""
        if not self.settings.is_sqlite:
            return self.sessions
        engine = one_connection_engine(self.settings.database_url, echo=self.settings.db_echo)
        stack.push_async_callback(engine.dispose)
        return self._sessions(engine)

    async def _start_jobs(self, stack: contextlib.AsyncExitStack) -> None:
        """The wake-up every process sends on commit; the worker in a worker process."""
        wakeup = Wakeup(self.redis, f"{self.settings.redis_prefix}jobs")
        wakeup.attach(self.events)
        await stack.enter_async_context(wakeup)
        # Job changes pushed to admins' sockets from whichever process made them.
        await stack.enter_async_context(
            jobs_service.feed(self.events, self.notification_hub.sio, self.sessions, self.jobs)
        )
        # Batch progress, to the same room.
        from realtime_cms.jobs import batch_feed

        await stack.enter_async_context(
            batch_feed.feed(self.events, self.notification_hub.sio, self.sessions)
        )
        # Heartbeat alerts raised, escalated, cleared or suppressed, pushed to the same room.
        from realtime_cms.jobs import alerts

        await stack.enter_async_context(alerts.feed(self.events, self.notification_hub.sio))
        options = self.worker_options
        if options is not None:
            if not options.queues:
                options = dataclasses.replace(options, queues=tuple(self.jobs.queues()))
            self.worker = await stack.enter_async_context(
                JobWorker(
                    self.sessions,
                    self.jobs,
                    wakeup,
                    options,
                    runtime=self,
                    schedules=schedules(self.settings),
                    job_sessions=self._job_sessions(stack),
                )
            )

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
        await stack.enter_async_context(ScheduleNotices(self.events, self.relay))
        stack.callback(self.events.subscribe(AccessChanged, self._access_changed))

    def _access_changed(self, event: AccessChanged) -> None:
        """An access change committed here: re-check connections here and on every node."""
        self.relay.publish_access_change(event.user_id, event.session_id)
        self._access_changed_elsewhere(event.user_id, event.session_id)

    def _access_changed_elsewhere(self, user_id: int | None, session_id: str | None) -> None:
        if self._on_access_change is not None:
            self._on_access_change(user_id, session_id)
