"""Waking idle workers when jobs commit: Redis pub/sub across processes, an event in one.

A hint, never the truth: the table is. A lost wake-up (Redis down, a message dropped) costs
at most one poll interval, since workers also poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from types import TracebackType
from typing import Self

from redis.asyncio import Redis
from redis.exceptions import RedisError

from realtime_cms.background import cancel_all
from realtime_cms.events import EventBus
from realtime_cms.jobs.queue import JobsEnqueued

log = logging.getLogger(__name__)

RECONNECT_SECONDS = (0.5, 1.0, 2.0, 5.0)


class Wakeup:
    """`wait()` returns when jobs were enqueued here or (with Redis) in any process."""

    def __init__(self, redis: Redis | None, channel: str) -> None:
        self._redis = redis
        self._channel = channel
        self._event = asyncio.Event()
        self._listener: asyncio.Task[None] | None = None
        self._publishes: set[asyncio.Task[None]] = set()
        self._unsubscribe: list[object] = []

    def attach(self, bus: EventBus) -> None:
        self._unsubscribe.append(bus.subscribe(JobsEnqueued, self._enqueued))

    async def __aenter__(self) -> Self:
        if self._listener is not None:
            raise RuntimeError("Wakeup starts only once")
        if self._redis is not None:
            self._listener = asyncio.create_task(self._listen(), name="jobs-wakeup")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()  # type: ignore[operator]
        await cancel_all([*self._publishes, *([self._listener] if self._listener else [])])

    def _enqueued(self, event: JobsEnqueued) -> None:
        self._event.set()
        if self._redis is not None:
            task = asyncio.get_running_loop().create_task(self._publish(event.queue))
            self._publishes.add(task)
            task.add_done_callback(self._publishes.discard)

    async def _publish(self, queue: str) -> None:
        assert self._redis is not None
        try:
            await self._redis.publish(self._channel, queue)
        except RedisError as exc:
            log.debug("job wake-up not published (workers will poll): %s", exc)

    async def wait(self, seconds: float) -> bool:
        """Until a wake-up or `seconds`; whether one came."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._event.wait()
        woke = self._event.is_set()
        self._event.clear()
        return woke

    async def _listen(self) -> None:
        assert self._redis is not None
        failures = 0
        while True:
            try:
                async with self._redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(self._channel)
                    failures = 0
                    async for _message in pubsub.listen():
                        self._event.set()
            except (RedisError, OSError) as exc:
                pause = RECONNECT_SECONDS[min(failures, len(RECONNECT_SECONDS) - 1)]
                failures += 1
                log.debug("job wake-ups lost (polling meanwhile), again in %.1f s: %s", pause, exc)
                await asyncio.sleep(pause)
