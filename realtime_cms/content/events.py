"""What the content domain publishes (`realtime_cms.events.publish`) for others to react to."""

from __future__ import annotations

from dataclasses import dataclass

from realtime_cms.events import Event
from realtime_cms.principal import Principal


@dataclass(frozen=True, slots=True)
class ContentStatusChanged(Event):
    """`actor` moved item `item_id` (now titled `title`, by `author_id`) from `old` to `new`."""

    item_id: int
    title: str
    author_id: int | None
    old: str
    new: str
    actor: Principal


@dataclass(frozen=True, slots=True)
class Mentioned(Event):
    """Item `item_id`'s stored body now mentions `usernames`, which the body it replaced did
    not; `editors` made the change (empty: the server did)."""

    item_id: int
    title: str
    usernames: frozenset[str]
    editors: frozenset[int]
