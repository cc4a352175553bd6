"""Autosave: a version of a live content document after a quiet period or many changes.

`Autosave` follows the rooms' `on_change` hook. Only changes made on this node count (a
relayed update has `peer` None: its own node saves it), so one edit burst gives one
autosave however many nodes show it. Saves are attributed to the last editor, take the
content from the binding, and never repeat the latest version's content. Pending saves run
when the document unloads and when the node shuts down.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from realtime_cms.collab.access import content_item_id
from realtime_cms.collab.hooks import Hooks
from realtime_cms.collab.peer import Peer
from realtime_cms.content.binding import ContentBinding
from realtime_cms.db import SessionFactory, transaction
from realtime_cms.errors import Invalid, NotFound
from realtime_cms.models.versions import Version
from realtime_cms.principal import system
from realtime_cms.rbac.catalog import PERMISSIONS
from realtime_cms.versions.service import record_version

logger = logging.getLogger(__name__)

_SYSTEM = system(frozenset(PERMISSIONS))


@dataclass(slots=True)
class _Pending:
    user_id: int | None
    changes: int = 0
    timer: asyncio.TimerHandle | None = None


def _item_of(document_id: str) -> int | None:
    try:
        return content_item_id(document_id)
    except Invalid:
        return None


class Autosave:
    """Debounced autosaves of `content:<id>` documents; use as `async with` (exit flushes)."""

    def __init__(
        self,
        sessions: SessionFactory,
        binding: ContentBinding,
        *,
        quiet_seconds: float,
        every_changes: int,
    ) -> None:
        self._sessions = sessions
        self._binding = binding
        self._quiet = quiet_seconds
        self._every = every_changes
        self._pending: dict[int, _Pending] = {}
        self._saving: set[asyncio.Task[Version | None]] = set()
        # One save at a time on this node: autosaves are rare, and it keeps SQLite calm.
        self._lock = asyncio.Lock()
        self._open = False
        self._hooks: Hooks | None = None

    def attach(self, hooks: Hooks) -> None:
        """Follow the rooms' changes and unloads (until the autosave stops)."""
        hooks.on_change.append(self.changed)
        hooks.on_unload.append(self.unloaded)
        self._hooks = hooks

    async def __aenter__(self) -> Self:
        if self._open:
            raise RuntimeError("autosave already started")
        self._open = True
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.flush_all()
        self._open = False
        if self._hooks is not None:
            self._hooks.on_change.remove(self.changed)
            self._hooks.on_unload.remove(self.unloaded)
            self._hooks = None

    async def changed(self, document_id: str, update: bytes, peer: Peer | None) -> None:
        """The `on_change` hook: count the change, save now or after the quiet period."""
        item_id = _item_of(document_id)
        if peer is None or item_id is None or not self._open:
            return
        pending = self._pending.setdefault(item_id, _Pending(peer.principal.user_id))
        pending.user_id = peer.principal.user_id
        pending.changes += 1
        if pending.timer is not None:
            pending.timer.cancel()
        if pending.changes >= self._every:
            self._start(item_id)
        else:
            loop = asyncio.get_running_loop()
            pending.timer = loop.call_later(self._quiet, self._start, item_id)

    async def unloaded(self, document_id: str) -> None:
        """The `on_unload` hook: save what the document's last changes left pending."""
        item_id = _item_of(document_id)
        if item_id is not None:
            await self.flush(item_id)

    def _start(self, item_id: int) -> None:
        pending = self._pending.pop(item_id, None)
        if pending is None:
            return
        task = asyncio.ensure_future(self.save(item_id, pending.user_id))
        self._saving.add(task)
        task.add_done_callback(self._saving.discard)

    async def flush(self, item_id: int) -> Version | None:
        """Save the item's pending changes now (None when nothing was pending or new)."""
        pending = self._pending.pop(item_id, None)
        if pending is None:
            return None
        if pending.timer is not None:
            pending.timer.cancel()
        return await self.save(item_id, pending.user_id)

    async def flush_all(self) -> None:
        """Save every pending change and wait for the saves already running."""
        for item_id in list(self._pending):
            await self.flush(item_id)
        if self._saving:
            await asyncio.wait(set(self._saving))

    @property
    def pending(self) -> frozenset[int]:
        """Items with changes not yet autosaved."""
        return frozenset(self._pending)

    async def save(self, item_id: int, user_id: int | None) -> Version | None:
        """An autosave of the item's current content, unless it equals the latest version;
        failures are logged (the next change tries again)."""
        async with self._lock:
            try:
                state = await self._binding.current(item_id)
                async with transaction(self._sessions) as db:
                    return await record_version(
                        db,
                        _SYSTEM,
                        item_id=item_id,
                        state=state,
                        user_id=user_id,
                        is_autosave=True,
                        change_type="autosave",
                        skip_unchanged=True,
                    )
            except NotFound:
                return None  # the item was deleted meanwhile
            except Exception:
                logger.exception("autosaving content item %s failed", item_id)
                return None
