"""Background work of a process: one task each, started and stopped with `async with`.

`BackgroundTask` is the lifecycle (starts once; leaving the block cancels the task and waits
for it); `PeriodicTask` runs a round every interval; `EventTask` is fed by the committed
domain events of one kind (its `_changed` runs after the commit and must not block: it
records, and the task does the slow part, such as a push).
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any, Generic, Self, TypeVar

from realtime_cms.events import Event, EventBus

logger = logging.getLogger(__name__)

E = TypeVar("E", bound=Event)


async def cancel_all(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Cancel the tasks and wait for them, cancelling again any that swallowed it.

    redis-py sometimes consumes a CancelledError that lands inside it (a `publish`, a
    pub/sub read); the task then loops on, and a single cancel would leave shutdown waiting
    forever.
    """
    tasks = list(tasks)
    pending = set(tasks)
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=1)
    # Their outcomes are taken (as a gather would), so that none is reported unretrieved.
    await asyncio.gather(*tasks, return_exceptions=True)


class BackgroundTask(ABC):
    """One task of this process for the life of an `async with` block. Starts once."""

    name = "background-task"

    def __init__(self) -> None:
        self._task: asyncio.Task[None] | None = None

    @abstractmethod
    async def _run(self) -> None:
        """The task's work, until it is cancelled."""

    async def __aenter__(self) -> Self:
        if self._task is not None:
            raise RuntimeError(f"{self.name} starts only once")
        self._task = asyncio.create_task(self._run(), name=self.name)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._task is not None:
            # Cancelled until done: a push through Redis may swallow one cancel.
            await cancel_all([self._task])


class PeriodicTask(BackgroundTask):
    """Runs `run_once` every `interval_seconds` until the `async with` block ends.

    A failing round is logged and the next one runs as planned: one bad round must not stop
    the work for the life of the process.
    """

    name = "periodic-task"

    def __init__(self, *, interval_seconds: float) -> None:
        super().__init__()
        self.interval_seconds = interval_seconds

    @abstractmethod
    async def run_once(self) -> None:
        """One round of the work."""

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_seconds)
            try:
                await self.run_once()
            except Exception:
                logger.exception("%s: a round failed", self.name)


class EventTask(BackgroundTask, Generic[E]):
    """A task fed by the committed events of `kind` from `bus` (subscribed while it runs)."""

    def __init__(self, bus: EventBus, kind: type[E]) -> None:
        super().__init__()
        self._bus = bus
        self._kind = kind
        self._unsubscribe: Callable[[], None] | None = None

    @abstractmethod
    def _changed(self, event: E) -> None:
        """After a commit: record the event (cheap, never blocking)."""

    async def __aenter__(self) -> Self:
        if self._task is None:  # (a second start is refused by the base)
            self._unsubscribe = self._bus.subscribe(self._kind, self._changed)
        return await super().__aenter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        await super().__aexit__(exc_type, exc, tb)
