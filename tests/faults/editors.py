"""Editors that type distinct tokens into live documents and account for every ack.

Each editor is a `CollabClient` whose `call` records how every event was answered. An
insert is one token (`<label>-<n> `) in its own transaction, so its own update; an editor
counts a token acknowledged once an `update` holding the token's last character (its
client id and clock) was answered `ok`. An ok ack of an update covering clock `c` of a
client also covers that client's earlier clocks: Yjs integrates a client's changes in clock
order and the room commits them in apply order, so an ok ack means all of them are in the
document and in the log (docs/protocol.md, "Durable acks"). A later resend that merges
several edits (a rejoin's or resync's diff) therefore acknowledges all of them.

A token never acknowledged may still be saved: a resync that finds the server holding it
sends nothing, so no ack names it. Once the editors have settled, every token must be
acknowledged or in the document; one that is neither is stranded in its client.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pycrdt

from realtime_cms.client import NAMESPACE, ClientDocument, CollabClient, CollabError
from realtime_cms.collab.protocol import read_var_uint, write_var_uint
from tests.faults.support import Cluster, digest

TEXT = "body"
# Another node serves a change it did not make within a couple of seconds (catch-up).
CONVERGE_SECONDS = 20.0


def decode_state_vector(encoded: bytes) -> dict[int, int]:
    count, pos = read_var_uint(encoded, 0)
    vector = {}
    for _ in range(count):
        client, pos = read_var_uint(encoded, pos)
        vector[client], pos = read_var_uint(encoded, pos)
    return vector


def encode_state_vector(vector: dict[int, int]) -> bytes:
    pairs = (write_var_uint(client) + write_var_uint(clock) for client, clock in vector.items())
    return write_var_uint(len(vector)) + b"".join(pairs)


def clock_reached(update: bytes, client: int, upper: int) -> int:
    """The clock just after `client`'s last change in `update` (0: none), at most `upper`.

    `pycrdt.get_state` cannot say (Yjs counts only updates starting at clock 0), so this
    searches for the smallest clock `c` such that the update holds nothing of the client
    beyond `c`: then `get_update(update, {client: c})` drops every change of the client.
    """
    try:
        bare = pycrdt.get_update(update, encode_state_vector({client: upper}))
        if pycrdt.get_update(update, encode_state_vector({client: 0})) == bare:
            return 0
        low, high = 0, upper
        while high - low > 1:
            middle = (low + high) // 2
            if pycrdt.get_update(update, encode_state_vector({client: middle})) == bare:
                high = middle
            else:
                low = middle
        return high
    except (ValueError, RuntimeError):
        return 0


@dataclass
class Tally:
    """What every editor of a test was answered: acks by outcome and latency, resyncs."""

    ok: int = 0
    refused: Counter[str] = field(default_factory=Counter)
    unanswered: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    sync_events: int = 0
    joins: int = 0
    reconnects: int = 0
    failed_connects: int = 0

    def answered(self, event: str, started: float, code: str | None) -> None:
        if event == "update":
            self.latencies.append(time.monotonic() - started)
            if code is None:
                self.ok += 1
        if code is not None:
            self.refused[f"{event}:{code}"] += 1

    @property
    def final_refusals(self) -> Counter[str]:
        """Refusals other than `store_unavailable`: that one says "not saved in time yet"
        (the machine or the database was slow), and the client resyncs; whether its edit
        then landed is the stranded-token check's to say, not a refusal."""
        return Counter(
            {key: n for key, n in self.refused.items() if not key.endswith(":store_unavailable")}
        )

    @property
    def slowest(self) -> float:
        return max(self.latencies, default=0.0)

    def summary(self) -> str:
        return (
            f"update acks ok {self.ok}, refused {dict(self.refused)}, unanswered "
            f"{dict(self.unanswered)}, slowest ack {self.slowest:.2f}s; sync events "
            f"{self.sync_events}, joins {self.joins}, reconnects {self.reconnects}, "
            f"failed connects {self.failed_connects}"
        )


class RecordingClient(CollabClient):
    """A `CollabClient` whose every `call` is tallied; ok acks of updates are reported to
    `on_ok_update`. The server's `sync` requests are counted (and still handled by the
    client, when it handles them)."""

    def __init__(
        self, url: str, token: str, tally: Tally, on_ok_update: Callable[[bytes], None], **kw: Any
    ) -> None:
        super().__init__(url, token, **kw)
        self.tally = tally
        self.on_ok_update = on_ok_update
        original = self.sio.handlers.get(NAMESPACE, {}).get("sync")

        async def on_sync(*args: Any) -> None:
            tally.sync_events += 1
            if original is not None:
                result = original(*args)
                if asyncio.iscoroutine(result):
                    await result

        self.sio.on("sync", on_sync, namespace=NAMESPACE)

    async def call(self, event: str, payload: dict[str, Any]) -> dict[str, Any]:
        started = time.monotonic()
        if event == "join":
            self.tally.joins += 1
        try:
            reply = await super().call(event, payload)
        except CollabError as exc:
            self.tally.answered(event, started, exc.code)
            raise
        except Exception as exc:
            self.tally.unanswered[f"{event}:{type(exc).__name__}"] += 1
            raise
        self.tally.answered(event, started, None)
        if event == "update" and isinstance(payload.get("update"), bytes):
            self.on_ok_update(payload["update"])
        return reply


@dataclass(frozen=True, slots=True)
class Typed:
    """A token an editor inserted: its client id and the clock just after its last char."""

    token: str
    client: int
    clock: int


class Editor:
    """Types tokens into one document through one of the nodes, reconnecting as needed.

    `home` is the node it prefers; when that node is down it edits through another one and
    goes home once `ready(home)` holds again.
    """

    def __init__(
        self,
        label: str,
        document_id: str,
        urls: Sequence[str],
        home: int,
        token: str,
        tally: Tally,
        *,
        ready: Callable[[int], bool] = lambda node: True,
        timeout: float = 25.0,
        msgpack: bool = False,
        seed: int = 0,
    ) -> None:
        self.label = label
        self.document_id = document_id
        self.urls = list(urls)
        self.home = home
        self.ready = ready
        self.tally = tally
        self.rng = random.Random(seed)
        self.client = RecordingClient(
            self.urls[home], token, tally, self._acked, timeout=timeout, msgpack=msgpack
        )
        self.document: ClientDocument | None = None
        self.node: int | None = None
        self.typed: list[Typed] = []
        self.direct: set[str] = set()
        self.acked_clock: dict[int, int] = {}
        self._updates: dict[bytes, str] = {}
        self._typing: str | None = None

    @property
    def connected(self) -> bool:
        return self.client.sio.connected and NAMESPACE in self.client.sio.namespaces

    async def connect(self, node: int) -> None:
        """(Re)connect through `node` and (re)join, which sends what the server lacks."""
        if self.client.sio.connected:
            await self.client.sio.disconnect()
        self.node = None
        self.client.url = self.urls[node]
        await self.client.connect()
        document = await self.client.join(self.document_id)
        if self.document is None:
            document.doc.observe(self._observe)
        self.document, self.node = document, node

    async def reconnect(self, deadline: float) -> bool:
        """Connect through home, else any other node, until `deadline` (monotonic)."""
        while time.monotonic() < deadline:
            order = [self.home, *(n for n in range(len(self.urls)) if n != self.home)]
            for node in order:
                try:
                    await self.connect(node)
                    self.tally.reconnects += 1
                    return True
                except Exception:
                    self.tally.failed_connects += 1
            await asyncio.sleep(0.3)
        return False

    async def type_until(self, stop: asyncio.Event, interval: float) -> None:
        """Insert a token every `interval` seconds (jittered) until `stop` is set."""
        while not stop.is_set():
            if not self.connected:
                await self.reconnect(time.monotonic() + 5.0)
            elif self.node != self.home and self.ready(self.home) and self.rng.random() < 0.3:
                await self.reconnect(time.monotonic() + 5.0)
            else:
                self.type_one()
            await asyncio.sleep(interval * self.rng.uniform(0.5, 1.5))

    def type_one(self) -> None:
        """Insert the next token between two tokens (never inside one), as one update."""
        assert self.document is not None
        doc = self.document.doc
        text = doc.get(TEXT, type=pycrdt.Text)
        current = str(text)
        boundaries = [0, *(i + 1 for i, char in enumerate(current) if char == " ")]
        token = f"{self.label}-{len(self.typed)}"
        self._typing = token
        try:
            text.insert(self.rng.choice(boundaries), token + " ")
        finally:
            self._typing = None
        clock = decode_state_vector(doc.get_state()).get(doc.client_id, 0)
        self.typed.append(Typed(token, doc.client_id, clock))

    def _observe(self, event: pycrdt.TransactionEvent) -> None:
        if self._typing is not None:
            self._updates[event.update] = self._typing

    def _acked(self, update: bytes) -> None:
        if self.document is None:
            return
        token = self._updates.pop(update, None)
        if token is not None:
            self.direct.add(token)
        doc = self.document.doc
        upper = decode_state_vector(doc.get_state()).get(doc.client_id, 0)
        reached = clock_reached(update, doc.client_id, upper)
        if reached > self.acked_clock.get(doc.client_id, 0):
            self.acked_clock[doc.client_id] = reached

    @property
    def acked(self) -> list[str]:
        """Every token an ok ack covers."""
        return [t.token for t in self.typed if t.clock <= self.acked_clock.get(t.client, 0)]

    @property
    def unacked(self) -> list[str]:
        """Every token typed that no ok ack covers."""
        acked = set(self.acked)
        return [t.token for t in self.typed if t.token not in acked]

    def state(self) -> str:
        """What the client went through, for a report on tokens it did not get saved."""
        document = self.document
        if document is None:
            return f"{self.label}: never joined"
        refusals = Counter(refusal.code for refusal in document.refusals)
        errors = Counter(error.code for error in document.errors)
        return (
            f"{self.label} on {self.document_id}: typed {len(self.typed)}, acknowledged "
            f"{len(self.acked)}, connected {self.connected}, resync rounds {document.resyncs}, "
            f"refusals {dict(refusals)}, errors {dict(errors)}"
        )

    async def settle(self, within: float, grace: float = 8.0) -> None:
        """Reconnect if needed and wait for every ack; then give the client up to `grace`
        seconds more to have every token acknowledged (a fixed client resends by itself)."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if not self.connected:
                if not await self.reconnect(deadline):
                    return
                continue
            assert self.document is not None
            try:
                await asyncio.wait_for(self.document.flush(), deadline - time.monotonic())
            except TimeoutError:
                return
            except Exception:
                continue  # a call of a connection that died: flush again
            if len(self.acked) == len(self.typed):
                return
            deadline = min(deadline, time.monotonic() + grace)
            await asyncio.sleep(0.5)

    async def close(self) -> None:
        if self.client.sio.connected:
            await self.client.sio.disconnect()


@dataclass
class Crew:
    """The editors of one test, typing together."""

    editors: list[Editor]
    tally: Tally
    interval: float
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    @classmethod
    async def start(
        cls,
        urls: Sequence[str],
        tokens: Sequence[str],
        documents: Sequence[str],
        *,
        updates_per_second: float,
        ready: Callable[[int], bool] = lambda node: True,
        ack_timeout: float = 25.0,
        seed: int = 1,
    ) -> Crew:
        """One editor per token, spread over the nodes and documents (every second one
        speaks msgpack), joined and typing."""
        tally = Tally()
        editors = [
            Editor(
                f"e{n}",
                documents[n % len(documents)],
                urls,
                n % len(urls),
                token,
                tally,
                ready=ready,
                timeout=ack_timeout,
                msgpack=n % 4 >= 2,
                seed=seed * 1000 + n,
            )
            for n, token in enumerate(tokens)
        ]
        await asyncio.gather(*(editor.connect(editor.home) for editor in editors))
        crew = cls(editors, tally, interval=len(editors) / updates_per_second)
        crew.tasks = [
            asyncio.create_task(editor.type_until(crew.stop, crew.interval)) for editor in editors
        ]
        return crew

    async def finish(self, settle_seconds: float = 40.0) -> None:
        """Stop typing, let every editor settle, and disconnect them all."""
        await self.halt(settle_seconds)
        await self.close()

    async def halt(self, settle_seconds: float = 40.0) -> None:
        """Stop typing and let every editor settle (still connected)."""
        self.stop.set()
        await asyncio.gather(*self.tasks)
        await asyncio.gather(*(editor.settle(settle_seconds) for editor in self.editors))

    async def close(self) -> None:
        await asyncio.gather(*(editor.close() for editor in self.editors))

    def acked_by_document(self) -> dict[str, set[str]]:
        acked: dict[str, set[str]] = {}
        for editor in self.editors:
            acked.setdefault(editor.document_id, set()).update(editor.acked)
        return acked

    def unacked_by_document(self) -> dict[str, set[str]]:
        unacked: dict[str, set[str]] = {}
        for editor in self.editors:
            unacked.setdefault(editor.document_id, set()).update(editor.unacked)
        return unacked

    async def stranded(self, url: str, token: str) -> list[str]:
        """Problems if any token typed is neither acknowledged nor in the document a fresh
        client on `url` receives (or is there twice): each such token, and its editor."""
        missing = await missing_from(url, token, self.unacked_by_document())
        lost = sorted(token for tokens in missing.values() for token in tokens)
        if not lost:
            return []
        labels = {token.partition("-")[0] for token in lost}
        editors = [editor.state() for editor in self.editors if editor.label in labels]
        return [
            f"{len(lost)} tokens typed were neither acknowledged nor in the document "
            f"(stranded in their clients): {lost}",
            *editors,
        ]

    def summary(self) -> str:
        typed = sum(len(editor.typed) for editor in self.editors)
        acked = sum(len(editor.acked) for editor in self.editors)
        direct = sum(len(editor.direct) for editor in self.editors)
        seconds = time.monotonic() - self.started
        return (
            f"{len(self.editors)} editors, {typed} tokens typed in {seconds:.0f}s, {acked} "
            f"acknowledged ({direct} by their own update's ack), {typed - acked} never "
            f"acknowledged; {self.tally.summary()}"
        )


async def read_texts(url: str, token: str, documents: Sequence[str]) -> dict[str, str]:
    """Each document's text as a fresh client joining through `url` receives it."""
    async with CollabClient(url, token, timeout=30) as client:
        return {document: (await client.join(document)).text() for document in documents}


async def missing_from(url: str, token: str, expected: dict[str, set[str]]) -> dict[str, list[str]]:
    """The tokens of `expected` (acknowledged ones, say) that a fresh client on `url` does
    not find, or finds twice, per document."""
    texts = await read_texts(url, token, sorted(expected))
    missing = {}
    for document, tokens in expected.items():
        words = Counter(texts[document].split())
        gone = sorted(tokens - set(words))
        doubled = sorted(token + "(x2)" for token in tokens if words[token] > 1)
        if gone or doubled:
            missing[document] = gone + doubled
    return missing


async def missing_soon(
    url: str, token: str, acked: dict[str, set[str]], within: float
) -> dict[str, list[str]]:
    """`missing_from`, polled until nothing is missing or `within` seconds passed (another
    node catches up from the log within a couple of seconds)."""
    deadline = time.monotonic() + within
    while True:
        missing = await missing_from(url, token, acked)
        if not missing or time.monotonic() > deadline:
            return missing
        await asyncio.sleep(1.0)


async def served_everywhere(cluster: Cluster, crew: Crew, fault: str) -> list[str]:
    """Every acknowledged token on both nodes, then on fresh processes; the problems found."""
    acked = crew.acked_by_document()
    total = sum(len(tokens) for tokens in acked.values())
    print(f"\n{fault}: {crew.summary()}")
    if crew.tally.ok == 0 or total < len(crew.editors) * 3:
        # Acks are seen through `CollabClient.call`: a client sending updates another way
        # would make every check below pass for want of anything to check.
        return [f"only {total} tokens acknowledged ({crew.tally.ok} ok acks seen)"]
    missing: dict[str, dict[str, list[str]]] = {}
    (token,) = await cluster.tokens(1)
    problems = []
    for n, url in enumerate(cluster.urls):
        missing[f"node {n}"] = await missing_soon(url, token, acked, CONVERGE_SECONDS)
        # The editors have settled, their resyncs included: nothing may be left behind.
        problems += [f"node {n}: {line}" for line in await crew.stranded(url, token)]
    await cluster.restart_all()
    (token,) = await cluster.tokens(1)
    for n, url in enumerate(cluster.urls):
        missing[f"node {n} restarted"] = await missing_from(url, token, acked)
    for where, by_document in missing.items():
        lost = [token for tokens in by_document.values() for token in tokens]
        print(f"{fault}: {where}: {len(lost)} of {total} acknowledged tokens missing")
        if lost:
            problems.append(
                f"{where}: {len(lost)} of {total} acknowledged missing, e.g. {lost[:8]}"
            )
    if problems:
        problems.append("nodes' warnings and errors:\n" + digest(cluster.nodes, "WARNING", "ERROR"))
    return problems
