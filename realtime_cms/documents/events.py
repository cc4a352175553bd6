"""What the documents domain publishes (`realtime_cms.events.publish`) for others to react to."""

from __future__ import annotations

from dataclasses import dataclass

from realtime_cms.events import Event
from realtime_cms.principal import Level, Principal


@dataclass(frozen=True, slots=True)
class DocumentGranted(Event):
    """`actor` gave user `user_id` `level` on document `document_id` (they had `previous`)."""

    document_id: str
    user_id: int
    level: Level
    previous: str | None
    actor: Principal
