"""Updates a room holds for their senders until their dependencies arrive, budgeted per sender.

An update whose dependencies the room lacks is not applied, logged or acknowledged: the room
keeps it here (in arrival order per sender), asks the sender for what is missing, and tries
it again once the sender's answer, or another node's change, has arrived. One sender's
budget never touches another's, so a peer sending junk cannot lock anyone else out.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field

from realtime_cms.errors import Invalid, Unavailable

# A sender is asked again for what the room lacks at most this often.
ASK_INTERVAL_SECONDS = 1.0


@dataclass(eq=False, slots=True)
class HeldUpdate:
    """One held update; `integrated` completes once it is in the document and durable."""

    peer_id: str
    update: bytes
    integrated: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


@dataclass(slots=True)
class _Sender:
    updates: deque[HeldUpdate] = field(default_factory=deque)
    size: int = 0
    asked_at: float = float("-inf")


class HeldUpdates:
    """The held updates of one room, per sender, within a count and a byte budget each."""

    def __init__(self, *, max_count: int, max_bytes: int) -> None:
        self._max_count = max_count
        self._max_bytes = max_bytes
        self._senders: dict[str, _Sender] = {}

    def __len__(self) -> int:
        return sum(len(sender.updates) for sender in self._senders.values())

    def senders(self) -> list[str]:
        """The peers that have updates held, in the order they first had one."""
        return list(self._senders)

    def count_of(self, peer_id: str) -> int:
        sender = self._senders.get(peer_id)
        return 0 if sender is None else len(sender.updates)

    def check_budget(self, peer_id: str, size: int) -> None:
        """Raise Invalid("too_many_pending") if holding `size` more bytes breaks the budget."""
        sender = self._senders.get(peer_id)
        count, held = (0, 0) if sender is None else (len(sender.updates), sender.size)
        if count >= self._max_count or held + size > self._max_bytes:
            raise Invalid(
                "Too many of your updates wait for changes the server lacks; sync again",
                code="too_many_pending",
            )

    def hold(self, peer_id: str, update: bytes) -> tuple[HeldUpdate, bool]:
        """Hold the update; also whether to ask its sender for what the room lacks now."""
        self.check_budget(peer_id, len(update))
        sender = self._senders.setdefault(peer_id, _Sender())
        held = HeldUpdate(peer_id, update)
        sender.updates.append(held)
        sender.size += len(update)
        now = time.monotonic()
        ask = now - sender.asked_at >= ASK_INTERVAL_SECONDS
        if ask:
            sender.asked_at = now
        return held, ask

    def first(self, peer_id: str) -> HeldUpdate | None:
        sender = self._senders.get(peer_id)
        return sender.updates[0] if sender is not None and sender.updates else None

    def release(self, held: HeldUpdate) -> bool:
        """Stop holding `held` (integrated, or given up); False if it was not held."""
        sender = self._senders.get(held.peer_id)
        if sender is None or held not in sender.updates:
            return False
        sender.updates.remove(held)
        sender.size -= len(held.update)
        if not sender.updates:
            del self._senders[held.peer_id]
        return True

    def drop(self, peer_id: str, reason: str) -> None:
        """Forget a sender's held updates (it left); whoever waits is told `reason`."""
        sender = self._senders.pop(peer_id, None)
        if sender is not None:
            for held in sender.updates:
                _fail(held, reason)

    def drop_all(self, reason: str) -> None:
        for peer_id in list(self._senders):
            self.drop(peer_id, reason)


def _fail(held: HeldUpdate, code: str) -> None:
    if not held.integrated.done():
        error = Unavailable("The update was not applied; sync and send it again", code=code)
        held.integrated.set_exception(error)
        held.integrated.exception()  # retrieved: nobody may wait for it any more
