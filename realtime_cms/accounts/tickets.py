"""WebSocket tickets: a short-lived, single-use secret that stands for a bearer token in the
URL of one WebSocket handshake, so the token itself never appears in a URL (proxy logs).

A ticket is issued to the holder of a token for one document. Only the ticket's hash is
stored (in Redis when configured, so any web process can redeem it; in this process
otherwise), with the token sealed under a key derived from the ticket: the store alone
cannot give the token away. Redeeming takes the record out atomically (Redis GETDEL), so a
ticket opens at most one connection, and only to its document, within `TICKET_SECONDS`. The
caller then admits the connection with the token as usual: the token is resolved afresh
(an ended session or a deactivated user is refused) and keeps being re-checked.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Protocol

from pydantic import BaseModel
from redis.asyncio import Redis

from realtime_cms.security.tokens import hash_token, new_token

TICKET_PREFIX = "rcw_"
TICKET_SECONDS = 30.0
# The in-process store sweeps out expired tickets once it holds this many.
_PRUNE_AT = 1024
_SEAL_CONTEXT = b"realtime_cms ws-ticket seal\x00"


class TicketOut(BaseModel):
    """A ticket for one WebSocket handshake: `/ws/<document>?ticket=...` within `expires_in` s."""

    ticket: str
    expires_in: int


class TicketStore(Protocol):
    """Where tickets wait: `put` keeps a value for `ttl` seconds, `take` removes and
    returns it (None when absent or expired), at most once however many processes ask."""

    async def put(self, key: str, value: bytes, ttl: float) -> None: ...

    async def take(self, key: str) -> bytes | None: ...


class LocalTickets:
    """Tickets in this process: enough for one web process (the single-machine default)."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[float, bytes]] = {}

    async def put(self, key: str, value: bytes, ttl: float) -> None:
        now = time.monotonic()
        if len(self._entries) >= _PRUNE_AT:
            self._entries = {k: e for k, e in self._entries.items() if e[0] > now}
        self._entries[key] = (now + ttl, value)

    async def take(self, key: str) -> bytes | None:
        entry = self._entries.pop(key, None)
        if entry is None or entry[0] <= time.monotonic():
            return None
        return entry[1]


class RedisTickets:
    """Tickets in Redis, under `prefix`: every web process redeems the same tickets."""

    def __init__(self, redis: Redis, prefix: str) -> None:
        self._redis = redis
        self._prefix = prefix + "ws-ticket:"

    async def put(self, key: str, value: bytes, ttl: float) -> None:
        await self._redis.set(self._prefix + key, value, px=max(1, round(ttl * 1000)))

    async def take(self, key: str) -> bytes | None:
        value = await self._redis.getdel(self._prefix + key)
        return value.encode() if isinstance(value, str) else value


def _pad(ticket: str, length: int) -> bytes:
    """A one-time pad from the ticket (256 random bits, used once): SHAKE-256 as a stream."""
    return hashlib.shake_256(_SEAL_CONTEXT + ticket.encode()).digest(length)


def _xor(data: bytes, pad: bytes) -> bytes:
    return bytes(a ^ b for a, b in zip(data, pad, strict=True))


async def issue_ticket(
    store: TicketStore, *, token: str, document_id: str, ttl: float = TICKET_SECONDS
) -> str:
    """A new ticket standing for `token` on `document_id` for `ttl` seconds."""
    ticket = new_token(TICKET_PREFIX)
    secret = token.encode()
    record = {"document": document_id, "sealed": _xor(secret, _pad(ticket, len(secret))).hex()}
    await store.put(hash_token(ticket), json.dumps(record).encode(), ttl)
    return ticket


async def redeem_ticket(store: TicketStore, ticket: str, *, document_id: str) -> str | None:
    """The token a ticket stands for, once, if it was issued for `document_id` and has not
    expired; None otherwise. A ticket presented for another document is used up as well."""
    if not ticket.startswith(TICKET_PREFIX) or len(ticket) > 100:
        return None
    value = await store.take(hash_token(ticket))
    if value is None:
        return None
    record = json.loads(value)
    if record["document"] != document_id:
        return None
    sealed = bytes.fromhex(record["sealed"])
    return _xor(sealed, _pad(ticket, len(sealed))).decode()
