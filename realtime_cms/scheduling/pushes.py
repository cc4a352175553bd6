"""Live: every committed change of a schedule is a notice to the peers of its item's
document, on every node (`Relay.notice`), so an open editor shows it at once.

The notice names the schedule and its new status only: what the schedule is (times, zone,
error) is read over REST, with the reader's permissions. It goes to the peers seated on the
document, so a revoked seat gets nothing more. Sent in commit order; a notice that cannot
be sent (the room gone, Redis down) is not retried: the editor reads the schedules again
when it joins.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any

from realtime_cms.background import EventTask
from realtime_cms.collab.relay import Relay
from realtime_cms.content.binding import document_id
from realtime_cms.events import EventBus
from realtime_cms.scheduling.events import ScheduleChanged

logger = logging.getLogger(__name__)

KIND = "schedule"


def notice_of(event: ScheduleChanged) -> dict[str, Any]:
    """What the peers are told (the `notice` event on /collab, docs/protocol.md)."""
    return {
        "kind": KIND,
        "item_id": event.item_id,
        "schedule_id": event.schedule_id,
        "status": event.new,
        "previous": event.old,
    }


class ScheduleNotices(EventTask[ScheduleChanged]):
    """Sends each committed `ScheduleChanged` to its item's document peers, in order."""

    name = "schedule-notices"

    def __init__(self, bus: EventBus, relay: Relay) -> None:
        super().__init__(bus, ScheduleChanged)
        self._relay = relay
        self._queue: deque[ScheduleChanged] = deque()
        self._ready = asyncio.Event()

    def _changed(self, event: ScheduleChanged) -> None:
        self._queue.append(event)
        self._ready.set()

    async def _run(self) -> None:
        while True:
            await self._ready.wait()
            self._ready.clear()
            while self._queue:
                event = self._queue.popleft()
                try:
                    await self._relay.notice(document_id(event.item_id), notice_of(event))
                except Exception:
                    logger.exception("the notice of schedule %s failed", event.schedule_id)
