"""One live document: its CRDT, awareness states and peers; knows nothing of any transport.

Transports implement `Peer` and reach rooms through the `RoomManager`. Every update a peer
sends is tried on a shadow copy of the document first, then applied to the live document,
queued for the durable log (in apply order) and sent to the other peers at once; the
sender's ack and the `on_change` hooks wait for the commit. A quiet room drops the shadow
(`shed_shadow`, called by the manager's sweep); the next update rebuilds it. An update
whose dependencies the room lacks is held for its sender (`held.py`), who is asked for what
is missing; it is acknowledged only once it is in the document.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pycrdt import Doc, Subscription, merge_updates

from realtime_cms.collab.access import Level, can_write
from realtime_cms.collab.awareness_book import AwarenessBook
from realtime_cms.collab.durability import Committed, Durability, chain_outcome, retrieve
from realtime_cms.collab.held import HeldUpdate, HeldUpdates
from realtime_cms.collab.hooks import Hooks, run_hooks
from realtime_cms.collab.peer import Peer, RoomLimits
from realtime_cms.collab.protocol import (
    check_state_vector,
    decode_awareness_update,
    encode_awareness_update,
)
from realtime_cms.collab.store import (
    CorruptUpdateError,
    Rows,
    StoredDocument,
    UpdateStore,
    apply_after_pending,
    apply_rows,
    pycrdt_errors,
)
from realtime_cms.errors import Conflict, Forbidden, Invalid, PayloadTooLarge, Unavailable

logger = logging.getLogger(__name__)

# Never swallowed by the guards around pycrdt, whose panics are BaseExceptions too.
_FATAL = (asyncio.CancelledError, KeyboardInterrupt, SystemExit)
# The row id of an update being tried (it has no log id yet), and of one from another node.
_CANDIDATE = -1
_REMOTE = 0
# The row id of an update whose append is queued (its id is known only once committed).
_QUEUED = -2


def _replay(stored: StoredDocument) -> tuple[Doc, Rows]:
    """Rebuild a document from its log: the doc and the log rows still pending in it."""
    doc: Doc = Doc()
    return doc, stored.apply_to(doc)


@dataclass(slots=True)
class _Member:
    peer: Peer
    level: Level


@dataclass(frozen=True, slots=True)
class _Accepted:
    """An update the shadow took: what to log, and what it changed (to send on)."""

    logged: bytes
    changes: bytes | None
    waits: bool


def _merged(changes: Sequence[bytes]) -> bytes | None:
    """One update for the changes of several transactions; None when there were none."""
    if len(changes) > 1:
        return merge_updates(*changes)
    return changes[0] if changes else None


class DocumentRoom:
    """The live state of one open document; create rooms through `RoomManager.join`."""

    def __init__(
        self,
        document_id: str,
        doc: Doc,
        *,
        store: UpdateStore,
        limits: RoomLimits,
        hooks: Hooks,
        pending: Sequence[tuple[int, bytes]] = (),
    ) -> None:
        self.document_id = document_id
        self._doc = doc
        self._store = store
        self._limits = limits
        self._hooks = hooks
        # Log rows whose dependencies have not arrived. An update that moves the state vector
        # re-applies them: pycrdt does not always integrate a pending update once its
        # dependencies arrive.
        self._pending: Rows = list(pending)
        self._shadow: Doc | None = None
        self._shadow_subscription: Subscription | None = None
        self._shadow_changes: list[bytes] = []
        # Event loop time of the latest update tried on the shadow (see `shed_shadow`).
        self._shadow_used_at = 0.0
        self._members: dict[str, _Member] = {}
        self._awareness = AwarenessBook(limits.max_awareness_clients)
        self._lock = asyncio.Lock()
        self._durability = Durability(document_id, store, self._committed)
        self._held = HeldUpdates(max_count=limits.max_pending, max_bytes=limits.max_pending_bytes)
        self._closed = False

    @classmethod
    async def load(
        cls, document_id: str, *, store: UpdateStore, limits: RoomLimits, hooks: Hooks
    ) -> DocumentRoom:
        """Build the room from the log (snapshot, then updates); errors propagate."""
        stored = await store.load(document_id)
        doc, pending = await asyncio.to_thread(_replay, stored)
        return cls(document_id, doc, store=store, limits=limits, hooks=hooks, pending=pending)

    @property
    def peers(self) -> list[Peer]:
        return [member.peer for member in self._members.values()]

    @property
    def is_idle(self) -> bool:
        return not self._members

    @property
    def pending_count(self) -> int:
        """How many logged updates (another node's) still wait for their dependencies."""
        return len(self._pending)

    @property
    def held_count(self) -> int:
        """How many peers' updates are held for dependencies the room lacks."""
        return len(self._held)

    @property
    def holds_shadow(self) -> bool:
        """Whether the shadow copy is built (a quiet room drops it: `shed_shadow`)."""
        return self._shadow is not None

    @property
    def has_unwritten(self) -> bool:
        """Whether applied updates are not in the log yet (failed appends wait for a retry)."""
        return self._durability.debt > 0

    def level_of(self, peer_id: str) -> Level | None:
        member = self._members.get(peer_id)
        return member.level if member else None

    def add_peer(self, peer: Peer, level: Level) -> None:
        """Seat a peer (or change its level); `RoomManager.join` is the way in."""
        if self._closed:
            raise RuntimeError(f"room {self.document_id} is closed")
        member = self._members.setdefault(peer.id, _Member(peer, level))
        if member.peer is not peer:
            raise ValueError(f"another peer has the id {peer.id!r}")
        member.level = level

    def state_vector(self) -> bytes:
        return self._doc.get_state()

    def sync_step1_reply(self, state_vector: bytes) -> bytes:
        """The update a peer with `state_vector` is missing (its sync step 2)."""
        try:
            check_state_vector(state_vector)
            return self._doc.get_update(state_vector)
        except _FATAL:
            raise
        except BaseException as exc:
            raise Invalid("Malformed state vector", code="invalid_state_vector") from exc

    async def apply_update(self, peer: Peer, update: bytes, *, hold: bool = True) -> None:
        """Check, apply and send on a writer's update; returns once it is durable.

        Returning means every change the room held when the update arrived is in the log,
        so a duplicate of a change still being written waits for it too.
        """
        await (await self.accept_update(peer, update, hold=hold))

    async def accept_update(
        self, peer: Peer, update: bytes, *, hold: bool = True, deadline: float | None = None
    ) -> asyncio.Future[None]:
        """Check, apply and send on a writer's update at once; the future completes once it
        is in the document and durable (see `apply_update`), or fails by `deadline` (event
        loop time; by default the ack deadline from now) with Unavailable:
        "store_unavailable" (not committed in time: the room keeps writing it, the client
        keeps it and sends it again), "store_failed" (it could not even be queued),
        "missing_dependencies" (it was held and what it depends on did not arrive). Raises
        Invalid("too_many_pending") when the sender's held budget is spent.

        Peers get the update before its commit, as in every Yjs server: a peer may hold a
        change the log lost if the process dies, and whoever sent it was never told it was
        saved, so its client sends it again. A failed commit is kept as the room's debt and
        written again after a backoff: nothing the room applied is left out of the log while
        the room lives. An update whose dependencies the room lacks is held, unapplied, and
        its sender asked for what is missing (`Peer.send_sync_request`); with `hold` False
        (a caller that cannot be asked) it is refused at once, Conflict
        "missing_dependencies". Once the lock is held, nothing here waits until the append
        is queued, so a cancelled caller cannot leave an update applied but not logged.
        """
        if len(update) > self._limits.max_update_bytes:
            raise PayloadTooLarge("The update is too large", code="update_too_large")
        async with self._lock:
            self._check_open()
            if not can_write(self._require_member(peer).level):
                raise Forbidden("Read-only access to this document", code="read_only")
            if deadline is None:
                deadline = asyncio.get_running_loop().time() + self._limits.ack_deadline_seconds
            return await self._accept(peer, update, hold=hold, deadline=deadline)

    async def apply_remote(self, update: bytes) -> None:
        """Apply an update another node has logged already: checked, not logged again."""
        async with self._lock:
            self._check_open()
            accepted = self._try_on_shadow(update)
            if accepted is not None:
                self._apply_live((_REMOTE, update), accepted)
                await self._send_changes(accepted, sender=None)
                if accepted.changes is not None:
                    for peer_id in self._held.senders():
                        await self._retry_held(peer_id)
        if accepted is not None and accepted.changes is not None:
            await run_hooks(self._hooks.on_change, self.document_id, accepted.changes, None)

    async def _accept(
        self, peer: Peer, update: bytes, *, hold: bool, deadline: float
    ) -> asyncio.Future[None]:
        """A writer's update, under the lock: applied and logged, or held, or a duplicate."""
        accepted = self._try_on_shadow(update)
        if accepted is not None and accepted.waits:
            self._drop_shadow()  # it holds the update, pending: the live document will not
            if not hold:
                raise Conflict(
                    "The update depends on changes the document lacks; send those too",
                    code="missing_dependencies",
                )
            try:
                held, ask = self._held.hold(peer.id, update)
            except Invalid:
                # Refuse them all: the sender syncs again from scratch, with a budget free.
                self._held.drop(peer.id, "too_many_pending")
                raise
            if ask:
                await self._send_to(
                    peer, lambda p: p.send_sync_request(self.document_id, self.state_vector())
                )
            return self._acked_by(deadline, held.integrated, held)
        if accepted is not None:
            self._queue_append(accepted, peer)
            self._apply_live((_QUEUED, update), accepted)
            await self._send_changes(accepted, sender=peer)
        durable = self._durability.waiter()
        if accepted is not None and accepted.changes is not None and self._held.count_of(peer.id):
            await self._retry_held(peer.id)
        return self._acked_by(deadline, durable)

    async def _retry_held(self, peer_id: str) -> None:
        """Try a sender's held updates again, in order, until one still waits."""
        while (held := self._held.first(peer_id)) is not None:
            member = self._members.get(peer_id)
            if member is None:
                self._held.drop(peer_id, "not_joined")
                return
            accepted = self._try_on_shadow(held.update)
            if accepted is not None and accepted.waits:
                self._drop_shadow()
                return
            self._held.release(held)
            if accepted is not None:
                try:
                    self._queue_append(accepted, member.peer)
                except Unavailable as exc:
                    held.integrated.set_exception(exc)
                    return
                self._apply_live((_QUEUED, held.update), accepted)
                await self._send_changes(accepted, sender=member.peer)
            chain_outcome(self._durability.waiter(), held.integrated)

    def _acked_by(
        self, deadline: float, durable: asyncio.Future[None], held: HeldUpdate | None = None
    ) -> asyncio.Future[None]:
        """`durable`, or a failure once `deadline` passes: "missing_dependencies" if
        the update is still held then, "store_unavailable" if its commit has not come."""
        loop = asyncio.get_running_loop()
        ack: asyncio.Future[None] = loop.create_future()
        ack.add_done_callback(retrieve)

        def expire() -> None:
            if ack.done():
                return
            if held is not None and self._held.release(held):
                message, code = "What the update depends on did not arrive", "missing_dependencies"
            else:
                message = "Not saved yet; keep the update and send it again"
                code = "store_unavailable"
            ack.set_exception(Unavailable(message, code=code))

        timer = loop.call_at(deadline, expire)
        durable.add_done_callback(lambda _: timer.cancel())
        chain_outcome(durable, ack)
        return ack

    def _committed(self, committed: Committed) -> None:
        """Peers' changes are durable: hand them to the `on_change` hooks (the relay to other
        nodes among them, so that no other node holds a change this one may still lose)."""
        self._hooks.committed(self.document_id, committed)

    def _queue_append(self, accepted: _Accepted, peer: Peer) -> None:
        """Queue the append; if it cannot even be queued (the store has stopped), forget
        the shadow, which holds the update the live document will not get."""
        try:
            self._durability.append(accepted.logged, accepted.changes, peer)
        except Exception as exc:
            self._drop_shadow()
            raise Unavailable("The update was not saved; retry", code="store_failed") from exc

    def _apply_live(self, row: tuple[int, bytes], accepted: _Accepted) -> None:
        """Apply to the live document what the shadow took. When nothing waited before and
        nothing waits now, the twin's verdict stands and one plain apply is enough."""
        if not self._pending and not accepted.waits:
            with pycrdt_errors(f"update {row[0]}"):
                self._doc.apply_update(row[1])
        else:
            self._pending = apply_after_pending(self._doc, self._pending, row)

    def _try_on_shadow(self, update: bytes) -> _Accepted | None:
        """Apply to the shadow; None when the update brings nothing new (a duplicate).

        A fully integrated update is logged as the changes it made (a peer's sync step 2
        repeats what the room has). One left pending (`waits`) leaves the shadow holding it:
        a peer's is then held and the shadow dropped; another node's is kept as sent.
        """
        shadow = self._shadow_doc()
        self._shadow_changes.clear()
        try:
            row = (_CANDIDATE, update)
            waiting = apply_after_pending(shadow, self._pending, row, self._shadow_changes)
            waits = any(row_id == _CANDIDATE for row_id, _ in waiting)
        except BaseException as exc:
            self._drop_shadow()
            if isinstance(exc, CorruptUpdateError):
                raise Invalid("The update cannot be applied", code="invalid_update") from exc
            raise
        changes = _merged(self._shadow_changes)
        if waits:
            return _Accepted(update, changes, waits=True)
        return None if changes is None else _Accepted(changes, changes, waits=False)

    def shed_shadow(self, now: float) -> bool:
        """Drop the shadow if no update was tried on it for `limits.shadow_idle_seconds`
        by `now` (event loop time); whether it was dropped. It holds as much history as the
        live document, and the next update rebuilds it from that document."""
        if (
            self._shadow is None
            # Not while an update is being handled: it is using the shadow.
            or self._lock.locked()
            or now - self._shadow_used_at < self._limits.shadow_idle_seconds
        ):
            return False
        self._drop_shadow()
        return True

    def _shadow_doc(self) -> Doc:
        """The live document's twin (pending rows included), rebuilt after a failure or
        once the room was quiet."""
        self._shadow_used_at = asyncio.get_running_loop().time()
        if self._shadow is None:
            shadow: Doc = Doc()
            shadow.apply_update(self._doc.get_update())
            apply_rows(shadow, self._pending)
            # The callback holds the list, not the room: pycrdt objects are invisible to
            # Python's cycle collector, so room -> shadow -> room would never be freed.
            changes = self._shadow_changes
            self._shadow_subscription = shadow.observe(lambda event: changes.append(event.update))
            self._shadow = shadow
        return self._shadow

    def _drop_shadow(self) -> None:
        """Forget the shadow, unobserved first: pycrdt's observer holds its Doc (Doc -> Rust
        callback -> Doc), a cycle the collector cannot see, so an observed Doc is never freed."""
        if self._shadow is not None and self._shadow_subscription is not None:
            self._shadow.unobserve(self._shadow_subscription)
        self._shadow, self._shadow_subscription = None, None
        self._shadow_changes.clear()

    async def _send_changes(self, accepted: _Accepted, sender: Peer | None) -> None:
        if accepted.changes is None:
            return
        # The hot path: one direct call per peer (no closure), every peer the same bytes
        # object (transports cache their encoding of it).
        changes, document_id = accepted.changes, self.document_id
        for member in list(self._members.values()):
            if member.peer is not sender:
                try:
                    await member.peer.send_update(document_id, changes)
                except Exception:
                    logger.exception("sending to peer %s on %s failed", member.peer.id, document_id)

    async def send_notice(self, notice: Mapping[str, Any]) -> None:
        """Send `notice` to every seated peer (each failure logged, the others still told)."""
        document_id = self.document_id
        for member in list(self._members.values()):
            try:
                await member.peer.send_notice(document_id, notice)
            except Exception:
                logger.exception(
                    "sending a notice to peer %s on %s failed", member.peer.id, document_id
                )

    def _check_open(self) -> None:
        if self._closed:
            raise Unavailable("The document was closed; join it again", code="room_closed")

    def _require_member(self, peer: Peer) -> _Member:
        member = self._members.get(peer.id)
        if member is None or member.peer is not peer:
            raise Forbidden("Join the document first", code="not_joined")
        return member

    async def apply_awareness(self, peer: Peer, awareness_update: bytes) -> None:
        """Record and send on a peer's awareness entries (cursors); readers may send them.
        Each state is stamped with the sender's identity (`awareness_book.stamped`)."""
        self._require_member(peer)
        limit = self._limits.max_awareness_bytes
        if len(awareness_update) > limit:
            raise PayloadTooLarge("The awareness update is too large", code="awareness_too_large")
        entries = decode_awareness_update(awareness_update, max_state_bytes=limit)
        accepted = self._awareness.record_local(peer.id, peer.principal, entries)
        if not accepted:
            return
        encoded = encode_awareness_update(accepted)
        await self._broadcast(lambda p: p.send_awareness(self.document_id, encoded), peer)
        await run_hooks(self._hooks.on_awareness, self.document_id, encoded, peer)

    async def apply_remote_awareness(self, awareness_update: bytes) -> None:
        """Record and send to every local peer the awareness entries another node relayed."""
        limit = self._limits.max_awareness_bytes
        entries = decode_awareness_update(awareness_update, max_state_bytes=limit)
        accepted = self._awareness.record_remote(entries)
        if accepted:
            encoded = encode_awareness_update(accepted)
            await self._broadcast(lambda p: p.send_awareness(self.document_id, encoded), None)

    def awareness_of(self, client_id: int) -> tuple[int, dict[str, Any] | None] | None:
        """The clock and state recorded for an awareness client id, if any."""
        return self._awareness.state_of(client_id)

    def awareness_snapshot(self) -> bytes:
        """Every present client's state as one awareness update, for a peer that joins."""
        return self._awareness.snapshot()

    async def remove_peer(self, peer: Peer) -> None:
        """Drop the peer and tell the others its awareness states are gone (no ghosts)."""
        member = self._members.get(peer.id)
        if member is None or member.peer is not peer:
            return
        del self._members[peer.id]
        self._held.drop(peer.id, "not_joined")
        removed = self._awareness.forget_peer(peer.id)
        if removed:
            encoded = encode_awareness_update(removed)
            await self._broadcast(lambda p: p.send_awareness(self.document_id, encoded), None)
            await run_hooks(self._hooks.on_awareness, self.document_id, encoded, peer)
        await run_hooks(self._hooks.on_disconnect, self.document_id, peer)

    async def set_level(self, peer_id: str, level: Level | None) -> None:
        """Change a seated peer's level and tell it; None revokes access and drops it."""
        member = self._members.get(peer_id)
        if member is None:
            return
        if level is None:
            await self.remove_peer(member.peer)
        else:
            member.level = level
        await self._send_to(member.peer, lambda p: p.send_level(self.document_id, level))

    async def saved_by(self, deadline: float) -> None:
        """Return once everything the room applied so far is in the log; raise Unavailable
        "store_unavailable" if that has not happened by `deadline` (event loop time)."""
        async with self._lock:
            durable = self._durability.waiter()
        await self._acked_by(deadline, durable)

    async def drain(self, give_up_after: float | None = None) -> None:
        """Wait until every update handed to the room so far is applied or refused, and
        logged: a debt of failed appends is written again until it is, or `give_up_after`
        (a failure is only logged: the senders were never told those changes were saved,
        so they send them again when they sync)."""
        async with self._lock:
            durable = self._durability.waiter()
        try:
            await asyncio.wait_for(asyncio.shield(durable), give_up_after)
        except (Unavailable, TimeoutError):
            debt = self._durability.debt
            logger.error("%s closes with %d updates not logged", self.document_id, debt)

    def close(self) -> None:
        """Refuse updates and peers from now on: the room is being unloaded."""
        self._closed = True
        self._drop_shadow()
        self._held.drop_all("room_closed")
        self._durability.close()

    async def _broadcast(self, send: Callable[[Peer], Awaitable[None]], skip: Peer | None) -> None:
        for member in list(self._members.values()):
            if member.peer is not skip:
                await self._send_to(member.peer, send)

    async def _send_to(self, peer: Peer, send: Callable[[Peer], Awaitable[None]]) -> None:
        """One peer's transport failing must not stop the room serving the others."""
        try:
            await send(peer)
        except Exception:
            logger.exception("sending to peer %s on %s failed", peer.id, self.document_id)
