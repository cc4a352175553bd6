"""Relays live document changes between server processes through Redis, with log catch-up.

Each node publishes what its own peers change and applies what the other nodes publish.
Pub/sub is fire-and-forget: a message is lost while Redis or a subscriber's connection is
down, or while the room it is for is still loading. So each node also re-reads the update
log of its open documents (after every (re)subscription, and every `catchup_seconds` for
rooms with peers) and applies the rows it has not seen. docs/protocol.md, "Multi-node",
describes the channels and the message format.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from redis.asyncio import Redis
from redis.exceptions import RedisError

from realtime_cms.background import cancel_all
from realtime_cms.collab.manager import RoomManager
from realtime_cms.collab.peer import Peer
from realtime_cms.collab.protocol import (
    ProtocolError,
    read_var_bytes,
    read_var_string,
    read_var_uint,
    write_var_bytes,
    write_var_string,
    write_var_uint,
)
from realtime_cms.collab.room import DocumentRoom
from realtime_cms.collab.store import Rows
from realtime_cms.errors import Unavailable

logger = logging.getLogger(__name__)

# `(document_id, user_id)`: that user's level on that document changed on another node.
LevelCallback = Callable[[str, int], Awaitable[None]]
# `(user_id, session_id)`: a user's access changed on another node (see `AccessChanged`).
AccessCallback = Callable[[int | None, str | None], None]

# Seconds between attempts to subscribe again after losing Redis: doubling up to the cap.
_MIN_BACKOFF = 0.1
_MAX_BACKOFF = 5.0
# Node and document ids are short; this only bounds what a malformed message may claim.
_MAX_ID_BYTES = 1024


@dataclass(frozen=True, slots=True)
class RelayMessage:
    """One message on a relay channel: who sent it, for which document, and the payload."""

    node_id: str
    document_id: str
    payload: bytes


def encode_message(node_id: str, document_id: str, payload: bytes) -> bytes:
    """lib0 encoding, as y-protocols uses: varString node, varString document, varUint8Array."""
    return write_var_string(node_id) + write_var_string(document_id) + write_var_bytes(payload)


def decode_message(data: bytes) -> RelayMessage:
    """The message `encode_message` made; ProtocolError for anything else."""
    node_id, pos = read_var_string(data, 0, max_len=_MAX_ID_BYTES)
    document_id, pos = read_var_string(data, pos, max_len=_MAX_ID_BYTES)
    payload, pos = read_var_bytes(data, pos, max_len=len(data))
    if pos != len(data):
        raise ProtocolError("malformed_frame", "trailing bytes after a relay message")
    return RelayMessage(node_id, document_id, payload)


def _user_id(payload: bytes) -> int:
    user_id, pos = read_var_uint(payload, 0)
    if pos != len(payload):
        raise ProtocolError("malformed_frame", "trailing bytes after a user id")
    return user_id


@dataclass(frozen=True, slots=True)
class _Cursor:
    """How far one loaded room has read the log: the highest id, and the last read's rows.

    A row is new when the previous read did not return it: each read returns every row
    above a floor that only rises, so a row it lacked had not committed yet. Rows are
    known by id and a hash of their bytes, because the snapshot comes back under the id
    of the last row it folded, with other bytes.
    """

    room: DocumentRoom
    last_id: int = 0
    seen: frozenset[tuple[int, int]] = frozenset()

    def after(self, rows: Rows) -> _Cursor:
        """The cursor once `rows` (the whole answer of one read) are applied."""
        if not rows:
            return self
        last_id = max(self.last_id, *(row_id for row_id, _ in rows))
        return _Cursor(self.room, last_id, frozenset(_key(row) for row in rows))


def _key(row: tuple[int, bytes]) -> tuple[int, int]:
    return row[0], hash(row[1])


class Relay:
    """Keeps one node's open documents in step with the other nodes'; starts once.

    Use as `async with Relay(rooms, redis, prefix=...) as relay:` inside the RoomManager's
    block. With `redis` None (one process) it does nothing. Otherwise it publishes local
    changes on `{prefix}collab:updates`, `{prefix}collab:awareness`, (through
    `publish_level_change`) `{prefix}collab:levels` and (through `publish_removal`)
    `{prefix}collab:removed` and (through `notice`) `{prefix}collab:notices` (JSON notices
    about a document's item, for its peers), applies what other nodes publish there,
    and catches up from the log. Losing Redis never stops the node: publishing drops what it
    cannot send, subscribing retries with backoff, and the catch-up fills the gaps.
    """

    def __init__(
        self,
        rooms: RoomManager,
        redis: Redis | None,
        *,
        prefix: str,
        catchup_seconds: float = 2.0,
        on_level_change: LevelCallback | None = None,
        on_access_change: AccessCallback | None = None,
        max_queued: int = 1024,
    ) -> None:
        self.rooms = rooms
        self.node_id = secrets.token_hex(8)
        self._redis = redis
        self._interval = catchup_seconds
        self._on_level_change = on_level_change
        self._on_access_change = on_access_change
        self._updates = f"{prefix}collab:updates"
        self._awareness = f"{prefix}collab:awareness"
        self._levels = f"{prefix}collab:levels"
        self._removed = f"{prefix}collab:removed"
        self._access = f"{prefix}collab:access"
        self._notices = f"{prefix}collab:notices"
        self._handlers: dict[bytes, Callable[[RelayMessage], Awaitable[None]]] = {
            self._updates.encode(): self._apply_update,
            self._awareness.encode(): self._apply_awareness,
            self._levels.encode(): self._apply_level_change,
            self._removed.encode(): self._apply_removal,
            self._access.encode(): self._apply_access_change,
            self._notices.encode(): self._apply_notice,
        }
        self._outbox: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue(max_queued)
        self._cursors: dict[str, _Cursor] = {}
        self._subscribed = asyncio.Event()
        self._backoff = _MIN_BACKOFF
        self._dropping = False
        self._tasks: list[asyncio.Task[None]] = []
        self._started = False

    async def __aenter__(self) -> Self:
        if self._started:
            raise RuntimeError("a Relay starts only once")
        self._started = True
        if self._redis is None:
            return self
        hooks = self.rooms.hooks
        hooks.on_change.append(self._on_change)
        hooks.on_awareness.append(self._on_awareness)
        hooks.on_unload.append(self._on_unload)
        self._tasks = [
            asyncio.create_task(self._publish_forever(self._redis), name="relay-publisher"),
            asyncio.create_task(self._subscribe_forever(self._redis), name="relay-subscriber"),
            asyncio.create_task(self._catch_up_forever(), name="relay-catch-up"),
        ]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        tasks, self._tasks = self._tasks, []
        await cancel_all(tasks)
        if tasks:
            hooks = self.rooms.hooks
            hooks.on_change.remove(self._on_change)
            hooks.on_awareness.remove(self._on_awareness)
            hooks.on_unload.remove(self._on_unload)

    async def publish_level_change(self, document_id: str, user_id: int) -> None:
        """Tell the other nodes that the user's level on the document changed.

        This node is not told: the caller applies the change here itself.
        """
        self._enqueue(self._levels, document_id, write_var_uint(user_id))

    def publish_access_change(self, user_id: int | None, session_id: str | None) -> None:
        """Tell the other nodes to re-check a user's (or a session's, or every) connection.

        The message's document field carries the session id ("" for none), its payload the
        user id plus one (0 for any user). This node is not told.
        """
        payload = write_var_uint(0 if user_id is None else user_id + 1)
        self._enqueue(self._access, session_id or "", payload)

    async def publish_awareness(self, document_id: str, awareness_update: bytes) -> None:
        """Send awareness this node made itself (not a peer's) to the other nodes."""
        self._enqueue(self._awareness, document_id, awareness_update)

    async def notice(self, document_id: str, notice: Mapping[str, Any]) -> None:
        """Send `notice` to the document's peers here and, through Redis, on every node (a
        lost one is not caught up: a notice says "look again", what it is about is in SQL)."""
        room = self.rooms.get(document_id)
        if room is not None:
            await room.send_notice(notice)
        self._enqueue(self._notices, document_id, json.dumps(notice).encode())

    async def publish_removal(self, document_id: str) -> None:
        """Tell the other nodes that the document was removed (`RoomManager.remove`)."""
        self._enqueue(self._removed, document_id, b"")

    # -- publishing -------------------------------------------------------------

    async def _on_change(self, document_id: str, changes: bytes, peer: Peer | None) -> None:
        if peer is not None:  # a remote update came from another node: never send it back
            self._enqueue(self._updates, document_id, changes)

    async def _on_awareness(self, document_id: str, awareness_update: bytes, peer: Peer) -> None:
        self._enqueue(self._awareness, document_id, awareness_update)

    def _enqueue(self, channel: str, document_id: str, payload: bytes) -> None:
        """Queue a message for the publisher; hooks must not wait on Redis."""
        if not self._tasks:
            return
        try:
            self._outbox.put_nowait((channel, encode_message(self.node_id, document_id, payload)))
        except asyncio.QueueFull:
            self._start_dropping("the outbox is full")

    async def _publish_forever(self, redis: Redis) -> None:
        while True:
            channel, message = await self._outbox.get()
            try:
                await redis.publish(channel, message)
            except (RedisError, OSError) as exc:
                self._start_dropping(exc)
                while not self._outbox.empty():
                    self._outbox.get_nowait()
            else:
                if self._dropping:
                    logger.info("relay publishing again")
                self._dropping = False

    def _start_dropping(self, reason: object) -> None:
        """Warn once per outage: what is dropped, the other nodes catch up from the log."""
        if not self._dropping:
            logger.warning("relay dropping messages until Redis takes them again: %s", reason)
        self._dropping = True

    # -- subscribing ------------------------------------------------------------

    async def _subscribe_forever(self, redis: Redis) -> None:
        while True:
            try:
                await self._listen(redis)
            except (RedisError, OSError) as exc:
                first = self._backoff == _MIN_BACKOFF
                logger.log(
                    logging.WARNING if first else logging.DEBUG,
                    "relay lost its Redis subscription (%s); retrying in %.1fs",
                    exc,
                    self._backoff,
                )
            await asyncio.sleep(self._backoff)
            self._backoff = min(2 * self._backoff, _MAX_BACKOFF)

    async def _listen(self, redis: Redis) -> None:
        """Subscribe and handle messages until the connection fails (then it raises)."""
        async with redis.pubsub() as pubsub:
            await pubsub.subscribe(*self._handlers)
            while True:
                message = await pubsub.get_message(timeout=None)
                if message is not None:
                    await self._dispatch(message)

    async def _dispatch(self, message: dict[str, Any]) -> None:
        if message["type"] == "subscribe":
            # Also after redis-py reconnected on its own: messages may have been lost.
            if self._backoff > _MIN_BACKOFF:
                logger.info("relay subscribed to Redis again; catching up")
            self._backoff = _MIN_BACKOFF
            self._subscribed.set()
            return
        handler = self._handlers.get(message["channel"])
        if message["type"] != "message" or handler is None:
            return
        try:
            relayed = decode_message(message["data"])
            if relayed.node_id != self.node_id:
                await handler(relayed)
        except Unavailable:
            pass  # the room is being unloaded; loading it again reads the log
        except Exception:
            logger.exception("relay could not handle a message on %r", message["channel"])

    async def _apply_update(self, message: RelayMessage) -> None:
        await self.rooms.apply_remote(message.document_id, message.payload)

    async def _apply_awareness(self, message: RelayMessage) -> None:
        room = self.rooms.get(message.document_id)
        if room is not None:
            await room.apply_remote_awareness(message.payload)

    async def _apply_level_change(self, message: RelayMessage) -> None:
        if self._on_level_change is not None:
            await self._on_level_change(message.document_id, _user_id(message.payload))

    async def _apply_access_change(self, message: RelayMessage) -> None:
        if self._on_access_change is not None:
            user = _user_id(message.payload)
            self._on_access_change(None if user == 0 else user - 1, message.document_id or None)

    async def _apply_notice(self, message: RelayMessage) -> None:
        room = self.rooms.get(message.document_id)
        if room is not None:
            await room.send_notice(json.loads(message.payload))

    async def _apply_removal(self, message: RelayMessage) -> None:
        await self.rooms.remove(message.document_id)

    # -- catching up from the log -------------------------------------------------

    async def _catch_up_forever(self) -> None:
        """Every interval, rooms with peers; after each (re)subscription, every room."""
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._interval):
                    await self._subscribed.wait()
            everything = self._subscribed.is_set()
            self._subscribed.clear()
            for document_id, room in self.rooms.rooms.items():
                if everything or not room.is_idle:
                    await self._catch_up(document_id, room)

    async def _catch_up(self, document_id: str, room: DocumentRoom) -> None:
        """Apply the rows of the document's log that the room has not seen; never raises."""
        cursor = self._cursors.get(document_id)
        if cursor is None or cursor.room is not room:
            cursor = _Cursor(room)
        try:
            rows = await self.rooms.store.updates_since(document_id, cursor.last_id)
            for row in rows:
                if _key(row) not in cursor.seen:
                    await room.apply_remote(row[1])
        except Unavailable:
            return  # the room closed meanwhile
        except Exception as exc:
            logger.warning("catching up document %s failed: %r", document_id, exc)
            return
        if self.rooms.get(document_id) is room:
            self._cursors[document_id] = cursor.after(rows)

    async def _on_unload(self, document_id: str) -> None:
        self._cursors.pop(document_id, None)
