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
from abc import ABC, abstractmethod
from collections.abc import Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from realtime_cms.background import EventTask
from realtime_cms.events import Event, EventBus
from realtime_cms.jobs.events import INTERVAL_SECONDS, ROOM
from realtime_cms.notifications.hub import NAMESPACE

if TYPE_CHECKING:
    from realtime_cms.runtime import Emitter

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Pushed(Event, ABC):
    """Base of the events a feed pushes: identified by `key`, rendered by `as_json`."""

    @property
    @abstractmethod
    def key(self) -> Hashable:
        """Which item the event is about (its latest state replaces the earlier ones)."""

    @abstractmethod
    def as_json(self) -> dict[str, Any]:
        """The item as pushed."""


P = TypeVar("P", bound=Pushed)


class CoalescedFeed(EventTask[P]):
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
        super().__init__(bus, kind)
        self._emitter, self.name = emitter, name
        self._interval = interval
        self._latest: dict[Hashable, dict[str, Any]] = {}
        self._dirty = asyncio.Event()
        self.pushed = 0

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
