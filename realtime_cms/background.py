"""Periodic background work of a process: one task, started and stopped with `async with`."""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from types import TracebackType
from typing import Self

logger = logging.getLogger(__name__)


class PeriodicTask(ABC):
    """Runs `run_once` every `interval_seconds` until the `async with` block ends.

    A failing round is logged and the next one runs as planned: one bad round must not stop
    the work for the life of the process. Starts once.
    """

    name = "periodic-task"

    def __init__(self, *, interval_seconds: float) -> None:
        self.interval_seconds = interval_seconds
        self._task: asyncio.Task[None] | None = None

    @abstractmethod
    async def run_once(self) -> None:
        """One round of the work."""

    async def __aenter__(self) -> Self:
        if self._task is not None:
            raise RuntimeError(f"{self.name} starts only once")
        self._task = asyncio.create_task(self._run_forever(), name=self.name)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run_forever(self) -> None:
        while True:
            await asyncio.sleep(self.interval_seconds)
            try:
                await self.run_once()
            except Exception:
                logger.exception("%s: a round failed", self.name)
