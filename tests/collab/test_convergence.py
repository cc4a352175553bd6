"""Every client and the stored log converge, whatever the edits, disconnects and restarts.

A hypothesis property over a live in-process server on SQLite: 3-5 clients on the native
`/collab` namespace and the y-websocket `/ws/<document>` route edit one document (inserts and
deletes in the Y.Text `body`, keys set in the Y.Map `fields`), drop their connection at
random (editing offline meanwhile), come back, and live through server restarts. Once every
client is back and quiet, all of them hold the same text and map, and so does a document
rebuilt from the database.

A client here is a minimal provider, as a browser's is: it sends each local change as it
happens, and on every (re)connect exchanges state vectors with the server and sends what the
server is missing. Each example uses a fresh document on one database per module.
"""

from __future__ import annotations

import asyncio
import itertools
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pycrdt
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from handlers.app import create_app
from realtime_cms.client import CollabClient
from realtime_cms.collab.protocol import (
    MESSAGE_SYNC,
    SYNC_STEP1,
    decode_message,
    sync_step1,
    sync_step2,
    sync_update,
)
from realtime_cms.collab.store import UpdateStore
from realtime_cms.config import Settings
from realtime_cms.db import create_engine, session_factory
from tests.support.harness import make_settings, start_harness
from tests.support.live import eventually
from tests.support.servers import free_port

NAMESPACE = "/collab"
EMPTY_UPDATE = b"\x00\x00"
UNLIMITED = 1 << 30
# Generous bounds: they stop a hang, they are not timing assertions.
CALL_SECONDS = 20.0
QUIESCE_SECONDS = 30.0
TRANSPORTS = ("native", "ywebsocket")
_documents = (f"notes:convergence-{n}" for n in itertools.count(1))


class Replica(ABC):
    """One client's copy of the document: a pycrdt Doc, sent on as it changes."""

    def __init__(self, document_id: str) -> None:
        self.document_id = document_id
        self.doc: pycrdt.Doc = pycrdt.Doc()
        self.body = self.doc.get("body", type=pycrdt.Text)
        self.fields = self.doc.get("fields", type=pycrdt.Map)
        self._remote = False
        self.doc.observe(self._on_change)

    @property
    @abstractmethod
    def connected(self) -> bool: ...

    @abstractmethod
    async def connect(self, url: str, token: str) -> None: ...

    @abstractmethod
    async def disconnect(self) -> None:
        """Drop the connection at once: changes not yet acknowledged may be lost in transit."""

    @abstractmethod
    async def settle(self) -> None:
        """Wait until every change handed to the connection so far has been sent (or acked)."""

    @abstractmethod
    def send(self, update: bytes) -> None: ...

    def state(self) -> tuple[str, dict[str, Any]]:
        return str(self.body), self.fields.to_py() or {}

    def apply_remote(self, update: bytes) -> None:
        self._remote = True
        try:
            self.doc.apply_update(update)
        finally:
            self._remote = False

    def _on_change(self, event: pycrdt.TransactionEvent) -> None:
        # Offline changes are not queued: the next connect sends what the server lacks.
        if not self._remote and self.connected:
            self.send(event.update)


class NativeReplica(Replica):
    """A client of the `/collab` Socket.IO namespace, as `CollabClient.join` speaks it."""

    def __init__(self, document_id: str) -> None:
        super().__init__(document_id)
        self.client: CollabClient | None = None
        self.sends: set[asyncio.Task[None]] = set()

    @property
    def connected(self) -> bool:
        return self.client is not None

    async def connect(self, url: str, token: str) -> None:
        client = CollabClient(url, token, timeout=CALL_SECONDS)
        client.sio.on("update", self._on_update, namespace=NAMESPACE)
        await client.connect()
        reply = await client.call(
            "join", {"document": self.document_id, "state_vector": self.doc.get_state()}
        )
        self.apply_remote(reply["update"])
        self.client = client
        missing = self.doc.get_update(reply["state_vector"])
        if missing != EMPTY_UPDATE:
            self.send(missing)

    async def disconnect(self) -> None:
        client, self.client = self.client, None
        if client is None:
            return
        # python-socketio waits out the whole timeout for acks lost with the connection.
        for task in self.sends:
            task.cancel()
        await asyncio.gather(*self.sends, return_exceptions=True)
        await client.sio.disconnect()

    async def settle(self) -> None:
        while self.sends:
            await asyncio.gather(*list(self.sends))

    def send(self, update: bytes) -> None:
        assert self.client is not None
        payload = {"document": self.document_id, "update": update}
        task = asyncio.get_running_loop().create_task(self._call(self.client, payload))
        self.sends.add(task)
        task.add_done_callback(self.sends.discard)

    @staticmethod
    async def _call(client: CollabClient, payload: dict[str, Any]) -> None:
        await client.call("update", payload)

    async def _on_update(self, data: dict[str, Any]) -> None:
        if data.get("document") == self.document_id and isinstance(data.get("update"), bytes):
            self.apply_remote(data["update"])


class WebSocketReplica(Replica):
    """A client of `/ws/<document>`, as y-websocket's WebsocketProvider speaks it.

    y-websocket has no acknowledgements: `settle` only waits for frames to be written.
    """

    def __init__(self, document_id: str, http: aiohttp.ClientSession) -> None:
        super().__init__(document_id)
        self.http = http
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.outbox: asyncio.Queue[bytes] = asyncio.Queue()
        self.tasks: list[asyncio.Task[None]] = []

    @property
    def connected(self) -> bool:
        return self.ws is not None

    async def connect(self, url: str, token: str) -> None:
        ws = await self.http.ws_connect(
            f"{url}ws/{self.document_id}", params={"token": token}, max_msg_size=UNLIMITED
        )
        self.ws = ws
        self.outbox = asyncio.Queue()
        self.send_frame(sync_step1(self.doc.get_state()))
        self.tasks = [asyncio.create_task(self._read(ws)), asyncio.create_task(self._write(ws))]

    async def disconnect(self) -> None:
        ws, self.ws = self.ws, None
        if ws is None:
            return
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await ws.close()

    async def settle(self) -> None:
        if self.ws is not None:
            async with asyncio.timeout(CALL_SECONDS):
                await self.outbox.join()

    def send(self, update: bytes) -> None:
        self.send_frame(sync_update(update))

    def send_frame(self, frame: bytes) -> None:
        self.outbox.put_nowait(frame)

    async def _write(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        while True:
            frame = await self.outbox.get()
            try:
                await ws.send_bytes(frame)
            finally:
                self.outbox.task_done()

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for message in ws:
            if message.type is not aiohttp.WSMsgType.BINARY:
                continue
            decoded = decode_message(message.data, max_update_bytes=UNLIMITED)
            if decoded.kind != MESSAGE_SYNC:
                continue  # awareness is not under test here
            if decoded.sync_type == SYNC_STEP1:
                self.send_frame(sync_step2(self.doc.get_update(decoded.payload)))
            else:
                self.apply_remote(decoded.payload)


class LiveServer:
    """The app on a fixed port, stopped and started again on the same database."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.runner: web.AppRunner | None = None

    async def start(self) -> None:
        runner = web.AppRunner(create_app(self.settings), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()
        self.runner = runner

    async def stop(self) -> None:
        runner, self.runner = self.runner, None
        if runner is not None:
            await runner.cleanup()


@dataclass(frozen=True)
class Insert:
    client: int
    index: int
    text: str


@dataclass(frozen=True)
class Delete:
    client: int
    index: int
    length: int


@dataclass(frozen=True)
class SetField:
    client: int
    key: str
    value: int


@dataclass(frozen=True)
class Disconnect:
    client: int


@dataclass(frozen=True)
class Reconnect:
    client: int


@dataclass(frozen=True)
class Settle:
    client: int


@dataclass(frozen=True)
class Restart:
    pass


@dataclass(frozen=True)
class Pause:
    seconds: float


Step = Insert | Delete | SetField | Disconnect | Reconnect | Settle | Restart | Pause
client_ids = st.integers(0, 4)
edits: st.SearchStrategy[Step] = st.one_of(
    st.builds(Insert, client_ids, st.integers(0, 200), st.text("abxy \n", min_size=1, max_size=6)),
    st.builds(Delete, client_ids, st.integers(0, 200), st.integers(1, 4)),
    st.builds(SetField, client_ids, st.sampled_from("abc"), st.integers(0, 9)),
)
controls: st.SearchStrategy[Step] = st.one_of(
    st.builds(Disconnect, client_ids),
    st.builds(Reconnect, client_ids),
    st.builds(Settle, client_ids),
    st.just(Restart()),
    st.builds(Pause, st.sampled_from([0.0, 0.005, 0.02])),
)
# one_of draws uniformly from its (flattened) branches: this weights edits about 2:1.
steps = st.one_of(edits, edits, edits, controls)


@dataclass
class Database:
    settings: Settings
    token: str
    url: str


@pytest.fixture(scope="module")
async def database(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Database]:
    """A migrated SQLite database with an admin's login token (admins open any document)."""
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('convergence') / 'db.sqlite3'}"
    # A tiny grace period: a document every client left unloads, and loads again from the log.
    config = make_settings(
        url, collab_idle_unload_seconds=0.05, collab_max_messages_per_second=100_000
    )
    harness = await start_harness(config)
    await harness.client.close()
    yield Database(config, harness.tokens["admin"], url)


@pytest.fixture(scope="module")
async def store(database: Database) -> AsyncIterator[UpdateStore]:
    """The test's own reader of the log, on its own engine."""
    engine = create_engine(database.url)
    async with UpdateStore(session_factory(engine)) as store:
        yield store
    await engine.dispose()


@pytest.fixture(scope="module")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def restart(replicas: list[Replica], server: LiveServer, token: str) -> None:
    """Stop the server (its clients drop first) and start it again; the online come back."""
    online = [replica for replica in replicas if replica.connected]
    for replica in online:
        await replica.disconnect()
    await server.stop()
    await server.start()
    for replica in online:
        await replica.connect(server.url, token)


async def run_step(step: Step, replicas: list[Replica], server: LiveServer, token: str) -> None:
    if isinstance(step, Pause):
        await asyncio.sleep(step.seconds)
        return
    if isinstance(step, Restart):
        await restart(replicas, server, token)
        return
    replica = replicas[step.client % len(replicas)]
    if isinstance(step, Insert):
        replica.body.insert(step.index % (len(replica.body) + 1), step.text)
    elif isinstance(step, Delete):
        if len(replica.body):
            start = step.index % len(replica.body)
            del replica.body[start : min(start + step.length, len(replica.body))]
    elif isinstance(step, SetField):
        replica.fields[step.key] = step.value
    elif isinstance(step, Disconnect):
        await replica.disconnect()
    elif isinstance(step, Reconnect):
        if not replica.connected:
            await replica.connect(server.url, token)
    else:
        await replica.settle()


async def quiesce(replicas: list[Replica], server: LiveServer, token: str) -> None:
    """Bring everyone back, wait for every send, then until all copies agree (bounded)."""
    for replica in replicas:
        if not replica.connected:
            await replica.connect(server.url, token)
    for replica in replicas:
        await replica.settle()
    await eventually(
        lambda: all(replica.state() == replicas[0].state() for replica in replicas),
        within=QUIESCE_SECONDS,
    )


async def stored_state(store: UpdateStore, document_id: str) -> tuple[str, dict[str, Any]]:
    stored = await store.load(document_id)
    doc: pycrdt.Doc = pycrdt.Doc()
    assert stored.apply_to(doc) == [], "logged updates still wait for missing ones"
    text, fields = doc.get("body", type=pycrdt.Text), doc.get("fields", type=pycrdt.Map)
    return str(text), fields.to_py() or {}


@pytest.fixture(scope="module")
def examples() -> Iterator[Counter[str]]:
    """What the examples did, printed once the module's property has run."""
    counts: Counter[str] = Counter()
    yield counts
    print(f"\nconvergence: {dict(sorted(counts.items()))}")


@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    transports=st.lists(st.sampled_from(TRANSPORTS), min_size=3, max_size=5),
    script=st.lists(steps, min_size=30, max_size=120),
)
async def test_clients_and_the_log_converge_through_disconnects_and_restarts(
    database: Database,
    store: UpdateStore,
    http: aiohttp.ClientSession,
    examples: Counter[str],
    transports: list[str],
    script: list[Step],
) -> None:
    document_id = next(_documents)
    replicas: list[Replica] = [
        NativeReplica(document_id) if kind == "native" else WebSocketReplica(document_id, http)
        for kind in transports
    ]
    server = LiveServer(database.settings)
    await server.start()
    try:
        for replica in replicas:
            await replica.connect(server.url, database.token)
        for step in script:
            await run_step(step, replicas, server, database.token)
        await quiesce(replicas, server, database.token)
        agreed = replicas[0].state()
        assert await stored_state(store, document_id) == agreed
        fresh = NativeReplica(document_id)
        await fresh.connect(server.url, database.token)
        assert fresh.state() == agreed
        await fresh.disconnect()
    finally:
        for replica in replicas:
            await replica.disconnect()
        await server.stop()
    examples.update(
        ["examples", *(f"client:{kind}" for kind in transports)]
        + [type(step).__name__ for step in script]
    )
