"""Attackers for the socket fuzz: raw WebSocket connections speaking (or breaking) Engine.IO,
Socket.IO (JSON and msgpack framing) and y-websocket, at a steady pace.

They share a frame budget per transport (`Quota`) and reconnect whenever the server closes
them, which it may do for any refused message on `/ws` and `/yjs|<doc>`, for a rate limit,
or for junk packets. What came back is tallied in `Counts` for the report.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import msgpack
from socketio import packet

from tests.faults.fuzzgen import CollabFuzz, Material, engine_junk, ws_frame, yjs_event

# Frames a second per connection: under the server's default limit of 400 messages a second
# (RCMS_COLLAB_MAX_MESSAGES_PER_SECOND), so that fuzz reaches the handlers, not the limiter.
RATE = 300.0
# Every so often a `/collab` attacker floods instead, to be rate limited (and carry on).
FLOOD_EVERY_SECONDS = 12.0
FLOOD_FRAMES = 450
CONNECT_SECONDS = 10.0
_ACK = re.compile(r"^[36](?:\d+-)?(/[^,]*),(\d+)")
_CODE = re.compile(r'"code":"([A-Za-z_]+)"')
Frame = str | bytes


@dataclass
class Counts:
    """What every attacker sent, and what the server answered, by transport."""

    frames: Counter[str] = field(default_factory=Counter)
    answers: Counter[str] = field(default_factory=Counter)
    closes: Counter[str] = field(default_factory=Counter)
    connections: Counter[str] = field(default_factory=Counter)
    refused_connections: Counter[str] = field(default_factory=Counter)

    @property
    def total(self) -> int:
        return sum(self.frames.values())

    def summary(self) -> str:
        def top(counter: Counter[str], n: int = 14) -> str:
            return ", ".join(f"{key} {count}" for key, count in counter.most_common(n))

        return (
            f"frames {dict(self.frames)} (total {self.total}); connections "
            f"{dict(self.connections)}, refused {dict(self.refused_connections)}\n"
            f"  answers: {top(self.answers)}\n  closes: {top(self.closes)}"
        )


class Quota:
    """The frames left to send, per transport."""

    def __init__(self, budgets: dict[str, int]) -> None:
        self.left = dict(budgets)

    def take(self, kind: str, frames: int) -> bool:
        if self.left[kind] <= 0:
            return False
        self.left[kind] -= frames
        return True

    def open(self, kind: str) -> bool:
        return self.left[kind] > 0


class Pace:
    """Keeps one connection at `RATE` frames a second, with a flood now and then."""

    def __init__(self, rng: random.Random, floods: bool) -> None:
        self.start = time.monotonic()
        self.sent = 0
        self.floods = floods
        self.next_flood = self.start + rng.uniform(2, FLOOD_EVERY_SECONDS)
        self.flooding = 0

    async def tick(self, frames: int) -> None:
        self.sent += frames
        if self.flooding > 0:
            self.flooding -= frames
            if self.flooding <= 0:
                self.start, self.sent = time.monotonic(), 0  # a clean second after the flood
            return
        now = time.monotonic()
        if self.floods and now > self.next_flood:
            self.flooding, self.next_flood = FLOOD_FRAMES, now + FLOOD_EVERY_SECONDS
        ahead = self.sent / RATE - (now - self.start)
        if ahead > 0.005:
            await asyncio.sleep(ahead)


def json_frames(namespace: str, event: str, args: Sequence[Any], ack: int | None) -> list[Frame]:
    """An event as the default Socket.IO parser frames it over Engine.IO's WebSocket."""
    encoded = packet.Packet(packet.EVENT, data=[event, *args], namespace=namespace, id=ack).encode()
    if isinstance(encoded, str):
        return ["4" + encoded]
    return ["4" + encoded[0], *encoded[1:]]


def msgpack_frames(namespace: str, event: str, args: Sequence[Any], ack: int | None) -> list[Frame]:
    """An event as socket.io-msgpack-parser frames it: one binary frame."""
    body: dict[str, Any] = {"type": packet.EVENT, "nsp": namespace, "data": [event, *args]}
    if ack is not None:
        body["id"] = ack
    return [bytes(msgpack.dumps(body))]


class EngineSocket:
    """One raw Engine.IO v4 WebSocket: pings answered and acks tallied by a reader task."""

    def __init__(
        self, ws: aiohttp.ClientWebSocketResponse, kind: str, counts: Counts, budget: str
    ) -> None:
        self.ws = ws
        self.kind = kind
        self.budget = budget
        self.counts = counts
        self.msgpack = kind.endswith("msgpack")
        self.connected: dict[str, asyncio.Future[bool]] = {}
        self.acks: dict[int, asyncio.Future[None]] = {}
        self.reader = asyncio.create_task(self._read())
        self.next_id = 0

    @classmethod
    async def open(
        cls, http: aiohttp.ClientSession, url: str, kind: str, counts: Counts, budget: str = ""
    ) -> EngineSocket | None:
        """Open the Engine.IO session; `kind` ending in "msgpack" speaks msgpack framing,
        `budget` is the quota its frames count against (`kind` by default)."""
        path = "socket.io-msgpack" if kind.endswith("msgpack") else "socket.io"
        try:
            ws = await http.ws_connect(
                f"{url}/{path}/?EIO=4&transport=websocket", autoping=True, max_msg_size=0
            )
            opening = await ws.receive(timeout=CONNECT_SECONDS)
        except (aiohttp.ClientError, TimeoutError, ConnectionError):
            counts.refused_connections[kind] += 1
            return None
        if opening.type is not aiohttp.WSMsgType.TEXT or not str(opening.data).startswith("0"):
            counts.refused_connections[kind] += 1
            await ws.close()
            return None
        counts.connections[kind] += 1
        return cls(ws, kind, counts, budget or kind)

    @property
    def closed(self) -> bool:
        return self.ws.closed or self.reader.done()

    def ack_id(self) -> int:
        self.next_id += 1
        return self.next_id

    async def join_namespace(self, namespace: str, token: str) -> bool:
        """Socket.IO CONNECT with `auth: {token}`; whether the server admitted it."""
        waiter = asyncio.get_running_loop().create_future()
        self.connected[namespace] = waiter
        auth = {"token": token}
        if self.msgpack:
            frame: Frame = bytes(msgpack.dumps({"type": 0, "nsp": namespace, "data": auth}))
        else:
            frame = "4" + packet.Packet(packet.CONNECT, data=auth, namespace=namespace).encode()
        if not await self.send([frame]):
            return False
        try:
            return await asyncio.wait_for(waiter, CONNECT_SECONDS)
        except TimeoutError:
            return False

    async def call(self, namespace: str, event: str, args: Sequence[Any]) -> bool:
        """An event whose ack is awaited (a join before the fuzz)."""
        ack = self.ack_id()
        waiter = asyncio.get_running_loop().create_future()
        self.acks[ack] = waiter
        encode = msgpack_frames if self.msgpack else json_frames
        if not await self.send(encode(namespace, event, args, ack)):
            return False
        try:
            await asyncio.wait_for(waiter, CONNECT_SECONDS)
            return True
        except TimeoutError:
            return False

    async def send(self, frames: Sequence[Frame]) -> bool:
        """Send frames; False once the connection is gone."""
        if self.closed:
            return False
        try:
            for frame in frames:
                if isinstance(frame, str):
                    await self.ws.send_str(frame)
                else:
                    await self.ws.send_bytes(frame)
        except (ConnectionError, RuntimeError, aiohttp.ClientError):
            return False
        self.counts.frames[self.budget] += len(frames)
        return True

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.ws.close()
        self.reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.reader

    async def _read(self) -> None:
        ws = self.ws
        try:
            async for message in ws:
                if message.type is aiohttp.WSMsgType.TEXT:
                    if message.data == "2":
                        await ws.send_str("3")
                    elif message.data.startswith("4"):
                        self._text_packet(message.data[1:])
                elif message.type is aiohttp.WSMsgType.BINARY and self.msgpack:
                    self._msgpack_packet(message.data)
        except (ConnectionError, RuntimeError, aiohttp.ClientError):
            pass
        finally:
            self.counts.closes[f"{self.kind}:{ws.close_code}"] += 1
            for waiter in [*self.connected.values(), *self.acks.values()]:
                if not waiter.done():
                    waiter.set_result(False)

    def _text_packet(self, text: str) -> None:
        kind = text[:1]
        if kind in ("0", "4"):
            namespace = text[1:].split(",", 1)[0]
            self._admitted(namespace if namespace.startswith("/") else "/", kind == "0")
            return
        found = _ACK.match(text)
        if found is None:
            return
        code = _CODE.search(text) if '"ok":false' in text else None
        self.counts.answers[f"{self.kind}:{code.group(1) if code else 'ok'}"] += 1
        self._acked(int(found.group(2)))

    def _msgpack_packet(self, data: bytes) -> None:
        try:
            decoded = msgpack.unpackb(data)
        except ValueError:
            return
        if not isinstance(decoded, dict):
            return
        kind, namespace = decoded.get("type"), str(decoded.get("nsp") or "/")
        if kind in (0, 4):
            self._admitted(namespace, kind == 0)
        elif kind == 3:
            reply = (decoded.get("data") or [None])[0]
            ok = isinstance(reply, dict) and reply.get("ok")
            code = "ok" if ok else str(((reply or {}).get("error") or {}).get("code"))
            self.counts.answers[f"{self.kind}:{code}"] += 1
            self._acked(int(decoded.get("id") or 0))

    def _admitted(self, namespace: str, admitted: bool) -> None:
        waiter = self.connected.get(namespace)
        if waiter is not None and not waiter.done():
            waiter.set_result(admitted)

    def _acked(self, ack: int) -> None:
        waiter = self.acks.pop(ack, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


@dataclass
class Target:
    """Where the attackers aim and who they are."""

    url: str
    documents: list[str]
    strangers: list[str]
    token: str
    role: str


async def pour(
    sock: EngineSocket,
    quota: Quota,
    budget: str,
    pace: Pace,
    frames: Callable[[EngineSocket], Sequence[Frame]],
) -> None:
    """Send `frames(sock)` at `pace` until the connection closes or `budget` is spent."""
    while not sock.closed:
        batch = frames(sock)
        if not quota.take(budget, len(batch)) or not await sock.send(batch):
            return
        await pace.tick(len(batch))


def yjs_frames(material: Material, namespace: str, sock: EngineSocket) -> list[Frame]:
    """One fuzzed y-socket.io event on `namespace`; `sync-step-1` asks for its ack."""
    event, args = yjs_event(material)
    ack = sock.ack_id() if event == "sync-step-1" else None
    return json_frames(namespace, event, args, ack)


async def attack_collab(
    http: aiohttp.ClientSession, target: Target, kind: str, quota: Quota, counts: Counts, seed: int
) -> None:
    """Fuzzed `/collab` events (JSON or msgpack framing) after joining the documents."""
    rng = random.Random(seed)
    fuzz = CollabFuzz(Material(rng), target.documents, target.strangers)
    encode = msgpack_frames if kind.endswith("msgpack") else json_frames
    while quota.open(kind):
        sock = await EngineSocket.open(http, target.url, kind, counts)
        if sock is None:
            await asyncio.sleep(0.2)
            continue
        try:
            if not await sock.join_namespace("/collab", target.token):
                continue
            for document in target.documents:
                await sock.call("/collab", "join", [{"document": document}])

            def frames(sock: EngineSocket) -> list[Frame]:
                event, args = fuzz.event()
                return encode("/collab", event, args, sock.ack_id() if rng.random() < 0.9 else None)

            await pour(sock, quota, kind, Pace(rng, floods=True), frames)
        finally:
            await sock.close()


async def attack_yjs(
    http: aiohttp.ClientSession, target: Target, quota: Quota, counts: Counts, seed: int
) -> None:
    """Fuzzed y-socket.io events on `/yjs|<document>` (a refusal drops the connection)."""
    rng = random.Random(seed)
    material = Material(rng)
    while quota.open("yjs"):
        sock = await EngineSocket.open(http, target.url, "yjs", counts)
        if sock is None:
            await asyncio.sleep(0.2)
            continue
        namespace = f"/yjs|{rng.choice(target.documents)}"
        try:
            if not await sock.join_namespace(namespace, target.token):
                continue
            await pour(
                sock,
                quota,
                "yjs",
                Pace(rng, floods=False),
                functools.partial(yjs_frames, material, namespace),
            )
        finally:
            await sock.close()


async def attack_engine(
    http: aiohttp.ClientSession, target: Target, quota: Quota, counts: Counts, seed: int
) -> None:
    """Junk at the Engine.IO and Socket.IO packet level, on both Socket.IO endpoints, from
    a connection that joined `/collab` first (so that junk meets a live namespace)."""
    rng = random.Random(seed)
    material = Material(rng)
    while quota.open("engine"):
        kind = rng.choice(["engine", "engine-msgpack"])
        sock = await EngineSocket.open(http, target.url, kind, counts, budget="engine")
        if sock is None:
            await asyncio.sleep(0.2)
            continue
        try:
            if not await sock.join_namespace("/collab", target.token):
                continue
            await pour(
                sock,
                quota,
                "engine",
                Pace(rng, floods=False),
                lambda _: [engine_junk(material, "/collab")],
            )
        finally:
            await sock.close()


async def attack_ws(
    http: aiohttp.ClientSession, target: Target, quota: Quota, counts: Counts, seed: int
) -> None:
    """y-websocket frames on `/ws/<document>`, a burst per connection (most refusals close)."""
    rng = random.Random(seed)
    material = Material(rng)
    while quota.open("ws"):
        document = rng.choice(target.documents)
        try:
            ws = await http.ws_connect(f"{target.url}/ws/{document}?token={target.token}")
        except (aiohttp.ClientError, ConnectionError):
            counts.refused_connections["ws"] += 1
            await asyncio.sleep(0.2)
            continue
        counts.connections["ws"] += 1
        reader = asyncio.create_task(_drain(ws, counts))
        try:
            pace = Pace(rng, floods=False)
            for _ in range(rng.randint(5, 80)):
                frame = ws_frame(material)
                if reader.done() or not quota.take("ws", 1):
                    break
                try:
                    if isinstance(frame, str):
                        await ws.send_str(frame)
                    else:
                        await ws.send_bytes(frame)
                except (ConnectionError, RuntimeError, aiohttp.ClientError):
                    break
                counts.frames["ws"] += 1
                await pace.tick(1)
        finally:
            with contextlib.suppress(Exception):
                await ws.close()
            await reader


async def _drain(ws: aiohttp.ClientWebSocketResponse, counts: Counts) -> None:
    with contextlib.suppress(ConnectionError, RuntimeError, aiohttp.ClientError):
        async for _ in ws:
            pass
    reason = ws.close_code
    counts.closes[f"ws:{reason}"] += 1
