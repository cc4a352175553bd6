"""Fixed-window rate limits, in Redis when configured (shared by every node), else in process."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

from redis.asyncio import Redis


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    retry_after: int


class RateLimiter(Protocol):
    async def hit(self, key: str, limit: int, window: int) -> Verdict:
        """Count one attempt for `key`; refuse once `limit` attempts fall in one window."""
        ...

    async def reset(self, key: str) -> None:
        """Forget the attempts counted for `key` (e.g. after a successful login)."""
        ...


class MemoryRateLimiter:
    """Per-process counters; right for the single-process embedded mode."""

    def __init__(self, max_keys: int = 100_000) -> None:
        self._windows: dict[str, tuple[float, int]] = {}
        self._max_keys = max_keys

    async def hit(self, key: str, limit: int, window: int) -> Verdict:
        now = time.monotonic()
        start, count = self._windows.get(key, (now, 0))
        if now - start >= window:
            start, count = now, 0
        count += 1
        if len(self._windows) >= self._max_keys:
            self._prune(now, window)
        self._windows[key] = (start, count)
        retry = max(1, int(window - (now - start)))
        return Verdict(allowed=count <= limit, retry_after=retry)

    async def reset(self, key: str) -> None:
        self._windows.pop(key, None)

    def _prune(self, now: float, window: int) -> None:
        expired = [k for k, (start, _) in self._windows.items() if now - start >= window]
        for key in expired or list(self._windows)[: len(self._windows) // 2]:
            del self._windows[key]


class RedisRateLimiter:
    """Counters in Redis (INCR + EXPIRE), so every node enforces the same budget."""

    def __init__(self, redis: Redis, prefix: str) -> None:
        self._redis = redis
        self._prefix = prefix

    async def hit(self, key: str, limit: int, window: int) -> Verdict:
        name = self._prefix + key
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.incr(name)
            pipe.expire(name, window, nx=True)
            pipe.ttl(name)
            count, _, ttl = await pipe.execute()
        return Verdict(allowed=int(count) <= limit, retry_after=max(1, int(ttl)))

    async def reset(self, key: str) -> None:
        await self._redis.delete(self._prefix + key)
