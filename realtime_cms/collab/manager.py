"""The only way to a live document: loads rooms on first join, unloads them when idle."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Self

from realtime_cms.collab.access import Level
from realtime_cms.collab.hooks import Hooks, run_hooks
from realtime_cms.collab.peer import Peer, RoomLimits
from realtime_cms.collab.room import DocumentRoom
from realtime_cms.collab.store import UpdateStore
from realtime_cms.errors import Invalid, Unavailable
from realtime_cms.heap import HeapTrimmer

logger = logging.getLogger(__name__)

__all__ = ["Hooks", "RoomLimits", "RoomManager", "Seed"]

# Called with a document id before its room loads; may give a document that has no stored
# state its first one (`UpdateStore.initialise`). Unlike hooks, an error fails the load.
Seed = Callable[[str], Awaitable[None]]


class RoomManager:
    """Open documents by id. Use as `async with RoomManager(store) as rooms:`; starts once.

    A room is loaded from the store on its first join (once, however many join at the
    same time) and unloaded by a background reaper once it has had no peers for
    `limits.idle_unload_seconds`; a long log is compacted first. The same sweep drops the
    shadow copy of rooms that took no update for `limits.shadow_idle_seconds`. Leaving the
    block waits for updates in flight and unloads every room. The store must outlive the
    manager. `seed`, if set, runs before every load (see `Seed`).
    """

    def __init__(
        self, store: UpdateStore, limits: RoomLimits | None = None, hooks: Hooks | None = None
    ) -> None:
        self.store = store
        self.limits = limits or RoomLimits()
        self.hooks = hooks or Hooks()
        self.seed: Seed | None = None
        self._rooms: dict[str, DocumentRoom] = {}
        self._loading: dict[str, asyncio.Task[DocumentRoom]] = {}
        self._idle_since: dict[str, float] = {}
        self._reaper: asyncio.Task[None] | None = None
        # Freed documents stay mapped by malloc until trimmed (realtime_cms/heap.py).
        self.heap = HeapTrimmer(min_interval=min(30.0, max(1.0, self.limits.idle_unload_seconds)))
        self._stopped = False
        # Counts grant changes applied here, so that a level cached before one is stale.
        self.level_epoch = 0
        # Each user's seats here, (document id, peer id), across every transport.
        self._seats: dict[int, set[tuple[str, str]]] = {}
        self.hooks.on_disconnect.append(self._seat_left)

    async def __aenter__(self) -> Self:
        if self._reaper is not None:
            raise RuntimeError("a RoomManager starts only once")
        self._reaper = asyncio.create_task(self._reap_forever(), name="room-reaper")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stopped = True
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        await self.heap.close()
        # Loads are reads: let them finish, then unload what they opened too.
        await asyncio.gather(*list(self._loading.values()), return_exceptions=True)
        for document_id, room in list(self._rooms.items()):
            await room.drain(give_up_after=self.limits.ack_deadline_seconds)
            await self._unload(document_id, room, compact=False)

    def get(self, document_id: str) -> DocumentRoom | None:
        """The loaded room of the document, if any."""
        return self._rooms.get(document_id)

    @property
    def rooms(self) -> dict[str, DocumentRoom]:
        """The loaded rooms by document id (a copy)."""
        return dict(self._rooms)

    async def join(self, document_id: str, peer: Peer, level: Level) -> DocumentRoom:
        """Seat `peer` at `level` in the document's room, loading the room if needed.

        The caller has checked access (`access.document_level`). A load failure raises
        and leaves no room behind, so a later join tries the store again. A user holds at
        most `limits.max_seats_per_user` seats in this process, whatever the transports
        (Invalid "too_many_documents" beyond).
        """
        self._check_seats(peer, document_id)
        while True:
            room = self._rooms.get(document_id)
            if room is None:
                room = await asyncio.shield(self._load_once(document_id))
            # The reaper may have unloaded a just-loaded room before this joiner resumed.
            if self._rooms.get(document_id) is room:
                room.add_peer(peer, level)
                self._idle_since.pop(document_id, None)
                if peer.principal.user_id is not None:
                    seats = self._seats.setdefault(peer.principal.user_id, set())
                    seats.add((document_id, peer.id))
                return room

    def seats_of(self, user_id: int) -> int:
        """How many seats the user holds in this process."""
        return len(self._seats.get(user_id, ()))

    def _check_seats(self, peer: Peer, document_id: str) -> None:
        user_id = peer.principal.user_id
        seats = self._seats.get(user_id) if user_id is not None else None
        if seats is None or (document_id, peer.id) in seats:
            return
        if len(seats) >= self.limits.max_seats_per_user:
            raise Invalid(
                "Too many open documents for this user; close some first",
                code="too_many_documents",
            )

    async def _seat_left(self, document_id: str, peer: Peer) -> None:
        user_id = peer.principal.user_id
        seats = self._seats.get(user_id) if user_id is not None else None
        if user_id is not None and seats is not None:
            seats.discard((document_id, peer.id))
            if not seats:
                del self._seats[user_id]

    async def leave(self, document_id: str, peer: Peer) -> None:
        """Remove the peer from the room (a no-op if it is not there)."""
        room = self._rooms.get(document_id)
        if room is not None:
            await room.remove_peer(peer)

    async def apply_remote(self, document_id: str, update: bytes) -> None:
        """Apply an update another node logged, if the document is loaded here."""
        room = self._rooms.get(document_id)
        if room is not None:
            await room.apply_remote(update)

    async def remove(self, document_id: str) -> None:
        """The document no longer exists: drop its peers (each told: level None), unload its
        room here now, and delete its log and snapshot."""
        room = self._rooms.get(document_id)
        if room is not None:
            for peer in room.peers:
                await room.set_level(peer.id, None)
            await room.drain(give_up_after=self.limits.ack_deadline_seconds)
            if self._rooms.get(document_id) is room:
                await self._unload(document_id, room, compact=False)
        await self.store.delete(document_id)

    def levels_changed(self) -> None:
        """Some user's level on some document changed: levels cached so far are stale."""
        self.level_epoch += 1

    async def revoke(self, document_id: str, user_id: int, level: Level | None) -> None:
        """Apply a user's new level (None: no access) to all their live peers on the document."""
        room = self._rooms.get(document_id)
        if room is None:
            return
        for peer in room.peers:
            if peer.principal.user_id == user_id:
                await room.set_level(peer.id, level)

    def _load_once(self, document_id: str) -> asyncio.Task[DocumentRoom]:
        if self._stopped or self._reaper is None:
            raise Unavailable("Live editing is not running", code="collab_stopped")
        task = self._loading.get(document_id)
        if task is None:
            task = asyncio.create_task(self._load(document_id), name=f"load {document_id}")
            self._loading[document_id] = task
        return task

    async def _load(self, document_id: str) -> DocumentRoom:
        try:
            if self.seed is not None:
                await self.seed(document_id)
            room = await DocumentRoom.load(
                document_id, store=self.store, limits=self.limits, hooks=self.hooks
            )
            await run_hooks(self.hooks.on_load, document_id, room)
        except Exception:
            logger.exception("loading document %s failed", document_id)
            raise
        finally:
            del self._loading[document_id]
        self._rooms[document_id] = room
        return room

    async def _reap_forever(self) -> None:
        """Unload rooms seen idle for the grace period, however their peers left them, and
        drop the shadows of quiet rooms."""
        grace = self.limits.idle_unload_seconds
        interval = min(max(min(grace, self.limits.shadow_idle_seconds) / 4, 0.01), 5.0)
        while True:
            await asyncio.sleep(interval)
            unloaded = False
            for document_id in self._due(asyncio.get_running_loop().time(), grace):
                try:
                    unloaded |= await self._unload_if_idle(document_id)
                except Exception:  # a bug here must not stop every later unload
                    logger.exception("unloading document %s failed", document_id)
            self._shed_shadows(asyncio.get_running_loop().time())
            # Not after a shed: a dropped shadow's pages lie among live ones, so a trim gives
            # little back (bench/soak: 1 MB of 8) and, on a big heap, holds malloc's lock
            # for long while the loop allocates.
            if unloaded:
                self.heap.trim_soon()

    def _shed_shadows(self, now: float) -> None:
        """Drop the shadows of rooms quiet by `now`."""
        for room in list(self._rooms.values()):
            room.shed_shadow(now)

    def _due(self, now: float, grace: float) -> list[str]:
        """Rooms idle for `grace` seconds by `now`. A function of its own, so that no local
        of the endless reaper keeps the last room it looked at (and its Docs) alive."""
        due = []
        for document_id, room in self._rooms.items():
            if not room.is_idle:
                self._idle_since.pop(document_id, None)
            elif now - self._idle_since.setdefault(document_id, now) >= grace:
                due.append(document_id)
        return due

    async def _unload_if_idle(self, document_id: str) -> bool:
        """Unload the room if it is still idle once drained; whether it was unloaded."""
        room = self._rooms.get(document_id)
        if room is not None and room.is_idle:
            # Updates in flight land in the log before a new room could load it again; a
            # room whose appends keep failing stays loaded (and keeps retrying them).
            await room.drain(give_up_after=self.limits.ack_deadline_seconds)
        if (
            room is not None
            and room.is_idle
            and not room.has_unwritten
            and self._rooms.get(document_id) is room
        ):
            await self._unload(document_id, room, compact=True)
            return True
        return False

    async def _unload(self, document_id: str, room: DocumentRoom, *, compact: bool) -> None:
        """Forget and close a drained room, then compact a long log; never raises."""
        del self._rooms[document_id]
        self._idle_since.pop(document_id, None)
        room.close()
        if compact:
            await self._compact_if_long(document_id)
        await run_hooks(self.hooks.on_unload, document_id)

    async def _compact_if_long(self, document_id: str) -> None:
        """Fold a long log into the snapshot; on failure the log simply stays as it is."""
        try:
            rows, size = await self.store.log_stats(document_id)
            if rows >= self.limits.compact_min_rows or size >= self.limits.compact_min_bytes:
                result = await self.store.compact(document_id)
                logger.info("compacted %s: %s", document_id, result)
        except Exception:
            logger.exception("compacting document %s failed; its log is kept", document_id)
