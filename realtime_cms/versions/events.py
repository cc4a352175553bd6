"""What the versions domain publishes (`realtime_cms.events.publish`) for others to react to."""

from __future__ import annotations

from dataclasses import dataclass

from realtime_cms.events import Event


@dataclass(frozen=True, slots=True)
class VersionCreated(Event):
    """Version `version_id` (number `version_number`) of item `item_id` was stored, by
    `user_id` (None: the server); `change_type` is manual, restore, or the autosave's."""

    version_id: int
    item_id: int
    version_number: int
    user_id: int | None
    is_autosave: bool
    change_type: str
