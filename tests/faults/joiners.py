"""Newcomers who must keep being admitted while a document is under attack, one per
transport: `/collab` (joins, types a token, has it acknowledged), `/ws/<doc>` (y-websocket's
handshake) and `/yjs|<doc>` (y-socket.io's), each with real client code."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp
import pycrdt
import socketio

from realtime_cms.collab.protocol import (
    MESSAGE_SYNC,
    SYNC_STEP2,
    decode_message,
    sync_step1,
    sync_step2,
)
from tests.faults.editors import Editor, Tally, missing_from

# How long a joiner stays after its handshake, to see whether the server drops it.
LINGER_SECONDS = 0.5
WAIT_SECONDS = 15.0
EMPTY_UPDATE = b"\x00\x00"


@dataclass
class Joiners:
    """Every join made, every problem met, and the `/collab` joiners' typed tokens."""

    url: str
    token: str
    documents: list[str]
    tally: Tally = field(default_factory=Tally)
    editors: list[Editor] = field(default_factory=list)
    joins: int = 0
    problems: list[str] = field(default_factory=list)
    # Per document, the inserts of joiners answered `store_unavailable` and left to resync.
    resynced: dict[str, set[str]] = field(default_factory=dict)
    _numbers: itertools.count[int] = field(default_factory=itertools.count)

    async def keep_joining(self, stop: asyncio.Event, every: float) -> None:
        """One newcomer per transport every `every` seconds until `stop` is set."""
        while not stop.is_set():
            document = self.documents[next(self._numbers) % len(self.documents)]
            await asyncio.gather(
                self._attempt("/collab", self.join_collab, document),
                self._attempt("/ws", self.join_ws, document),
                self._attempt("/yjs", self.join_yjs, document),
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every)

    async def _attempt(
        self, transport: str, join: Callable[[str], Awaitable[str | None]], document: str
    ) -> None:
        self.joins += 1
        try:
            problem = await asyncio.wait_for(join(document), WAIT_SECONDS)
        except Exception as exc:
            problem = f"{type(exc).__name__}: {exc}"
        if problem is not None:
            self.problems.append(f"{transport} joiner on {document}: {problem}")

    async def join_collab(self, document: str) -> str | None:
        editor = Editor(f"j{len(self.editors)}", document, [self.url], 0, self.token, self.tally)
        self.editors.append(editor)
        refusals = sum(self.tally.final_refusals.values())
        slow = self.tally.refused["update:store_unavailable"]
        try:
            await editor.connect(0)
            editor.type_one()
            await editor.settle(WAIT_SECONDS - 2, grace=2)
        finally:
            await editor.close()
        if sum(self.tally.final_refusals.values()) > refusals:
            return f"refused: {dict(self.tally.refused)}"
        unacked = editor.unacked
        if unacked and self.tally.refused["update:store_unavailable"] > slow:
            # Answered "not saved in time yet" and resynced: the insert must be in the
            # document at the end (`stranded`), acknowledged or not.
            self.resynced.setdefault(document, set()).update(unacked)
        elif unacked:
            return "its insert was not acknowledged"
        return None

    async def stranded(self) -> list[str]:
        """The resynced joiners' inserts that are not in the document (or are there twice)."""
        if not self.resynced:
            return []
        missing = await missing_from(self.url, self.token, self.resynced)
        return [f"joiners' inserts lost after a resync: {missing}"] if missing else []

    async def join_ws(self, document: str) -> str | None:
        """y-websocket's handshake: the server's step 1 answered, our step 1 answered."""
        async with (
            aiohttp.ClientSession() as http,
            http.ws_connect(f"{self.url}/ws/{document}?token={self.token}") as ws,
        ):
            await ws.send_bytes(sync_step2(EMPTY_UPDATE))
            await ws.send_bytes(sync_step1(b"\x00"))
            synced = False
            while not synced:
                message = await ws.receive()
                if message.type is not aiohttp.WSMsgType.BINARY:
                    return f"closed before syncing ({ws.close_code} {message.extra!r})"
                decoded = decode_message(message.data, max_update_bytes=2**24)
                synced = decoded.kind == MESSAGE_SYNC and decoded.sync_type == SYNC_STEP2
            # Linger (live updates keep coming: a bound on the total, not on a silence).
            loop = asyncio.get_running_loop()
            until = loop.time() + LINGER_SECONDS
            while (left := until - loop.time()) > 0:
                try:
                    message = await ws.receive(timeout=left)
                except TimeoutError:
                    return None
                if message.type is not aiohttp.WSMsgType.BINARY:
                    return f"dropped after syncing ({ws.close_code} {message.extra!r})"
            return None

    async def join_yjs(self, document: str) -> str | None:
        """y-socket.io's handshake: both sync steps, then still connected a moment later."""
        client = socketio.AsyncClient(reconnection=False)
        namespace = f"/yjs|{document}"
        client.on("sync-step-1", lambda vector: EMPTY_UPDATE, namespace=namespace)
        try:
            await client.connect(
                self.url,
                namespaces=[namespace],
                auth={"token": self.token},
                transports=["websocket"],
                wait_timeout=WAIT_SECONDS,
            )
            update = await client.call("sync-step-1", b"\x00", namespace=namespace, timeout=10)
            if not isinstance(update, bytes):
                return f"sync-step-1 answered {update!r}"
            pycrdt.Doc().apply_update(update)
            await asyncio.sleep(LINGER_SECONDS)
            if namespace not in client.namespaces:
                return "dropped after syncing"
            return None
        finally:
            await client.disconnect()
