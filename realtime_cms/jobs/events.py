"""Live job status for operators: `JobChanged` events, coalesced into pushes to one room.

Whatever changes a job's status (an operator's enqueue, retry, cancel or discard, a worker's
claim, completion or failure) emits `JobChanged` in its transaction. Once committed, the
process' `JobFeed` collects them and pushes at most one `jobs` event every `interval`
seconds to the room `jobs` of the `/notifications` namespace, where the connections of users
holding `jobs.view` sit: the jobs that changed (failures first, at most `MAX_CHANGES`, `more`
counting the rest) and a fresh queue-depth snapshot. A worker settling hundreds of jobs a
second thus costs each socket two small messages a second, and one database read.

Pushes are hints: a lost one (Redis down, a tab asleep) is made good by the next one's
snapshot, or by reading the REST API again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from realtime_cms.background import EventTask
from realtime_cms.events import Event, EventBus
from realtime_cms.notifications.hub import NAMESPACE

if TYPE_CHECKING:
    from realtime_cms.runtime import Emitter

log = logging.getLogger(__name__)

ROOM = "jobs"
EVENT = "jobs"
INTERVAL_SECONDS = 0.5
MAX_CHANGES = 100
# A job that left the table (discarded): not a stored status.
DISCARDED = "discarded"

Snapshot = Callable[[], Awaitable[list[dict[str, Any]]]]


@dataclass(frozen=True, slots=True)
class JobChanged(Event):
    """Job `job_id` is now `status`; `type` and `queue` when the emitter knows them cheaply."""

    job_id: str
    status: str
    type: str | None = None
    queue: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {"id": self.job_id, "status": self.status, "type": self.type, "queue": self.queue}


class JobFeed(EventTask[JobChanged]):
    """Coalesces committed `JobChanged` events into pushes to the room `jobs`."""

    name = "jobs-feed"

    def __init__(
        self,
        bus: EventBus,
        emitter: Emitter,
        snapshot: Snapshot,
        *,
        interval: float = INTERVAL_SECONDS,
        max_changes: int = MAX_CHANGES,
    ) -> None:
        super().__init__(bus, JobChanged)
        self._emitter = emitter
        self._snapshot = snapshot
        self._interval = interval
        self._max = max_changes
        # By job id, the latest status each; failures apart, so they are never crowded out.
        self._failed: dict[str, JobChanged] = {}
        self._other: dict[str, JobChanged] = {}
        self._more = 0
        self._dirty = asyncio.Event()
        self.pushed = 0

    def _changed(self, event: JobChanged) -> None:
        """After a commit: remember the change (cheap; the push happens in the task)."""
        self._other.pop(event.job_id, None)
        self._failed.pop(event.job_id, None)
        kept = self._failed if event.status == "failed" else self._other
        if len(self._failed) + len(self._other) < self._max:
            kept[event.job_id] = event
        elif event.status == "failed" and self._other:
            # A failure takes the place of the oldest other change.
            self._other.pop(next(iter(self._other)))
            self._failed[event.job_id] = event
            self._more += 1
        else:
            self._more += 1
        self._dirty.set()

    def _take(self) -> tuple[list[dict[str, Any]], int]:
        changes = [event.as_json() for event in (*self._failed.values(), *self._other.values())]
        more = self._more
        self._failed, self._other, self._more = {}, {}, 0
        return changes, more

    async def _run(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            changes, more = self._take()
            try:
                queues: list[dict[str, Any]] | None = await self._snapshot()
            except Exception as exc:
                # The database may be away; the changes still go out, the counts next time.
                log.warning("jobs feed: no queue snapshot: %s", exc)
                queues = None
            data = {"changes": changes, "more": more, "queues": queues}
            try:
                await self._emitter.emit(EVENT, data, room=ROOM, namespace=NAMESPACE)
                self.pushed += 1
            except Exception:
                log.exception("jobs feed: the push failed")
            await asyncio.sleep(self._interval)
