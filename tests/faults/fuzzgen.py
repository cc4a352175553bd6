"""Seeded, cheap generators of hostile input for every transport of the collab server.

`Material` holds what the fuzz is made of, built once per attacker: chains of valid Yjs
updates of the attacker's own (so any order of them is meaningful: in order, duplicated,
or out of order with missing dependencies), state vectors, awareness updates. Everything
else is mutation and random choice, a few microseconds a message.

Attackers only ever write the roots `fuzz`, `fuzzmap` and `fuzzlist`: a writer may of
course delete anyone's text, but then "every acknowledged insert survives" could not be
checked. No mutation of at most three bytes turns those names into `body`, and mutated ids
land on random client ids, never (in practice) on an editor's.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any

import msgpack
import pycrdt

from realtime_cms.collab.protocol import (
    AwarenessEntry,
    awareness_message,
    encode_awareness_update,
    query_awareness,
    sync_step1,
    sync_step2,
    sync_update,
    write_var_string,
    write_var_uint,
)

CHAINS = 3
CHAIN_LENGTH = 150
MAX_UPDATE_BYTES = 256 * 1024
# varUints lib0 refuses (over 2**53) or that announce absurd lengths and counts.
HUGE_VARINTS = (
    b"\xff\xff\xff\xff\xff\xff\xff\x7f",
    b"\xff\xff\xff\xff\x0f",
    b"\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01",
    b"\xff" * 12,
    write_var_uint(2**53 - 1),
    write_var_uint(2**32),
)
COLLAB_EVENTS = ("join", "update", "awareness", "leave", "save_version")
YJS_EVENTS = ("sync-step-1", "sync-update", "awareness-update")


def _chain(rng: random.Random) -> list[bytes]:
    """One client's updates, each depending on the one before: text, map and array ops."""
    doc = pycrdt.Doc(client_id=rng.randrange(1, 2**31))
    updates: list[bytes] = []
    doc.observe(lambda event: updates.append(event.update))
    text = doc.get("fuzz", type=pycrdt.Text)
    fields = doc.get("fuzzmap", type=pycrdt.Map)
    items = doc.get("fuzzlist", type=pycrdt.Array)
    while len(updates) < CHAIN_LENGTH:
        roll = rng.random()
        if roll < 0.45 or not str(text):
            text.insert(rng.randint(0, len(str(text))), rng.choice(["x", "ab ", "q", "zz"]))
        elif roll < 0.6:
            start = rng.randrange(len(str(text)))
            del text[start : min(start + rng.randint(1, 3), len(str(text)))]
        elif roll < 0.8:
            fields[f"k{rng.randrange(20)}"] = rng.choice([1, "v", None, True, 2.5, [1, 2]])
        elif roll < 0.95 or not len(items):
            items.append(rng.randrange(1000))
        else:
            del items[0]
    return updates


def random_bytes(rng: random.Random, size: int) -> bytes:
    return rng.randbytes(size)


class Material:
    """One attacker's raw material and the variants drawn from it."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.chains = [_chain(rng) for _ in range(CHAINS)]
        self.cursor = [0] * CHAINS
        self.flat = [update for chain in self.chains for update in chain]
        self.client_ids = [rng.randrange(1, 2**31) for _ in range(4)]
        self.clock = 0
        alphabet = "abc xyz_-:./\\\"'\u00e9\u4e2d\U0001f600\x00\n"
        self.texts = [
            "".join(rng.choice(alphabet) for _ in range(rng.choice([0, 1, 4, 12, 40, 300])))
            for _ in range(400)
        ]
        self.big_states = [
            encode_awareness_update([AwarenessEntry(self.client_ids[0], 1, {"blob": "x" * size})])
            for size in (60_000, 70_000)
        ]
        self.awareness_pool = [self._awareness() for _ in range(300)]
        self.values = [self._value() for _ in range(300)]
        self._updates: list[tuple[float, Callable[[], bytes]]] = [
            (12, self.next_in_order),
            (8, self.duplicate),
            (12, self.out_of_order),
            (25, lambda: self.mutate(rng.choice(self.flat))),
            (10, lambda: random_bytes(rng, rng.choice([0, 1, 2, 3, 8, 30, 200]))),
            (5, self.huge),
            (3, lambda: b"\x00\x00"),
            (5, self.merged_run),
            (0.1, lambda: random_bytes(rng, MAX_UPDATE_BYTES + rng.randint(1, 64))),
        ]

    def pick(self, weighted: list[tuple[float, Callable[[], bytes]]]) -> bytes:
        makers = [make for _, make in weighted]
        weights = [weight for weight, _ in weighted]
        return self.rng.choices(makers, weights)[0]()

    # -- updates -------------------------------------------------------------------

    def update(self) -> bytes:
        """An update of some kind: valid, duplicate, out of order, mutated or junk."""
        return self.pick(self._updates)

    def next_in_order(self) -> bytes:
        chain = self.rng.randrange(CHAINS)
        index = self.cursor[chain] % CHAIN_LENGTH
        self.cursor[chain] += 1
        return self.chains[chain][index]

    def duplicate(self) -> bytes:
        chain = self.rng.randrange(CHAINS)
        return self.chains[chain][self.rng.randrange(max(self.cursor[chain] % CHAIN_LENGTH, 1))]

    def out_of_order(self) -> bytes:
        """A later update of a chain than its next one: its dependencies are missing."""
        chain = self.rng.randrange(CHAINS)
        ahead = self.cursor[chain] % CHAIN_LENGTH + self.rng.randint(2, 40)
        return self.chains[chain][min(ahead, CHAIN_LENGTH - 1)]

    def merged_run(self) -> bytes:
        chain = self.chains[self.rng.randrange(CHAINS)]
        start = self.rng.randrange(CHAIN_LENGTH - 5)
        return pycrdt.merge_updates(*chain[start : start + self.rng.randint(2, 5)])

    def huge(self) -> bytes:
        """A Yjs-shaped update whose counts, clocks or lengths are absurd varUints."""
        varint = self.rng.choice(HUGE_VARINTS)
        shapes = (
            varint + b"\x00",
            b"\x01" + varint + b"\x01\x00",
            b"\x01\x01" + varint + b"\x00\x04\x01\x04fuzz",
            b"\x01\x01\x01\x00\x04\x01\x04fuzz" + varint + b"xyz",
            b"\x00" + varint + b"\x01\x00" + varint,
        )
        return self.rng.choice(shapes)

    def mutate(self, data: bytes) -> bytes:
        """Flip, drop, insert or append a few bytes; truncate; or splice two updates."""
        rng = self.rng
        out = bytearray(data)
        roll = rng.random()
        if roll < 0.35 and out:
            for _ in range(rng.randint(1, 3)):
                out[rng.randrange(len(out))] = rng.randrange(256)
        elif roll < 0.55 and out:
            del out[rng.randrange(len(out)) :]
        elif roll < 0.7:
            out[rng.randrange(len(out) + 1) : 0] = rng.randbytes(rng.randint(1, 3))
        elif roll < 0.85:
            out += rng.choice([b"\x00", rng.randbytes(rng.randint(1, 8)), rng.choice(HUGE_VARINTS)])
        else:
            other = rng.choice(self.flat)
            out = out[: rng.randrange(len(out) + 1)] + other[rng.randrange(len(other)) :]
        return bytes(out)

    # -- state vectors and awareness ---------------------------------------------

    def state_vector(self) -> bytes:
        rng = self.rng
        roll = rng.random()
        if roll < 0.4:
            pairs = [(rng.randrange(2**32), rng.randrange(500)) for _ in range(rng.randint(0, 4))]
            body = b"".join(write_var_uint(c) + write_var_uint(k) for c, k in pairs)
            return write_var_uint(len(pairs)) + body
        if roll < 0.5:
            return b"\x00"
        if roll < 0.65:
            return rng.choice(HUGE_VARINTS) + rng.randbytes(rng.randint(0, 4))
        if roll < 0.8:
            return self.mutate(pycrdt.get_state(rng.choice(self.chains)[0]))
        return rng.randbytes(rng.randint(0, 12))

    def awareness(self) -> bytes:
        """Mostly well-formed states of the attacker's own ids; some foreign, bad or huge."""
        if self.rng.random() < 0.5:
            return self.own_awareness()
        return self.rng.choice(self.awareness_pool)

    def _awareness(self) -> bytes:
        rng = self.rng
        self.clock += 1
        roll = rng.random()
        if roll < 0.5:
            entries = [AwarenessEntry(rng.choice(self.client_ids), self.clock, self.state())]
            return encode_awareness_update(entries)
        if roll < 0.6:
            many = [AwarenessEntry(rng.randrange(2**32), self.clock, {}) for _ in range(20)]
            return encode_awareness_update(many)
        if roll < 0.7:
            raw = rng.choice(['{"a":', "[1,2]", '"text"', "NaN", "{}" * 3, "\udc80"])
            encoded = raw.encode("utf-8", "surrogatepass")
            return (
                b"\x01"
                + write_var_uint(self.client_ids[0])
                + b"\x05"
                + write_var_uint(len(encoded))
                + encoded
            )
        if roll < 0.75:
            return rng.choice(self.big_states)
        if roll < 0.85:
            return rng.choice(HUGE_VARINTS) + rng.randbytes(rng.randint(0, 6))
        return self.mutate(encode_awareness_update([AwarenessEntry(1, 1, {"u": 1})]))

    def own_awareness(self) -> bytes:
        """A well-formed awareness update of the attacker's first client id, clock advanced."""
        self.clock += 1
        return encode_awareness_update(
            [AwarenessEntry(self.client_ids[0], self.clock, self.state())]
        )

    def state(self) -> dict[str, Any] | None:
        if self.rng.random() < 0.1:
            return None
        return {"user": {"name": self.text(12), "color": "#" + self.rng.randbytes(3).hex()}}

    # -- JSON-ish values -------------------------------------------------------------

    def text(self, size: int) -> str:
        """A random string (from a pool made up front) of at most `size` characters."""
        return self.rng.choice(self.texts)[:size]

    def value(self) -> Any:
        """A random JSON/msgpack value, bytes included (from a pool made up front)."""
        return self.rng.choice(self.values)

    def _value(self, depth: int = 0) -> Any:
        rng = self.rng
        kinds = ["none", "bool", "int", "float", "str", "bytes"]
        if depth < 3:
            kinds += ["list", "dict"]
        kind = rng.choice(kinds)
        if kind == "none":
            return None
        if kind == "bool":
            return rng.random() < 0.5
        if kind == "int":
            return rng.choice([0, -1, 1, 2**31, 2**53 + 1, -(2**63), 2**64 - 1])
        if kind == "float":
            return rng.choice([0.5, -1e308, 1e-300])
        if kind == "str":
            return self.text(rng.choice([4, 40, 300]))
        if kind == "bytes":
            return rng.randbytes(rng.randint(0, 16))
        if kind == "list":
            return [self._value(depth + 1) for _ in range(rng.randint(0, 4))]
        return {self.text(8): self._value(depth + 1) for _ in range(rng.randint(0, 4))}


class CollabFuzz:
    """Events for `/collab`: (event name, its arguments), mostly aimed at joined documents."""

    def __init__(self, material: Material, documents: list[str], strangers: list[str]) -> None:
        self.m = material
        self.documents = documents
        self.strangers = strangers

    def document(self) -> Any:
        rng = self.m.rng
        roll = rng.random()
        if roll < 0.85:
            return rng.choice(self.documents)
        if roll < 0.92:
            return rng.choice(self.strangers)
        return rng.choice(["", "x" * 300, "../etc", "notes:a b", "content:99999", 7, None, []])

    def event(self) -> tuple[str, list[Any]]:
        m, rng = self.m, self.m.rng
        roll = rng.random()
        if roll < 0.42:
            return "update", [{"document": self.document(), "update": m.update()}]
        if roll < 0.57:
            return "awareness", [{"document": self.document(), "update": m.awareness()}]
        if roll < 0.66:
            return "join", [{"document": self.document(), "state_vector": m.state_vector()}]
        if roll < 0.68:
            return "leave", [{"document": self.document()}]
        if roll < 0.70:
            return "save_version", [{"document": self.document(), "notes": m.value()}]
        if roll < 0.80:
            name = rng.choice(
                ["connect", "disconnect", "message", "", "sync", "JOIN", m.text(40), "update "]
            )
            return name, [m.value()]
        # A known event with a payload of the wrong shape.
        event = rng.choice(COLLAB_EVENTS)
        shapes: list[Any] = [
            m.value(),
            {"document": m.value(), "update": m.value(), "state_vector": m.value()},
            {"document": self.document(), "update": m.text(20)},
            {"document": self.document(), "update": [1, 2, 3]},
            {"document": self.document()},
        ]
        arguments = [rng.choice(shapes) for _ in range(rng.choice([0, 1, 1, 1, 2, 3]))]
        return event, arguments


def ws_frame(m: Material) -> bytes | str:
    """A y-websocket frame: mostly what a provider sends, some of it hostile."""
    rng = m.rng
    roll = rng.random()
    if roll < 0.3:
        return sync_step1(m.state_vector() if rng.random() < 0.3 else b"\x00")
    if roll < 0.5:
        return rng.choice([sync_step2, sync_update])(m.next_in_order())
    if roll < 0.58:
        return sync_update(rng.choice([m.duplicate, m.out_of_order])())
    if roll < 0.72:
        return awareness_message(m.own_awareness())
    if roll < 0.76:
        return query_awareness()
    hostile: list[Callable[[], bytes | str]] = [
        lambda: sync_update(m.update()),
        lambda: awareness_message(m.awareness()),
        lambda: m.mutate(sync_update(m.next_in_order())),
        lambda: rng.randbytes(rng.randint(0, 40)),
        lambda: rng.choice([b"", b"\x00", b"\x00\x00", b"\x00\x05", b"\x09", b"\x02\x00"]),
        lambda: write_var_uint(2) + write_var_uint(0) + write_var_string("let me in"),
        lambda: rng.choice(HUGE_VARINTS) + rng.randbytes(4),
        lambda: b"\x00\x02" + rng.choice(HUGE_VARINTS) + b"abc",
        lambda: m.text(30),
    ]
    return rng.choice(hostile)()


def yjs_event(m: Material) -> tuple[str, list[Any]]:
    """A y-socket.io event: mostly a provider's, some hostile (bad bytes, bad shapes)."""
    rng = m.rng
    roll = rng.random()
    if roll < 0.3:
        return "sync-step-1", [m.state_vector() if rng.random() < 0.3 else b"\x00"]
    if roll < 0.5:
        return "sync-update", [m.next_in_order()]
    if roll < 0.58:
        return "sync-update", [rng.choice([m.duplicate, m.out_of_order])()]
    if roll < 0.72:
        return "awareness-update", [m.own_awareness()]
    if roll < 0.8:
        return rng.choice(YJS_EVENTS), [m.update() if rng.random() < 0.5 else m.awareness()]
    if roll < 0.9:
        return rng.choice([*YJS_EVENTS, "connect", "disconnect", m.text(10)]), [m.value()]
    return rng.choice(YJS_EVENTS), [m.value() for _ in range(rng.randint(0, 3))]


def engine_junk(m: Material, namespace: str) -> str | bytes:
    """A frame at the Engine.IO or Socket.IO packet level, malformed one way or another."""
    rng = m.rng
    roll = rng.random()
    if roll < 0.3:
        return rng.randbytes(rng.randint(0, 64))
    if roll < 0.45:
        packet = {"type": rng.choice([0, 1, 2, 3, 4, 5, 6, 9, -1, "2"]), "nsp": namespace}
        packet.update({rng.choice(["data", "id", "nsp", "x"]): m.value() for _ in range(2)})
        try:
            return bytes(msgpack.dumps(packet))
        except (OverflowError, TypeError, ValueError):
            return b"\x81\xa4type\x02"
    ns = namespace + ","
    frames: list[Callable[[], str]] = [
        lambda: rng.choice(["", "0", "1", "2", "3", "3probe", "5", "6", "7", "8", "9", "x", "{"]),
        lambda: rng.choice(["4", "4x", "42", "43", "47", "4" + "9" * 40, "2" * 30]),
        lambda: "4" + rng.choice(["2", "3", "5", "6"]) + ns + m.text(30),
        lambda: rng.choice([f"42{ns}[", f"42{ns}{{}}", f'42{ns}"update"', f"42{ns}null"]),
        lambda: f'42{ns}99999999999999999999999["update",{{}}]',
        lambda: f'42{ns}-1["join",{{"document":"notes:x"}}]',
        lambda: f'451-{ns}3["update",{{"document":"x","update":{{"_placeholder":true,"num":9}}}}]',
        lambda: f'45{rng.randint(2, 999999)}-{ns}["update",{{"_placeholder":true,"num":0}}]',
        lambda: f'43{ns}1[{{"ok":true}}]',
        lambda: f"40{ns}{json.dumps({'token': m.text(8)})}",
        lambda: rng.choice(["40/notifications,{}", "40/nowhere,{}", "41/nowhere,", "44" + ns]),
        lambda: "4" + json.dumps([m.text(10), m.text(10)]),
        lambda: "4" + m.text(300),
    ]
    return rng.choice(frames)()
