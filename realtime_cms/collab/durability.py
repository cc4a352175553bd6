"""A room's appends in flight and what waits for them, settled by callbacks.

The room queues each accepted update's append in apply order and moves on; acks wait for a
`waiter()`, which completes once everything the room queued before it is committed. No task
is started per update: the store's futures settle the appends through done-callbacks, and a
failed append is written again after a backoff (a timer, not a task).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pycrdt import merge_updates

from realtime_cms.collab.store import UpdateStore
from realtime_cms.errors import Unavailable

logger = logging.getLogger(__name__)

# The changes an append carried and who sent them: handed to `on_change` once committed.
Committed = list[tuple[bytes, Any]]
# Backoff between attempts to write a failed append again (seconds).
_MIN_BACKOFF = 0.05
_MAX_BACKOFF = 2.0


@dataclass(slots=True)
class _Append:
    update: bytes
    committed: Committed = field(default_factory=list)


def retrieve(future: asyncio.Future[Any]) -> None:
    """Mark a future's failure as seen (nobody may wait for it: y-websocket has no acks)."""
    if not future.cancelled():
        future.exception()


class Durability:
    """The appends of one document, numbered in the order they were queued.

    A failed append becomes debt: its update is queued again (merged with any other debt)
    after a backoff, and by the next `waiter()`, so nothing the room applied stays out of
    the log while the room lives. A waiter waits through failures: it completes once
    everything queued before it is committed, the debt included, and fails with
    Unavailable("store_failed") only when the debt cannot be queued again at all (the store
    has stopped). Callers bound their wait themselves (the room's ack deadline).
    """

    def __init__(
        self, document_id: str, store: UpdateStore, on_committed: Callable[[Committed], None]
    ) -> None:
        self._document_id = document_id
        self._store = store
        self._on_committed = on_committed
        self._next = 0
        self._settled = 0
        self._outcomes: set[int] = set()
        self._appends: dict[int, _Append] = {}
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()
        # Waiters that an append failed under: they wait for the debt to be queued again.
        self._blocked: list[asyncio.Future[None]] = []
        self._debt: list[_Append] = []
        self._backoff = _MIN_BACKOFF
        self._retry: asyncio.TimerHandle | None = None

    @property
    def debt(self) -> int:
        """How many failed appends wait to be queued again."""
        return len(self._debt)

    def append(self, update: bytes, changes: bytes | None, sender: Any) -> None:
        """Queue the update's append; `changes` (if any) reach `on_committed` once it commits."""
        self._enqueue(_Append(update, [] if changes is None else [(changes, sender)]))

    def waiter(self) -> asyncio.Future[None]:
        """A future for "everything queued so far is committed" (debt is queued again first)."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.add_done_callback(retrieve)
        if self._debt and not self._requeue_debt():
            future.set_exception(not_saved())
            return future
        if self._settled == self._next and not self._blocked:
            future.set_result(None)
        else:
            self._waiters.append((self._next, future))
        return future

    def close(self) -> None:
        """Stop retrying (the room is gone); waiters of unwritten debt fail."""
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        self._fail_blocked()

    def _requeue_debt(self) -> bool:
        """Queue the merged debt again; False (the debt stays) if the store has stopped."""
        updates = [item.update for item in self._debt]
        merged = merge_updates(*updates) if len(updates) > 1 else updates[0]
        try:
            self._enqueue(_Append(merged, [c for item in self._debt for c in item.committed]))
        except Exception:  # the store has stopped: the debt stays
            logger.warning(
                "%s: %d unwritten updates cannot be queued", self._document_id, len(self._debt)
            )
            self._fail_blocked()
            return False
        self._debt = []
        # Everything blocked now waits for the debt's new append, the last one queued.
        self._waiters.extend((self._next, future) for future in self._blocked)
        self._blocked = []
        return True

    def _fail_blocked(self) -> None:
        blocked, self._blocked = self._blocked, []
        for future in blocked:
            if not future.done():
                future.set_exception(not_saved())

    def _enqueue(self, item: _Append) -> None:
        committed = self._store.enqueue(self._document_id, item.update)  # raises if stopped
        seq, self._next = self._next, self._next + 1
        self._appends[seq] = item
        committed.add_done_callback(functools.partial(self._settle, seq))

    def _settle(self, seq: int, done: asyncio.Future[int]) -> None:
        item = self._appends.pop(seq)
        error = asyncio.CancelledError() if done.cancelled() else done.exception()
        if error is None:
            self._backoff = _MIN_BACKOFF
            if item.committed:
                self._on_committed(item.committed)
        else:
            self._fail(seq, item, error)
        self._outcomes.add(seq)
        while self._settled in self._outcomes:
            self._outcomes.discard(self._settled)
            self._settled += 1
        while self._waiters and self._waiters[0][0] <= self._settled:
            _, waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    def _fail(self, seq: int, item: _Append, error: BaseException) -> None:
        """Keep the append as debt; whoever waited for it waits for its retry instead."""
        logger.warning("logging an update of %s failed: %r", self._document_id, error)
        self._debt.append(item)
        kept: deque[tuple[int, asyncio.Future[None]]] = deque()
        for upto, waiter in self._waiters:
            if upto > seq:
                self._blocked.append(waiter)
            else:
                kept.append((upto, waiter))
        self._waiters = kept
        if self._retry is None:
            delay = self._backoff * random.uniform(0.8, 1.2)
            self._backoff = min(2 * self._backoff, _MAX_BACKOFF)
            self._retry = asyncio.get_running_loop().call_later(delay, self._retry_debt)

    def _retry_debt(self) -> None:
        self._retry = None
        if self._debt:
            self._requeue_debt()


def not_saved() -> Unavailable:
    """The failure of an update that could not be written (nor queued again)."""
    return Unavailable("The update was not saved; send it again", code="store_failed")


def chain_outcome(source: asyncio.Future[None], target: asyncio.Future[None]) -> None:
    """Complete `target` as `source` completes (unless it is done already)."""

    def settle(done: asyncio.Future[None]) -> None:
        if target.done():
            return
        error = not_saved() if done.cancelled() else done.exception()
        if error is None:
            target.set_result(None)
        else:
            target.set_exception(error)

    source.add_done_callback(settle)
