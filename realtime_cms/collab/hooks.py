"""A room's lifecycle hooks: named lists of async callbacks, and how they are run.

Rooms run hooks, so this module knows a room only as the `LoadedRoom` protocol (what a load
hook is told of the room just opened); it does not import `collab.room`.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import ParamSpec, Protocol

from realtime_cms.collab.durability import Committed, retrieve
from realtime_cms.collab.peer import Peer

logger = logging.getLogger(__name__)

P = ParamSpec("P")


class LoadedRoom(Protocol):
    """A room as its load hooks see it (`collab.room.DocumentRoom` is one)."""

    @property
    def document_id(self) -> str: ...

    def state_vector(self) -> bytes:
        """The room's Yjs state vector."""
        ...


@dataclass(slots=True)
class Hooks:
    """Named lifecycle hooks, run in registration order; a failing hook is only logged.

    Append async callbacks to a list: `on_load(document_id, room)`, `on_change(document_id,
    update, peer)` (peer None for a remote update), `on_awareness(document_id,
    awareness_update, peer)` (also the removals when a peer leaves; not for awareness another
    node relayed), `on_disconnect(document_id, peer)`, `on_unload(document_id)`.
    Persistence is not a hook: it is mandatory, and a peer's change reaches `on_change` only
    once it is durable (a remote one at once: another node logged it).
    """

    on_load: list[Callable[[str, LoadedRoom], Awaitable[None]]] = field(default_factory=list)
    on_change: list[Callable[[str, bytes, Peer | None], Awaitable[None]]] = field(
        default_factory=list
    )
    on_awareness: list[Callable[[str, bytes, Peer], Awaitable[None]]] = field(default_factory=list)
    on_disconnect: list[Callable[[str, Peer], Awaitable[None]]] = field(default_factory=list)
    on_unload: list[Callable[[str], Awaitable[None]]] = field(default_factory=list)
    # Committed changes waiting for `on_change`, and whether a task is handing them over.
    _committed: deque[tuple[str, Committed]] = field(default_factory=deque, init=False, repr=False)
    _draining: bool = field(default=False, init=False, repr=False)

    def committed(self, document_id: str, committed: Committed) -> None:
        """Hand a room's committed changes to the `on_change` hooks, in commit order.

        One task hands over what every room committed meanwhile (a group commit settles
        many appends at once), instead of a task per commit.
        """
        if not self.on_change:
            return
        self._committed.append((document_id, committed))
        if not self._draining:
            self._draining = True
            asyncio.ensure_future(self._drain_committed()).add_done_callback(retrieve)

    async def _drain_committed(self) -> None:
        try:
            while self._committed:
                document_id, committed = self._committed.popleft()
                for changes, peer in committed:
                    await run_hooks(self.on_change, document_id, changes, peer)
        finally:
            self._draining = False


async def run_hooks(
    callbacks: Sequence[Callable[P, Awaitable[None]]], *args: P.args, **kwargs: P.kwargs
) -> None:
    """Await each callback in order; log (never raise) what one of them raises."""
    for callback in list(callbacks):
        try:
            await callback(*args, **kwargs)
        except Exception:
            logger.exception("hook %s failed", getattr(callback, "__qualname__", callback))
