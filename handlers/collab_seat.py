"""Seat rules shared by every transport: who may sit, re-checks while seated, message rate.

`/ws/<document>` (y-websocket) and `/yjs|<document>` (y-socket.io) each seat one connection
in one document's room. They admit a caller the way `/collab` does, re-check the session and
level every few seconds, drop (and log) a read-only seat's updates, because neither provider
can take a refusal, and keep the awareness states a provider relays back out of the room.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Iterator
from typing import Any, Literal

from aiohttp import web

from handlers import keys
from realtime_cms.accounts.sessions import resolve_principal
from realtime_cms.collab.access import Level, document_level
from realtime_cms.collab.peer import Peer
from realtime_cms.collab.protocol import (
    decode_awareness_update,
    encode_awareness_update,
    read_var_uint,
)
from realtime_cms.collab.room import DocumentRoom
from realtime_cms.db import transaction
from realtime_cms.errors import Forbidden, Unauthorized
from realtime_cms.principal import Principal

log = logging.getLogger(__name__)

# How long a seat trusts its session and level before checking them again (as /collab does).
REVALIDATE_SECONDS = 5.0
# A y-websocket reader's sync step 2 when it has nothing the server lacks.
EMPTY_UPDATE = b"\x00\x00"

# The shared re-check cache sweeps out expired entries once it holds this many.
_PRUNE_AT = 4096

SeatEnd = Literal["session_ended", "access_revoked"]


class MessageRate:
    """At most `limit` messages in each one-second window of one connection."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._window_start = time.monotonic()
        self._count = 0

    def allow(self) -> bool:
        """Count one message; False once the window holds more than `limit`."""
        now = time.monotonic()
        if now - self._window_start >= 1.0:
            self._window_start, self._count = now, 0
        self._count += 1
        return self._count <= self.limit


class RelayFilter:
    """Tells a provider's own awareness news from the states it merely relays back.

    y-websocket and y-socket.io providers send the server every awareness change they
    apply, other clients' states (and their local timeouts of them) included. Those copies
    are never newer than what the server sent that provider, while the provider's own
    entries always are; the room would refuse the copies (another user's client id).
    """

    def __init__(self) -> None:
        self._sent: dict[int, int] = {}

    def note_sent(self, awareness_update: bytes) -> None:
        """Remember the clocks of an awareness update (encoded by the room) sent to the provider."""
        for client_id, clock in _clocks(awareness_update):
            if clock > self._sent.get(client_id, -1):
                self._sent[client_id] = clock

    def own_news(self, awareness_update: bytes, *, max_state_bytes: int) -> bytes | None:
        """The update without relayed entries (None if nothing is left); ProtocolError if bad."""
        entries = decode_awareness_update(awareness_update, max_state_bytes=max_state_bytes)
        own = [entry for entry in entries if entry.clock > self._sent.get(entry.client_id, -1)]
        if len(own) == len(entries):
            return awareness_update
        return encode_awareness_update(own) if own else None


def _clocks(awareness_update: bytes) -> Iterator[tuple[int, int]]:
    """The (client id, clock) pairs of an awareness update, its JSON states skipped."""
    count, pos = read_var_uint(awareness_update, 0)
    for _ in range(count):
        client_id, pos = read_var_uint(awareness_update, pos)
        clock, pos = read_var_uint(awareness_update, pos)
        length, pos = read_var_uint(awareness_update, pos)
        pos += length
        yield client_id, clock


async def admit(
    app: web.Application,
    document_id: str,
    token: str,
    *,
    ip: str | None,
    user_agent: str | None,
) -> tuple[Principal, Level]:
    """The caller behind `token` (empty when none was given) and their level on the document.

    Raises Unauthorized (no valid token), Invalid (malformed document id) or
    Forbidden("no_access").
    """
    principal = await resolve_token(app, token, ip, user_agent) if token else None
    if principal is None:
        raise Unauthorized("Send a valid session or API token", code="unauthorized")
    level = await level_for(app, principal, document_id)
    if level is None:
        raise Forbidden("No access to this document", code="no_access")
    return principal, level


async def recheck_seat(
    app: web.Application,
    room: DocumentRoom,
    peer: Peer,
    *,
    token: str,
    ip: str | None,
    user_agent: str | None,
) -> SeatEnd | None:
    """Re-check the session and the seat's level; why the seat ended, or None if it goes on.

    Transports call this every few seconds (`next_recheck_in`). A changed level goes through
    the room, which tells the peer (`send_level`, None when revoked). A check that fails
    (the database is down) is logged and the seat goes on until the next one.
    """
    try:
        checks = app[_RECHECKS]
        principal = await checks.principal(token, ip, user_agent)
        if principal is None:
            return "session_ended"
        level = await checks.level(token, ip, user_agent, principal, room.document_id)
    except Exception:
        log.exception("re-checking seat %s on %s failed", peer.id, room.document_id)
        return None
    if level != room.level_of(peer.id):
        await room.set_level(peer.id, level)
    return "access_revoked" if level is None else None


async def accept_or_drop(
    room: DocumentRoom, peer: Peer, update: bytes
) -> asyncio.Future[None] | None:
    """Apply a peer's update and send it on; the future tells when it is durable, None
    when it was dropped: a read-only seat's update is dropped and logged.

    Other refusals propagate. y-websocket readers always answer the server's sync step 1
    with a sync step 2, usually the empty one, so that case is logged at debug level only.
    """
    try:
        return await room.accept_update(peer, update)
    except Forbidden as exc:
        if exc.code != "read_only":
            raise
        level = logging.DEBUG if update == EMPTY_UPDATE else logging.INFO
        log.log(
            level,
            "dropped a %d-byte update from read-only seat %s (user %s) on %s",
            len(update),
            peer.id,
            peer.principal.user_id,
            room.document_id,
        )
        return None


async def apply_or_drop(room: DocumentRoom, peer: Peer, update: bytes) -> None:
    """`accept_or_drop`, returning once the update is durable."""
    durable = await accept_or_drop(room, peer, update)
    if durable is not None:
        await durable


async def resolve_token(
    app: web.Application, token: str, ip: str | None, user_agent: str | None
) -> Principal | None:
    """The principal behind a session or API token, None when it is not (or no longer) valid."""
    async with transaction(app[keys.SESSIONS]) as db:
        return await resolve_principal(
            db, token, settings=app[keys.SETTINGS], ip=ip, user_agent=user_agent
        )


_Key = tuple[str, str | None, str | None]


class Rechecks:
    """The re-checks of every seat in the process share their lookups: a token is resolved,
    and its level on a document looked up, at most once per REVALIDATE_SECONDS however many
    seats ask (a browser opens one y-websocket connection per document; seats ask at
    jittered times).

    A seat therefore notices an ended session or a changed role within two intervals. A
    grant change applied on this node (`RoomManager.levels_changed`, which other nodes'
    changes reach through the relay) makes every cached level stale at once: the change
    itself is pushed to the seats, and a stale level must never undo it. Admission is never
    cached (`admit` resolves the token afresh).
    """

    def __init__(self, app: web.Application) -> None:
        self._app = app
        self._principals: dict[_Key, tuple[float, Principal | None]] = {}
        self._levels: dict[tuple[_Key, str], tuple[float, int, Level | None]] = {}
        self._asking: dict[_Key, asyncio.Future[Principal | None]] = {}
        # Bumped by `forget`: a lookup that started before it is not cached.
        self._generation = 0

    def forget(self) -> None:
        """Drop every cached answer: some user's access changed (`AccessChanged`)."""
        self._principals.clear()
        self._levels.clear()
        self._asking.clear()
        self._generation += 1

    async def principal(
        self, token: str, ip: str | None, user_agent: str | None
    ) -> Principal | None:
        key = (token, ip, user_agent)
        now = time.monotonic()
        found = self._principals.get(key)
        if found is not None and now - found[0] < REVALIDATE_SECONDS:
            return found[1]
        asking = self._asking.get(key)
        if asking is None:
            asking = asyncio.ensure_future(resolve_token(self._app, token, ip, user_agent))
            self._asking[key] = asking
            generation = self._generation
            asking.add_done_callback(lambda done: self._resolved(key, done, now, generation))
        return await asyncio.shield(asking)

    async def level(
        self,
        token: str,
        ip: str | None,
        user_agent: str | None,
        principal: Principal,
        document_id: str,
    ) -> Level | None:
        """The principal's level on the document, looked up at most once per interval."""
        key = ((token, ip, user_agent), document_id)
        epoch, now = self._app[keys.ROOMS].level_epoch, time.monotonic()
        generation = self._generation
        found = self._levels.get(key)
        if found is not None and found[1] == epoch and now - found[0] < REVALIDATE_SECONDS:
            return found[2]
        level = await level_for(self._app, principal, document_id)
        if self._app[keys.ROOMS].level_epoch == epoch and self._generation == generation:
            self._prune(self._levels, now)
            self._levels[key] = (now, epoch, level)
        return level

    def _resolved(
        self, key: _Key, done: asyncio.Future[Principal | None], asked: float, generation: int
    ) -> None:
        if self._asking.get(key) is done:
            del self._asking[key]
        if generation != self._generation:
            return
        if not done.cancelled() and done.exception() is None:
            self._prune(self._principals, asked)
            self._principals[key] = (asked, done.result())

    @staticmethod
    def _prune(cache: dict[Any, Any], now: float) -> None:
        """Sweep out expired entries once the cache holds `_PRUNE_AT` of them."""
        if len(cache) > _PRUNE_AT:
            for key, entry in list(cache.items()):
                if now - entry[0] >= REVALIDATE_SECONDS:
                    del cache[key]


async def recheck_principal(
    app: web.Application, token: str, ip: str | None, user_agent: str | None
) -> Principal | None:
    """`resolve_token` for a seat's re-check, through the process's shared `Rechecks`."""
    return await app[_RECHECKS].principal(token, ip, user_agent)


async def recheck_level(
    app: web.Application, token: str, principal: Principal, document_id: str
) -> Level | None:
    """`level_for` for a seat's re-check, through the process's shared `Rechecks`."""
    return await app[_RECHECKS].level(token, principal.ip, None, principal, document_id)


def forget_checks(app: web.Application) -> None:
    """Make the process's re-checks ask the database afresh (`Rechecks.forget`)."""
    app[_RECHECKS].forget()


def next_recheck_in() -> float:
    """Seconds until a seat's next re-check: REVALIDATE_SECONDS, jittered by ±20% so that
    seats opened together do not all ask at once."""
    return REVALIDATE_SECONDS * random.uniform(0.8, 1.2)


_RECHECKS: web.AppKey[Rechecks] = web.AppKey("collab_rechecks", Rechecks)


def setup(app: web.Application) -> None:
    """The process's shared `Rechecks`."""
    app[_RECHECKS] = Rechecks(app)


async def level_for(app: web.Application, principal: Principal, document_id: str) -> Level | None:
    """The principal's level on the document (None: no access), in its own transaction."""
    async with transaction(app[keys.SESSIONS]) as db:
        return await document_level(db, principal, document_id)
