"""Who is in which live document, across nodes: a shared registry plus presence history rows.

Transports call `Presence.joined` when a connection joins a document; the rooms'
`on_disconnect` hook removes it however the seat ends (leave, disconnect, revoked access).
Seats nobody announced (a REST call's) are not presence. Each node writes its own
connections to the registry, one entry per connection that expires unless the node
refreshes it, so a crashed node's entries lapse by themselves. The registry is a Redis hash
per document when Redis is configured (field `<node>:<peer id>`), process memory otherwise.
Joins and leaves are also written to `presence_tracking` and `presence_events`.

A user can be deleted while their sockets are still seated. Their rows go with them
(ON DELETE CASCADE), and presence forgets their connections: when a join or leave finds
the user gone (the rows' foreign key refuses it), and on each refresh, which checks that
the users it re-announces still exist. Neither is an error: it is logged once, at INFO.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Protocol, Self

import sqlalchemy as sa
from redis.asyncio import Redis
from sqlalchemy.dialects import mysql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from realtime_cms.background import cancel_all
from realtime_cms.collab.hooks import Hooks
from realtime_cms.collab.peer import Peer
from realtime_cms.db import SessionFactory, transaction
from realtime_cms.documents.schemas import PresentUserOut
from realtime_cms.models.analytics import PresenceEvent
from realtime_cms.models.auth import User
from realtime_cms.models.base import utcnow
from realtime_cms.models.realtime import PresenceTracking

logger = logging.getLogger(__name__)

ENTITY_TYPE = "document"
# A connection's entry lapses this long after its node last refreshed it.
ENTRY_TTL_SECONDS = 30.0
REFRESH_SECONDS = 10.0

_User = tuple[int, str]


@dataclass(frozen=True, slots=True)
class Entry:
    """One connection in the registry: whose it is, when it was last confirmed, until when."""

    user_id: int
    username: str
    seen: float
    expires: float

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: str | bytes) -> Entry | None:
        """The entry, or None for bytes another version (or a bug) wrote."""
        try:
            return cls(**json.loads(raw))
        except (ValueError, TypeError):
            return None


class Registry(Protocol):
    """Where every node's connections per document are kept."""

    async def put(self, document_id: str, entries: Mapping[str, Entry], ttl: float) -> None: ...

    async def remove(self, document_id: str, *fields: str) -> None: ...

    async def entries(self, document_id: str, now: float) -> list[Entry]: ...


class MemoryRegistry:
    """The registry of a single process (no Redis)."""

    def __init__(self) -> None:
        self._documents: dict[str, dict[str, Entry]] = {}

    async def put(self, document_id: str, entries: Mapping[str, Entry], ttl: float) -> None:
        self._documents.setdefault(document_id, {}).update(entries)

    async def remove(self, document_id: str, *fields: str) -> None:
        stored = self._documents.get(document_id, {})
        for name in fields:
            stored.pop(name, None)
        if not stored:
            self._documents.pop(document_id, None)

    async def entries(self, document_id: str, now: float) -> list[Entry]:
        stored = self._documents.get(document_id, {})
        return [entry for entry in stored.values() if entry.expires > now]


class RedisRegistry:
    """The registry shared by every node: one hash per document, `<prefix>presence:<id>`."""

    def __init__(self, redis: Redis, prefix: str) -> None:
        self._redis = redis
        self._prefix = prefix

    def _key(self, document_id: str) -> str:
        return f"{self._prefix}presence:{document_id}"

    async def put(self, document_id: str, entries: Mapping[str, Entry], ttl: float) -> None:
        key = self._key(document_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping={name: entry.to_json() for name, entry in entries.items()})
            # The hash itself goes once no node has refreshed any of its entries for `ttl`.
            pipe.expire(key, math.ceil(ttl))
            await pipe.execute()

    async def remove(self, document_id: str, *fields: str) -> None:
        if fields:
            await self._redis.hdel(self._key(document_id), *fields)

    async def entries(self, document_id: str, now: float) -> list[Entry]:
        stored = await self._redis.hgetall(self._key(document_id))
        live: list[Entry] = []
        lapsed: list[str] = []
        for name, raw in stored.items():
            entry = Entry.from_json(raw)
            if entry is not None and entry.expires > now:
                live.append(entry)
            else:
                lapsed.append(name.decode() if isinstance(name, bytes) else name)
        await self.remove(document_id, *lapsed)
        return live


def registry_for(redis: Redis | None, prefix: str) -> Registry:
    """Redis when configured (every node sees every node's connections), else memory."""
    return RedisRegistry(redis, prefix) if redis is not None else MemoryRegistry()


def _touch(db: AsyncSession, user_id: int, document_id: str) -> sa.Executable:
    """Upsert the user's `presence_tracking` row for the document with last_seen = now."""
    values = {
        "user_id": user_id,
        "entity_type": ENTITY_TYPE,
        "entity_id": document_id,
        "last_seen": utcnow(),
    }
    if db.get_bind().dialect.name == "sqlite":
        insert = sqlite.insert(PresenceTracking).values(values)
        return insert.on_conflict_do_update(
            index_elements=["user_id", "entity_type", "entity_id"],
            set_={"last_seen": insert.excluded.last_seen},
        )
    upsert = mysql.insert(PresenceTracking).values(values)
    return upsert.on_duplicate_key_update(last_seen=upsert.inserted.last_seen)


def _summarise(entries: list[Entry]) -> list[PresentUserOut]:
    """One row per user: how many connections they have and when one was last confirmed."""
    users: dict[int, PresentUserOut] = {}
    for entry in entries:
        seen = datetime.fromtimestamp(entry.seen, UTC)
        found = users.get(entry.user_id)
        if found is None:
            users[entry.user_id] = PresentUserOut(
                user_id=entry.user_id, username=entry.username, connections=1, last_seen=seen
            )
        else:
            found.connections += 1
            found.last_seen = max(found.last_seen, seen)
    return sorted(users.values(), key=lambda user: (user.username, user.user_id))


class Presence:
    """This node's live connections per document. Use as `async with Presence(...)`; once.

    Inside the block a background task refreshes this node's registry entries every
    `refresh` seconds; leaving it removes them.
    """

    def __init__(
        self,
        sessions: SessionFactory,
        registry: Registry,
        *,
        ttl: float = ENTRY_TTL_SECONDS,
        refresh: float = REFRESH_SECONDS,
    ) -> None:
        if not 0 < refresh < ttl:
            raise ValueError("refresh must be positive and shorter than ttl")
        self.node_id = uuid.uuid4().hex
        self._sessions = sessions
        self._registry = registry
        self._ttl = ttl
        self._refresh = refresh
        self._local: dict[str, dict[str, _User]] = {}
        self._refresher: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        if self._refresher is not None:
            raise RuntimeError("a Presence starts only once")
        self._refresher = asyncio.create_task(self._refresh_forever(), name="presence-refresh")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._refresher is not None:
            # Cancelled until done: a Redis write may swallow one cancel.
            await cancel_all([self._refresher])
        for document_id, connections in list(self._local.items()):
            try:
                await self._registry.remove(document_id, *connections)
            except Exception:  # the entries lapse on their own
                logger.exception("removing presence entries of %s failed", document_id)
        self._local.clear()

    def attach(self, hooks: Hooks) -> None:
        """Follow the rooms: a seat that ends, however it ends, leaves presence."""
        hooks.on_disconnect.append(self.left)

    def _field(self, peer: Peer) -> str:
        return f"{self.node_id}:{peer.id}"

    async def joined(self, document_id: str, peer: Peer) -> None:
        """Announce a live connection seated in the document; never raises."""
        user_id, name = peer.principal.user_id, self._field(peer)
        if user_id is None or name in self._local.get(document_id, {}):
            return
        user = (user_id, peer.principal.username)
        self._local.setdefault(document_id, {})[name] = user
        try:
            await self._publish(document_id, {name: user})
            if name not in self._local.get(document_id, {}):
                # It left while this was written: take back the entry `left` missed.
                await self._registry.remove(document_id, name)
            await self._record(document_id, user_id, "join", peer)
        except Exception:  # presence is advisory: it must not refuse the join
            logger.exception("recording the join of %s to %s failed", peer.id, document_id)

    async def left(self, document_id: str, peer: Peer) -> None:
        """The `on_disconnect` hook: forget the connection, if it was announced."""
        connections = self._local.get(document_id, {})
        user = connections.pop(self._field(peer), None)
        if not connections:
            self._local.pop(document_id, None)
        if user is None:
            return
        await self._registry.remove(document_id, self._field(peer))
        await self._record(document_id, user[0], "leave", peer)

    async def present(self, document_id: str) -> list[PresentUserOut]:
        """The users connected to the document on any node, by username."""
        return _summarise(await self._registry.entries(document_id, time.time()))

    async def _publish(self, document_id: str, connections: Mapping[str, _User]) -> None:
        now = time.time()
        entries = {
            name: Entry(user_id, username, now, now + self._ttl)
            for name, (user_id, username) in connections.items()
        }
        await self._registry.put(document_id, entries, self._ttl)

    async def _record(self, document_id: str, user_id: int, event: str, peer: Peer) -> None:
        try:
            async with transaction(self._sessions) as db:
                await db.execute(_touch(db, user_id, document_id))
                db.add(
                    PresenceEvent(
                        user_id=user_id,
                        event_type=event,
                        target_type=ENTITY_TYPE,
                        target_id=document_id,
                        details={"node": self.node_id, "connection": peer.id},
                    )
                )
        except IntegrityError:
            if await self._existing({user_id}):
                raise
            await self._forget(user_id)

    async def _existing(self, user_ids: set[int]) -> set[int]:
        """Which of `user_ids` still have an account."""
        async with transaction(self._sessions) as db:
            found = await db.scalars(sa.select(User.id).where(User.id.in_(user_ids)))
            return set(found)

    async def _forget(self, user_id: int) -> None:
        """Drop every connection of a deleted user from this node's presence."""
        logger.info("user %s no longer exists; forgetting their presence", user_id)
        for document_id, connections in list(self._local.items()):
            names = [name for name, (owner, _) in connections.items() if owner == user_id]
            for name in names:
                del connections[name]
            if not connections:
                self._local.pop(document_id, None)
            if names:
                await self._registry.remove(document_id, *names)

    async def _forget_deleted_users(self) -> None:
        seated = {user_id for users in self._local.values() for user_id, _ in users.values()}
        if seated:
            for user_id in seated - await self._existing(seated):
                await self._forget(user_id)

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self._refresh)
            try:
                await self._forget_deleted_users()
            except Exception:  # refresh the others all the same; the next round checks again
                logger.exception("checking the users present on this node failed")
            for document_id, connections in list(self._local.items()):
                try:
                    await self._publish(document_id, dict(connections))
                except Exception:  # the next round tries again
                    logger.exception("refreshing presence of %s failed", document_id)
