"""One live document: its CRDT, awareness states and peers; knows nothing of any transport.

Transports implement `Peer` and reach rooms through the `RoomManager`. Every update a peer
sends is tried on a shadow copy of the document first, then applied to the live document,
queued for the durable log (in apply order) and sent to the other peers at once; the
sender's ack and the `on_change` hooks wait for the commit.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from pycrdt import Doc, Subscription, merge_updates

from realtime_cms.collab.access import Level, can_write
from realtime_cms.collab.durability import Committed, Durability
from realtime_cms.collab.hooks import Hooks, run_hooks
from realtime_cms.collab.protocol import (
    AwarenessEntry,
    ProtocolError,
    decode_awareness_update,
    encode_awareness_update,
    read_var_uint,
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
from realtime_cms.errors import Forbidden, Invalid, PayloadTooLarge, Unavailable
from realtime_cms.principal import Principal

logger = logging.getLogger(__name__)

# Never swallowed by the guards around pycrdt, whose panics are BaseExceptions too.
_FATAL = (asyncio.CancelledError, KeyboardInterrupt, SystemExit)
# The row id of an update being tried (it has no log id yet), and of one from another node.
_CANDIDATE = -1
_REMOTE = 0
# The row id of an update whose append is queued (its id is known only once committed).
_QUEUED = -2


class Peer(Protocol):
    """One connection's view of a room, implemented by each transport.

    The `send_*` methods must not wait on the network: queue the message and return (drop
    a connection that cannot keep up), because rooms call them while holding their lock.
    `send_level(document_id, None)` means access was revoked; the room has already
    dropped the peer, and the transport stops serving that document to it.
    """

    @property
    def id(self) -> str: ...

    @property
    def principal(self) -> Principal: ...

    async def send_update(self, document_id: str, update: bytes) -> None: ...

    async def send_awareness(self, document_id: str, awareness_update: bytes) -> None: ...

    async def send_level(self, document_id: str, level: Level | None) -> None: ...


@dataclass(frozen=True, slots=True)
class RoomLimits:
    """Bounds on what peers may send, and when idle rooms are unloaded and compacted."""

    max_update_bytes: int = 256 * 1024
    max_awareness_bytes: int = 64 * 1024
    max_pending: int = 100
    idle_unload_seconds: float = 30.0
    compact_min_rows: int = 500
    compact_min_bytes: int = 1_000_000
    # Awareness client ids one peer may hold (a browser tab uses one per document).
    max_awareness_clients: int = 16


def _check_state_vector(vector: bytes) -> None:
    """Raise ProtocolError unless `vector` is exactly a lib0 state vector (client, clock)*."""
    count, pos = read_var_uint(vector, 0)
    for _ in range(2 * count):
        _, pos = read_var_uint(vector, pos)
    if pos != len(vector):
        raise ProtocolError("malformed_frame", "trailing bytes after the state vector")


def _replay(stored: StoredDocument) -> tuple[Doc, Rows]:
    """Rebuild a document from its log: the doc and the log rows still pending in it."""
    doc: Doc = Doc()
    return doc, stored.apply_to(doc)


@dataclass(slots=True)
class _Member:
    peer: Peer
    level: Level
    client_ids: set[int] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class _Accepted:
    """An update the shadow took: what to log, and what it changed (to send on)."""

    logged: bytes
    changes: bytes | None
    waits: bool


def _done() -> asyncio.Future[None]:
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    future.set_result(None)
    return future


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
        self._members: dict[str, _Member] = {}
        self._awareness: dict[int, tuple[int, dict[str, Any] | None]] = {}
        self._owners: dict[int, str] = {}
        self._lock = asyncio.Lock()
        self._durability = Durability(document_id, store, self._committed)
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
        """How many logged updates still wait for their dependencies."""
        return len(self._pending)

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
            _check_state_vector(state_vector)
            return self._doc.get_update(state_vector)
        except _FATAL:
            raise
        except BaseException as exc:
            raise Invalid("Malformed state vector", code="invalid_state_vector") from exc

    async def apply_update(self, peer: Peer, update: bytes) -> None:
        """Check, apply and send on a writer's update; returns once it is durable.

        Returning means every change the room held when the update arrived is in the log,
        so a duplicate of a change still being written waits for it too.
        """
        await (await self.accept_update(peer, update))

    async def accept_update(self, peer: Peer, update: bytes) -> asyncio.Future[None]:
        """Check, apply and send on a writer's update at once; the future completes once it
        is durable (see `apply_update`), or fails with Unavailable("store_failed").

        Peers get the update before its commit, as in every Yjs server: a peer may hold a
        change the log lost if the process dies, and whoever sent it was never told it was
        saved, so its client sends it again. A failed commit is kept as the room's debt and
        written again with the next update (or when the room drains): nothing the room
        applied is left out of the log while the room lives. Once the lock is held, nothing
        here waits until the append is queued, so a cancelled caller cannot leave an update
        applied but not logged.
        """
        if len(update) > self._limits.max_update_bytes:
            raise PayloadTooLarge("The update is too large", code="update_too_large")
        return await self._apply_from(peer, update)

    async def apply_remote(self, update: bytes) -> None:
        """Apply an update another node has logged already: checked, not logged again."""
        await self._apply_from(None, update)

    async def _apply_from(self, peer: Peer | None, update: bytes) -> asyncio.Future[None]:
        """The update path; `peer` None is a remote update (no access check, no logging)."""
        async with self._lock:
            self._check_open()
            if peer is not None and not can_write(self._require_member(peer).level):
                raise Forbidden("Read-only access to this document", code="read_only")
            accepted = self._try_on_shadow(update, cap_pending=peer is not None)
            if accepted is not None:
                if peer is not None:
                    self._queue_append(accepted, peer)
                self._apply_live((_QUEUED if peer else _REMOTE, update), accepted)
                await self._send_changes(accepted, sender=peer)
            if peer is not None:
                return self._durability.waiter()
        if accepted is not None and accepted.changes is not None:
            await run_hooks(self._hooks.on_change, self.document_id, accepted.changes, None)
        return _done()

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

    def _try_on_shadow(self, update: bytes, *, cap_pending: bool) -> _Accepted | None:
        """Apply to the shadow; None when the update brings nothing new (a duplicate).

        A fully integrated update is logged as the changes it made (a peer's sync step 2
        repeats what the room has); one left pending is logged as sent, to keep its parts.
        """
        shadow = self._shadow_doc()
        self._shadow_changes.clear()
        try:
            row = (_CANDIDATE, update)
            waiting = apply_after_pending(shadow, self._pending, row, self._shadow_changes)
            waits = any(row_id == _CANDIDATE for row_id, _ in waiting)
            if cap_pending and waits and len(waiting) > self._limits.max_pending:
                raise Invalid("Too many updates wait for missing ones", code="too_many_pending")
        except BaseException as exc:
            self._drop_shadow()
            if isinstance(exc, CorruptUpdateError):
                raise Invalid("The update cannot be applied", code="invalid_update") from exc
            raise
        changes = _merged(self._shadow_changes)
        if waits:
            return _Accepted(update, changes, waits=True)
        return None if changes is None else _Accepted(changes, changes, waits=False)

    def _shadow_doc(self) -> Doc:
        """The live document's twin (pending rows included), rebuilt after a failure."""
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

    def _check_open(self) -> None:
        if self._closed:
            raise Unavailable("The document was closed; join it again", code="room_closed")

    def _require_member(self, peer: Peer) -> _Member:
        member = self._members.get(peer.id)
        if member is None or member.peer is not peer:
            raise Forbidden("Join the document first", code="not_joined")
        return member

    async def apply_awareness(self, peer: Peer, awareness_update: bytes) -> None:
        """Record and send on a peer's awareness entries (cursors); readers may send them."""
        member = self._require_member(peer)
        limit = self._limits.max_awareness_bytes
        if len(awareness_update) > limit:
            raise PayloadTooLarge("The awareness update is too large", code="awareness_too_large")
        entries = decode_awareness_update(awareness_update, max_state_bytes=limit)
        self._check_ownership(member, entries)
        accepted = [entry for entry in entries if self._record(member, entry)]
        if not accepted:
            return
        encoded = encode_awareness_update(accepted)
        await self._broadcast(lambda p: p.send_awareness(self.document_id, encoded), peer)
        await run_hooks(self._hooks.on_awareness, self.document_id, encoded, peer)

    def _check_ownership(self, member: _Member, entries: Sequence[AwarenessEntry]) -> None:
        """Refuse the whole update if it touches a client id another user's peer holds.

        A peer of the same user may take a client id over: a reconnecting tab keeps its
        id while the server may not have noticed that its old connection died.
        """
        user_id = member.peer.principal.user_id
        for entry in entries:
            owner = self._owner_of(entry.client_id)
            if owner is None or owner is member:
                continue
            if user_id is None or owner.peer.principal.user_id != user_id:
                raise Forbidden("Awareness client id of another peer", code="awareness_not_owned")
        claimed = member.client_ids | {entry.client_id for entry in entries}
        if len(claimed) > self._limits.max_awareness_clients:
            raise Invalid("Too many awareness client ids", code="too_many_awareness_clients")

    def _record(self, member: _Member, entry: AwarenessEntry) -> bool:
        """Store an entry unless it is stale (as y-protocols decides); claim its client id."""
        if self._is_stale(entry):
            return False
        previous = self._owner_of(entry.client_id)
        if previous is not None:
            previous.client_ids.discard(entry.client_id)
        self._awareness[entry.client_id] = (entry.clock, entry.state)
        self._owners[entry.client_id] = member.peer.id
        member.client_ids.add(entry.client_id)
        return True

    def _is_stale(self, entry: AwarenessEntry) -> bool:
        current = self._awareness.get(entry.client_id)
        if current is None:
            return False
        clock, state = current
        removes = entry.state is None and state is not None
        return entry.clock < clock or (entry.clock == clock and not removes)

    async def apply_remote_awareness(self, awareness_update: bytes) -> None:
        """Record and send to every local peer the awareness entries another node relayed.

        Ownership is per node: a relayed entry frees its client id from a local peer (the
        client moved to another node), so that peer leaving will not remove the entry.
        """
        limit = self._limits.max_awareness_bytes
        entries = decode_awareness_update(awareness_update, max_state_bytes=limit)
        accepted = [entry for entry in entries if self._record_remote(entry)]
        if accepted:
            encoded = encode_awareness_update(accepted)
            await self._broadcast(lambda p: p.send_awareness(self.document_id, encoded), None)

    def _record_remote(self, entry: AwarenessEntry) -> bool:
        if self._is_stale(entry):
            return False
        previous = self._owner_of(entry.client_id)
        if previous is not None:
            previous.client_ids.discard(entry.client_id)
            del self._owners[entry.client_id]
        self._awareness[entry.client_id] = (entry.clock, entry.state)
        return True

    def _owner_of(self, client_id: int) -> _Member | None:
        owner_id = self._owners.get(client_id)
        return None if owner_id is None else self._members[owner_id]

    def awareness_of(self, client_id: int) -> tuple[int, dict[str, Any] | None] | None:
        """The clock and state recorded for an awareness client id, if any."""
        return self._awareness.get(client_id)

    def awareness_snapshot(self) -> bytes:
        """Every present client's state as one awareness update, for a peer that joins."""
        return encode_awareness_update(
            [
                AwarenessEntry(client_id, clock, state)
                for client_id, (clock, state) in self._awareness.items()
                if state is not None
            ]
        )

    async def remove_peer(self, peer: Peer) -> None:
        """Drop the peer and tell the others its awareness states are gone (no ghosts)."""
        member = self._members.get(peer.id)
        if member is None or member.peer is not peer:
            return
        del self._members[peer.id]
        removed = []
        for client_id in member.client_ids:
            clock, state = self._awareness.pop(client_id)
            del self._owners[client_id]
            if state is not None:
                removed.append(AwarenessEntry(client_id, clock + 1, None))
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

    async def drain(self) -> None:
        """Wait until every update handed to the room so far is applied or refused, and
        logged: a debt of failed appends is written once more (a failure is only logged:
        the peers still hold those changes and send them when they sync again)."""
        async with self._lock:
            durable = self._durability.waiter()
        try:
            await durable
        except Unavailable:
            debt = self._durability.debt
            logger.error("%s closes with %d updates not logged", self.document_id, debt)

    def close(self) -> None:
        """Refuse updates and peers from now on: the room is being unloaded."""
        self._closed = True
        self._drop_shadow()

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
