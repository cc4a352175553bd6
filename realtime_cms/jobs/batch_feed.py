"""Live batch progress for operators: `BatchChanged` events, pushed as `batches` events.

Whatever moves a batch (its creation, its first item claimed, an item ending, the batch
ending) emits `BatchChanged` in its transaction. Once committed, the process' feed (a
`CoalescedFeed`, realtime_cms/jobs/pushes.py) pushes at most one `batches` event every
0.5 s to the room `jobs` of `/notifications`, where holders of `jobs.view` sit:
`{"batches": [{"id", "status", "total", "completed", "failed"}]}`, each changed batch once.

The event carries only the batch id: its counters are read fresh for the push. Counts of
one batch commit one after another (its row is locked), but their after-commit events may
reach the feed in another order, and a push must never show a batch behind a commit that
caused it. Like job pushes, these are hints: `GET /api/v1/batches/{id}` is the truth.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from realtime_cms.db import SessionFactory
from realtime_cms.events import EventBus
from realtime_cms.jobs.pushes import CoalescedFeed, Pushed
from realtime_cms.models.workers import BatchJob

if TYPE_CHECKING:
    from realtime_cms.runtime import Emitter

EVENT = "batches"
_PUSHED = (BatchJob.id, BatchJob.status, BatchJob.total, BatchJob.completed, BatchJob.failed)


@dataclass(frozen=True, slots=True)
class BatchChanged(Pushed):
    """Batch `batch_id`'s status or counters changed."""

    batch_id: int

    @property
    def key(self) -> Hashable:
        return self.batch_id

    def as_json(self) -> dict[str, Any]:
        return {"id": self.batch_id}


class _Fresh:
    """An emitter that sends the batches a push names as they are stored now."""

    def __init__(self, emitter: Emitter, sessions: SessionFactory) -> None:
        self._emitter = emitter
        self._sessions = sessions

    async def emit(self, event: str, data: Any = None, **kwargs: Any) -> None:
        ids = [item["id"] for item in data[EVENT]]
        async with self._sessions() as db:
            rows = await db.execute(sa.select(*_PUSHED).where(BatchJob.id.in_(ids)))
            found = [dict(row._mapping) for row in rows]
        # A batch deleted meanwhile is left out; a push about none is not sent.
        if found:
            await self._emitter.emit(event, {EVENT: found}, **kwargs)


def feed(bus: EventBus, emitter: Emitter, sessions: SessionFactory) -> CoalescedFeed[BatchChanged]:
    """The process' live feed of batch progress to the room `jobs`."""
    return CoalescedFeed(bus, _Fresh(emitter, sessions), BatchChanged, EVENT)
