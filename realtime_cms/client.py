"""A Python client for the `/collab` namespace: live pycrdt documents over Socket.IO.

    async with CollabClient("http://127.0.0.1:8080", token) as client:
        doc = await client.join("content:1")
        text = doc.doc.get("body", type=pycrdt.Text)
        text += "hello"
        await doc.flush()          # every local change acknowledged as durable

Local changes are sent as they happen and acknowledged by the server once committed;
`flush()` waits for every acknowledgement. Remote changes are applied as they arrive. When
the server answers that a change is not saved yet (`store_unavailable`, `store_failed`,
`too_many_pending`, `missing_dependencies`, `room_closed`, `rate_limited`), the document
resyncs by itself (a `sync` round, sending what the server lacks) with backoff until it is
saved, and when the server asks for what it lacks (its `sync` event), the document sends
it: no change is stranded in the client.
"""

from __future__ import annotations

import asyncio
import logging
import random
from types import TracebackType
from typing import Any, Self

import pycrdt
import socketio

log = logging.getLogger(__name__)

NAMESPACE = "/collab"
EMPTY_UPDATE = b"\x00\x00"
# Codes that mean "not saved: keep the change and send it again" (docs/protocol.md).
RESYNC_CODES = frozenset(
    {
        "store_unavailable",
        "store_failed",
        "too_many_pending",
        "missing_dependencies",
        "room_closed",
        "rate_limited",
    }
)
# Codes after which the document must be joined again before it can sync.
_REJOIN_CODES = frozenset({"room_closed", "not_joined"})
_RETRY_CODES = RESYNC_CODES | _REJOIN_CODES
_MIN_BACKOFF, _MAX_BACKOFF = 0.2, 5.0


class CollabError(Exception):
    """The server refused an event; `code` is the stable error code of docs/protocol.md."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def _unwrap(reply: Any) -> dict[str, Any]:
    if not isinstance(reply, dict) or "ok" not in reply:
        raise CollabError("bad_reply", f"unexpected acknowledgement {reply!r}")
    if not reply["ok"]:
        error = reply.get("error") or {}
        raise CollabError(str(error.get("code")), str(error.get("message")))
    return reply


class ClientDocument:
    """One joined document: a pycrdt `Doc` kept in sync with the server."""

    def __init__(self, client: CollabClient, document_id: str, role: str) -> None:
        self.client = client
        self.document_id = document_id
        self.role: str | None = role
        self.doc: pycrdt.Doc = pycrdt.Doc()
        self._remote = False
        self._pending: set[asyncio.Task[None]] = set()
        self._resync: asyncio.Task[None] | None = None
        # Refusals the document cannot get past by itself (`read_only`, `no_access`, ...).
        self.errors: list[CollabError] = []
        # Answers that a change was not saved yet (`RESYNC_CODES`, or not seated any more):
        # each one starts a resync, so none of them is an error.
        self.refusals: list[CollabError] = []
        # How many sync rounds (or joins) the document ran to get refused changes saved.
        self.resyncs = 0
        self.doc.observe(self._on_local_change)

    def _on_local_change(self, event: pycrdt.TransactionEvent) -> None:
        if self._remote or self.role is None:
            return
        self._track(self._send(event.update))

    def _track(self, work: Any) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(work)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
        return task

    async def _send(self, update: bytes) -> None:
        try:
            await self.client.call("update", {"document": self.document_id, "update": update})
        except CollabError as exc:
            if not self.not_saved_yet(exc):
                self.errors.append(exc)
        except (TimeoutError, socketio.exceptions.SocketIOError) as exc:
            # No answer (or no connection): the change is kept; sync until it is saved
            # (after a reconnect the join sends it).
            log.info("update on %s not answered (%r); resyncing", self.document_id, exc)
            self.resync()

    def send_missing(self, state_vector: bytes) -> None:
        """Send what a holder of `state_vector` lacks (the server's `sync` request)."""
        if self.role in (None, "read"):
            return
        missing = self.doc.get_update(state_vector)
        if missing != EMPTY_UPDATE:
            self._track(self._send(missing))

    def not_saved_yet(self, exc: CollabError) -> bool:
        """Whether `exc` says a change is not saved yet (`RESYNC_CODES`, not seated any
        more); if so it is noted in `refusals` and a resync gets the change in."""
        if exc.code not in _RETRY_CODES:
            return False
        self.refusals.append(exc)
        self.resync(rejoin=exc.code in _REJOIN_CODES)
        return True

    def resync(self, *, rejoin: bool = False) -> None:
        """Sync with the server until what this client holds is saved (one resync at a time:
        one already running goes on until nothing is left to send, later changes included)."""
        if self._resync is None or self._resync.done():
            self._resync = self._track(self._resync_until_saved(rejoin))

    async def _resync_until_saved(self, rejoin: bool) -> None:
        """Sync rounds (after a join, with `rejoin`) until one finds nothing to send: the
        server answers `sync` only once what it holds is in the log, so then all is saved.
        A round that had something to send is followed by another one at once, which also
        picks up changes refused while it ran."""
        delay = _MIN_BACKOFF
        while self.role is not None and self.client.sio.connected:
            self.resyncs += 1
            try:
                if rejoin:
                    await self.client.join(self.document_id)
                    rejoin = False
                elif not await self._sync_round():
                    return
                continue
            except CollabError as exc:
                if exc.code not in _RETRY_CODES:
                    self.errors.append(exc)
                    return
                self.refusals.append(exc)
                rejoin = exc.code in _REJOIN_CODES
            except (TimeoutError, socketio.exceptions.SocketIOError) as exc:
                log.info("resync of %s failed (%r); retrying", self.document_id, exc)
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(2 * delay, _MAX_BACKOFF)

    async def _sync_round(self) -> bool:
        """Get what this client lacks, then send what the server lacks and wait for its ack;
        False when there was nothing to send."""
        payload = {"document": self.document_id, "state_vector": self.doc.get_state()}
        reply = await self.client.call("sync", payload)
        self.apply_remote(reply["update"])
        missing = self.doc.get_update(reply["state_vector"])
        if self.role == "read" or missing == EMPTY_UPDATE:
            return False
        await self.client.call("update", {"document": self.document_id, "update": missing})
        return True

    def apply_remote(self, update: bytes) -> None:
        self._remote = True
        try:
            self.doc.apply_update(update)
        finally:
            self._remote = False

    async def flush(self) -> None:
        """Wait until every local change sent so far is saved (acknowledged, or resynced
        until saved), refused for good (`errors`), or the connection is gone."""
        while self._pending:
            await asyncio.gather(*list(self._pending))

    async def send_awareness(self, awareness_update: bytes) -> None:
        await self.client.call(
            "awareness", {"document": self.document_id, "update": awareness_update}
        )

    def text(self, name: str = "body") -> str:
        return str(self.doc.get(name, type=pycrdt.Text))


class CollabClient:
    """A connection to `/collab` carrying any number of documents; `msgpack=True` speaks
    msgpack framing (the server's `/socket.io-msgpack/` endpoint)."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        timeout: float = 30.0,
        msgpack: bool = False,
        **client_options: Any,
    ) -> None:
        self.url = url
        self.token = token
        self.timeout = timeout
        self.path = "socket.io-msgpack" if msgpack else "socket.io"
        serializer = "msgpack" if msgpack else "default"
        self.sio = socketio.AsyncClient(reconnection=False, serializer=serializer, **client_options)
        self.documents: dict[str, ClientDocument] = {}
        self.awareness: list[tuple[str, bytes]] = []
        self.permissions: list[tuple[str, str | None]] = []
        self.sio.on("update", self._on_update, namespace=NAMESPACE)
        self.sio.on("awareness", self._on_awareness, namespace=NAMESPACE)
        self.sio.on("permission", self._on_permission, namespace=NAMESPACE)
        self.sio.on("sync", self._on_sync, namespace=NAMESPACE)

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def connect(self, headers: dict[str, str] | None = None) -> None:
        await self.sio.connect(
            self.url,
            namespaces=[NAMESPACE],
            auth={"token": self.token},
            transports=["websocket"],
            headers=headers or {},
            wait_timeout=self.timeout,
            socketio_path=self.path,
        )

    async def close(self) -> None:
        for document in self.documents.values():
            await document.flush()
        await self.sio.disconnect()

    async def call(self, event: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Emit an event and return its acknowledgement; CollabError when refused."""
        reply = await self.sio.call(event, payload, namespace=NAMESPACE, timeout=self.timeout)
        return _unwrap(reply)

    async def join(self, document_id: str) -> ClientDocument:
        """Join a document, receive its state, and send what only this client has."""
        document = self.documents.get(document_id)
        vector = document.doc.get_state() if document else b""
        reply = await self.call("join", {"document": document_id, "state_vector": vector})
        if document is None:
            document = ClientDocument(self, document_id, str(reply["role"]))
            self.documents[document_id] = document
        document.role = str(reply["role"])
        document.apply_remote(reply["update"])
        missing = document.doc.get_update(reply["state_vector"])
        if document.role != "read" and missing != EMPTY_UPDATE:
            try:
                await self.call("update", {"document": document_id, "update": missing})
            except CollabError as exc:
                # Seated, but what only this client has is not saved yet: resync it.
                if not document.not_saved_yet(exc):
                    raise
        return document

    async def leave(self, document_id: str) -> None:
        document = self.documents.pop(document_id, None)
        if document is not None:
            await document.flush()
        await self.call("leave", {"document": document_id})

    async def _on_update(self, data: dict[str, Any]) -> None:
        document = self.documents.get(data.get("document", ""))
        if document is not None and isinstance(data.get("update"), bytes):
            document.apply_remote(data["update"])

    async def _on_sync(self, data: dict[str, Any]) -> None:
        """The server holds an update of ours whose dependencies it lacks: send them."""
        document = self.documents.get(data.get("document", ""))
        if document is not None and isinstance(data.get("state_vector"), bytes):
            document.send_missing(data["state_vector"])

    async def _on_awareness(self, data: dict[str, Any]) -> None:
        self.awareness.append((str(data.get("document")), bytes(data.get("update", b""))))

    async def _on_permission(self, data: dict[str, Any]) -> None:
        document_id, role = str(data.get("document")), data.get("role")
        self.permissions.append((document_id, role))
        document = self.documents.get(document_id)
        if document is not None:
            document.role = role
