"""Autosave: a version of a live content document after a quiet period or many changes,
saved by a durable `versions.autosave` job so that a crash loses no due autosave.

`Autosave` follows the rooms' `on_change` hook. Only changes made on this node count (a
relayed update has `peer` None: its own node saves it), so one edit burst gives one
autosave however many nodes show it. The first change of a quiet window on this node queues
(in a task of its own, never blocking the hook) the item's autosave job, not before a safety
net time: the dedupe key `autosave:<id>` keeps one pending per item across nodes. The quiet
period, every `every_changes` changes, the document's unload and the node's shutdown then
make that job due now, attributed to the last editor. Should the node die first, the job
runs at its safety net time anyway. The job (realtime_cms/versions/jobs.py) saves the
content wherever the document is loaded, and never repeats the latest version's content.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Self

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from realtime_cms.collab.access import content_item_id
from realtime_cms.collab.hooks import Hooks
from realtime_cms.collab.peer import Peer
from realtime_cms.db import SessionFactory, transaction
from realtime_cms.errors import Invalid
from realtime_cms.jobs.queue import enqueue, make_due
from realtime_cms.models.base import utcnow
from realtime_cms.models.workers import WorkerJob
from realtime_cms.versions.jobs import AUTOSAVE, AutosavePayload, autosave_key

logger = logging.getLogger(__name__)

# The safety net: a window's job is due this long after its quiet period would end, so that
# a node that stays alive saves first (through the quiet timer) and a dead one is covered.
SAFETY_MARGIN_SECONDS = 30.0
# While the item's autosave job is running (it may have read the content before this
# window's changes), a new one cannot be queued yet: try again after these pauses, for at
# most BUSY_SECONDS (a running job ends well within its 60 s timeout or is reclaimed).
BUSY_PAUSES = (0.1, 0.25, 0.5, 1.0, 2.0)
BUSY_SECONDS = 600.0


@dataclass(slots=True)
class _Window:
    """This node's changes to one item since its last autosave was made due."""

    user_id: int | None
    # Until when a queued job covers the window's changes (as far as this node knows): a
    # change later than this queues a job again (a burst outlasting its safety net).
    covered_until: datetime
    changes: int = 0
    timer: asyncio.TimerHandle | None = None
    # Queueing the window's job (its safety net).
    queueing: asyncio.Task[None] | None = None


def _item_of(document_id: str) -> int | None:
    try:
        return content_item_id(document_id)
    except Invalid:
        return None


async def _queued_at(db: AsyncSession, dedupe_key: str) -> datetime | None:
    """When the queued job holding `dedupe_key` is due (None: no such job)."""
    return await db.scalar(
        sa.select(WorkerJob.run_at).where(
            WorkerJob.dedupe_key == dedupe_key, WorkerJob.status == "queued"
        )
    )


class Autosave:
    """Debounced, durable autosaves of `content:<id>` documents; use as `async with` (exit
    makes every pending autosave due)."""

    def __init__(
        self,
        sessions: SessionFactory,
        *,
        quiet_seconds: float,
        every_changes: int,
        safety_seconds: float | None = None,
    ) -> None:
        self._sessions = sessions
        self._quiet = quiet_seconds
        self._every = every_changes
        self._safety = (
            quiet_seconds + SAFETY_MARGIN_SECONDS if safety_seconds is None else safety_seconds
        )
        self._windows: dict[int, _Window] = {}
        self._tasks: set[asyncio.Task[None]] = set()
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
        """The `on_change` hook: count the change; queue the window's job on its first one;
        make the job due after enough changes, or else after the quiet period."""
        item_id = _item_of(document_id)
        if peer is None or item_id is None or not self._open:
            return
        now = utcnow()
        window = self._windows.setdefault(item_id, _Window(peer.principal.user_id, now))
        window.user_id = peer.principal.user_id
        window.changes += 1
        if now >= window.covered_until and (window.queueing is None or window.queueing.done()):
            window.queueing = self._spawn(self._safety_net(item_id, window))
        if window.timer is not None:
            window.timer.cancel()
        if window.changes >= self._every:
            self._make_due(item_id)
        else:
            loop = asyncio.get_running_loop()
            window.timer = loop.call_later(self._quiet, self._make_due, item_id)

    async def unloaded(self, document_id: str) -> None:
        """The `on_unload` hook: make the document's pending autosave due."""
        item_id = _item_of(document_id)
        if item_id is not None:
            await self.flush(item_id)

    def _make_due(self, item_id: int) -> None:
        window = self._windows.pop(item_id, None)
        if window is not None:
            self._spawn(self._due(item_id, window))

    async def flush(self, item_id: int) -> None:
        """Make the item's pending autosave due now (nothing when none is pending)."""
        window = self._windows.pop(item_id, None)
        if window is not None:
            await self._due(item_id, window)

    async def flush_all(self) -> None:
        """Make every pending autosave due, and wait until every job is queued."""
        for item_id in list(self._windows):
            await self.flush(item_id)
        await self.drain()

    async def drain(self) -> None:
        """Wait until the jobs this node is queueing or making due are in the database."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    @property
    def pending(self) -> frozenset[int]:
        """Items with changes whose autosave is not yet due (on this node's side)."""
        return frozenset(self._windows)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _safety_net(self, item_id: int, window: _Window) -> None:
        now = utcnow()
        not_before = now + timedelta(seconds=self._safety)
        window.covered_until = not_before
        due = await self._cover(item_id, window.user_id, not_before)
        if due is None:
            window.covered_until = now  # failed (logged): the next change tries again
        elif due < not_before:
            # Covered by a job queued before, which may run before this window ends: look
            # again then (or, if it is due already, after a safety period).
            window.covered_until = due if due > now else not_before

    async def _due(self, item_id: int, window: _Window) -> None:
        if window.timer is not None:
            window.timer.cancel()
        if window.queueing is not None:
            await asyncio.wait({window.queueing})  # the safety net first: then it is moved
        await self._cover(item_id, window.user_id, None)

    async def _cover(
        self, item_id: int, user_id: int | None, not_before: datetime | None
    ) -> datetime | None:
        """Make sure a queued job will save the changes made so far: one due at `not_before`
        (None: now, moving the queued one forward), or one that was queued already. When
        the covering job is due; None when that failed (logged)."""
        payload = AUTOSAVE.validate(AutosavePayload(item_id=item_id, user_id=user_id))
        key = autosave_key(item_id)
        deadline = asyncio.get_running_loop().time() + BUSY_SECONDS
        attempt = 0
        while asyncio.get_running_loop().time() < deadline:
            try:
                async with transaction(self._sessions) as db:
                    if not_before is None and await make_due(db, key, payload, AUTOSAVE.queue):
                        return utcnow()
                    if await enqueue(db, AUTOSAVE, payload, run_at=not_before, dedupe_key=key):
                        return not_before or utcnow()
                    if not_before is not None and (due := await _queued_at(db, key)):
                        return due
            except Exception:
                logger.exception("queueing the autosave of content item %s failed", item_id)
                return None
            # The item's job is running, or (due now) was queued by another node meanwhile.
            await asyncio.sleep(BUSY_PAUSES[min(attempt, len(BUSY_PAUSES) - 1)])
            attempt += 1
        logger.warning("the autosave job of content item %s stayed busy: not queued", item_id)
        return None
