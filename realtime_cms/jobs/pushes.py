"""Coalesced live pushes of committed events to the operators' room `jobs` (one event name).

A `CoalescedFeed` subscribes to one kind of committed event whose items carry a `key` (an
alert's id, say) and pushes, at most once every `interval` seconds, one Socket.IO event
`{<name>: [item, ...]}` to the room `jobs` of `/notifications` (realtime_cms/jobs/events.py
says who sits there): each key once, with its latest state. The job feed has its own class,
since its pushes also carry a fresh queue-depth snapshot; this one sends only what changed.

Pushes are hints, as the job feed's: a lost one is made good by reading the REST API again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, Self, TypeVar

from realtime_cms.events import Event, EventBus
from realtime_cms.jobs.events import INTERVAL_SECONDS, ROOM
from realtime_cms.notifications.hub import NAMESPACE

if TYPE_CHECKING:
    from realtime_cms.runtime import Emitter

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Pushed(Event):
    """Base of the events a feed pushes: identified by `key`, rendered by `as_json`."""

    @property
    def key(self) -> Hashable:
        raise NotImplementedError

    def as_json(self) -> dict[str, Any]:
        raise NotImplementedError


P = TypeVar("P", bound=Pushed)


class CoalescedFeed(Generic[P]):
    """Pushes committed events of `kind` to the room `jobs` as event `name`, coalesced."""

    def __init__(
        self,
        bus: EventBus,
        emitter: Emitter,
        kind: type[P],
        name: str,
        *,
        interval: float = INTERVAL_SECONDS,
    ) -> None:
        self._bus, self._emitter, self._kind, self.name = bus, emitter, kind, name
        self._interval = interval
        self._latest: dict[Hashable, dict[str, Any]] = {}
        self._dirty = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self.pushed = 0

    async def __aenter__(self) -> Self:
        if self._task is not None:
            raise RuntimeError(f"the {self.name} feed starts only once")
        self._unsubscribe = self._bus.subscribe(self._kind, self._changed)
        self._task = asyncio.create_task(self._run(), name=f"{self.name}-feed")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def _changed(self, event: P) -> None:
        """After a commit: keep the item's latest state (the push happens in the task)."""
        # Re-inserted, not updated: items go out in the order of their latest change.
        self._latest.pop(event.key, None)
        self._latest[event.key] = event.as_json()
        self._dirty.set()

    async def _run(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            items, self._latest = list(self._latest.values()), {}
            try:
                await self._emitter.emit(
                    self.name, {self.name: items}, room=ROOM, namespace=NAMESPACE
                )
                self.pushed += 1
            except Exception:
                log.exception("%s feed: the push failed", self.name)
            await asyncio.sleep(self._interval)
