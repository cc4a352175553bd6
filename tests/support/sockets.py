"""Passive sockets on every transport that note when the server ends them (revocation tests).

Each one connects (on a document transport, takes its seat) and then sends nothing: what
ends it is the server's doing alone, so it tells an at-once reaction from an event's
re-check (an idle socket is only re-checked by the periodic sweep).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Self

import aiohttp
import socketio
from yarl import URL

from handlers.ywebsocket import SESSION_ENDED
from realtime_cms.client import CollabClient
from realtime_cms.notifications.hub import NAMESPACE as NOTIFICATIONS

# The at-once path must beat the periodic re-check by far (every seat is re-checked at
# least every 5 s, 10 s at worst): a generous bound on a reaction to a committed change.
AT_ONCE_SECONDS = 4.0
# What python-socketio's client reports when the server disconnected a namespace (rather
# than the connection failing).
SERVER_DISCONNECT = socketio.AsyncClient.reason.SERVER_DISCONNECT
# An empty Yjs update: what a client holding nothing answers a sync step 1 with.
EMPTY_UPDATE = b"\x00\x00"


class Passive:
    """What every passive socket shares: how the server ended it, once it did."""

    def __init__(self) -> None:
        self.gone = asyncio.Event()
        self.ending: Any = None

    def _ended(self, ending: Any) -> None:
        self.ending = ending
        self.gone.set()

    async def ended(self, within: float = AT_ONCE_SECONDS) -> Any:
        """How the server ended the socket (a disconnect reason, a close code); a
        TimeoutError if it did not within `within` seconds."""
        await asyncio.wait_for(self.gone.wait(), within)
        return self.ending

    async def still_open(self, seconds: float = 0.5) -> bool:
        """Whether the server leaves the socket open for `seconds` more."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.gone.wait(), seconds)
        return not self.gone.is_set()


class CollabSocket(Passive):
    """A `/collab` connection (`client`); join documents with `client.join`."""

    def __init__(self, url: str, token: str) -> None:
        super().__init__()
        self.client = CollabClient(url, token, timeout=10)
        self.client.sio.on("disconnect", self._ended, namespace="/collab")

    async def __aenter__(self) -> Self:
        await self.client.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.client.sio.connected:
            await self.client.sio.disconnect()


class _SocketIO(Passive):
    """A python-socketio client on one namespace."""

    def __init__(self, url: str, token: str, namespace: str) -> None:
        super().__init__()
        self.url, self.token, self.namespace = url, token, namespace
        self.sio = socketio.AsyncClient(reconnection=False)
        self.sio.on("disconnect", self._ended, namespace=namespace)

    async def __aenter__(self) -> Self:
        await self.sio.connect(
            self.url,
            namespaces=[self.namespace],
            auth={"token": self.token},
            transports=["websocket"],
            wait_timeout=10,
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.sio.connected:
            await self.sio.disconnect()


class YjsSocket(_SocketIO):
    """A y-socket.io seat (`/yjs|<document>`) that answers the server's sync step 1 with
    nothing, as a provider holding an empty document does, and is otherwise silent."""

    def __init__(self, url: str, token: str, document_id: str) -> None:
        super().__init__(url, token, f"/yjs|{document_id}")
        self.synced = asyncio.Event()
        self.sio.on("sync-step-1", self._sync_step1, namespace=self.namespace)

    def _sync_step1(self, state_vector: bytes) -> bytes:
        self.synced.set()
        return EMPTY_UPDATE

    async def __aenter__(self) -> Self:
        await super().__aenter__()
        # Seated: the server sends its sync step 1 once the seat is taken.
        await asyncio.wait_for(self.synced.wait(), 10)
        return self


class NotificationsSocket(_SocketIO):
    """A `/notifications` connection; `told` is set by the server's `session_ended`."""

    def __init__(self, url: str, token: str) -> None:
        super().__init__(url, token, NOTIFICATIONS)
        self.told = asyncio.Event()
        self.sio.on("session_ended", self._told, namespace=NOTIFICATIONS)

    def _told(self, data: Any) -> None:
        self.told.set()


class WsSocket(Passive):
    """A y-websocket seat (`/ws/<document>`) that reads what the server sends and sends
    nothing; `ended()` gives the close code."""

    def __init__(self, url: str, token: str, document_id: str) -> None:
        super().__init__()
        self.url = URL(url).with_path(f"/ws/{document_id}").with_query(token=token)
        self._stack = contextlib.AsyncExitStack()
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        http = await self._stack.enter_async_context(aiohttp.ClientSession())
        ws = await self._stack.enter_async_context(http.ws_connect(self.url))
        await ws.receive()  # the server's sync step 1: the seat is taken
        self._reader = asyncio.create_task(self._read(ws))
        return self

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for _ in ws:
            pass
        self._ended(ws.close_code)

    async def __aexit__(self, *exc: object) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        await self._stack.aclose()


# How each socket of `on_every_transport` ends once its credential no longer holds.
REVOKED = [SERVER_DISCONNECT, SERVER_DISCONNECT, SESSION_ENDED, SERVER_DISCONNECT]


async def on_every_transport(
    stack: contextlib.AsyncExitStack, url: str, token: str, document_id: str
) -> list[Passive]:
    """One passive socket of `token` per transport (closed with `stack`): `/collab` joined
    to the document, its `/yjs` and `/ws` seats, and `/notifications`."""
    collab = await stack.enter_async_context(CollabSocket(url, token))
    await collab.client.join(document_id)
    return [
        collab,
        await stack.enter_async_context(YjsSocket(url, token, document_id)),
        await stack.enter_async_context(WsSocket(url, token, document_id)),
        await stack.enter_async_context(NotificationsSocket(url, token)),
    ]


async def endings(sockets: list[Passive], within: float = AT_ONCE_SECONDS) -> list[Any]:
    """How each socket ended (see `Passive.ended`), all within `within` seconds."""
    return list(await asyncio.gather(*(socket.ended(within) for socket in sockets)))
