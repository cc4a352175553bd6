"""What the scheduling domain publishes (`realtime_cms.events.publish`) for others to react to."""

from __future__ import annotations

from dataclasses import dataclass

from realtime_cms.events import Event


@dataclass(frozen=True, slots=True)
class ScheduleChanged(Event):
    """Schedule `schedule_id` of item `item_id` went from `old` to `new` (the same status for
    a change of its times), by `actor_id` (the scheduling user when the worker ran it);
    `created_by` owns it; `error` says why a `failed` one failed."""

    schedule_id: int
    item_id: int
    title: str
    old: str | None
    new: str
    actor_id: int | None
    created_by: int | None
    error: str | None = None
