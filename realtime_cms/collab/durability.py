"""A room's appends in flight and what waits for them, settled by callbacks.

The room queues each accepted update's append in apply order and moves on; acks wait for a
`waiter()`, which completes once everything the room queued before it is committed. No task
is started per update: the store's futures settle the appends through done-callbacks.
"""

from __future__ import annotations

import asyncio
import functools
import logging
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
    by the next `waiter()`, so nothing the room applied stays out of the log while the room
    lives. A waiter fails with Unavailable("store_failed") if an append queued before it
    failed and was not yet queued again when it was created.
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
        self._debt: list[_Append] = []

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
        if self._debt:
            updates = [item.update for item in self._debt]
            merged = merge_updates(*updates) if len(updates) > 1 else updates[0]
            try:
                self._enqueue(_Append(merged, [c for item in self._debt for c in item.committed]))
            except Exception as exc:  # the store has stopped: the debt stays
                failure = Unavailable("The update was not saved; retry", code="store_failed")
                failure.__cause__ = exc
                future.set_exception(failure)
                return future
            self._debt = []
        if self._settled == self._next:
            future.set_result(None)
        else:
            self._waiters.append((self._next, future))
        return future

    def _enqueue(self, item: _Append) -> None:
        committed = self._store.enqueue(self._document_id, item.update)  # raises if stopped
        seq, self._next = self._next, self._next + 1
        self._appends[seq] = item
        committed.add_done_callback(functools.partial(self._settle, seq))

    def _settle(self, seq: int, done: asyncio.Future[int]) -> None:
        item = self._appends.pop(seq)
        error = asyncio.CancelledError() if done.cancelled() else done.exception()
        if error is None:
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
        logger.warning("logging an update of %s failed: %r", self._document_id, error)
        self._debt.append(item)
        failure = Unavailable("The update was not saved; retry", code="store_failed")
        failure.__cause__ = error
        for upto, waiter in self._waiters:
            if upto > seq and not waiter.done():
                waiter.set_exception(failure)
