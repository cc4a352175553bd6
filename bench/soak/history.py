"""What a document's history costs a room, on pycrdt alone: heap per edit and rebuild time.

    .venv/bin/python bench/soak/history.py --edits 1000,3000,6000,15000

`--editors` editors type into one document in turn, as the soak's do (`words.py`), each in
its own Doc kept in sync; every `--reconnect-every` edits one of them is replaced by a new
client (a reconnect: a new client id). For each count of edits it reports the heap a Doc
holds when built by applying those updates one by one (as a room's live document and its
shadow are), the same Doc rebuilt from its own encoding (what compacting a room's document
would give), the size of that encoding, what a shadow rebuild costs (`get_update` of the
live document applied to a new Doc, what `DocumentRoom._shadow_doc` does) and the mean
cost of applying one edit.
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import time

import pycrdt
from server import malloc_info
from words import type_once

COPIES = 3
TIMINGS = 10


def heap_in_use() -> int:
    gc.collect()
    heap = malloc_info()
    if heap is None:
        raise SystemExit("history: needs glibc's mallinfo2 to read the heap")
    return heap[0]


def edits(count: int, editors: int, reconnect_every: int, seed: int) -> list[bytes]:
    """The updates `count` edits send, in the order the room applies them."""
    rng = random.Random(seed)
    room: pycrdt.Doc = pycrdt.Doc()
    clients: list[tuple[pycrdt.Doc, list[int]]] = [(pycrdt.Doc(), [0]) for _ in range(editors)]
    updates = []
    for n in range(count):
        if n and n % reconnect_every == 0:
            clients[rng.randrange(editors)] = (pycrdt.Doc(), [0])
        doc, cursor = clients[n % editors]
        doc.apply_update(room.get_update(doc.get_state()))
        before = doc.get_state()
        cursor[0] = type_once(doc.get("body", type=pycrdt.Text), cursor[0], rng)
        update = doc.get_update(before)
        room.apply_update(update)
        updates.append(update)
    return updates


def held_per_doc(build: list[bytes]) -> float:
    """Heap bytes one Doc built by applying `build` in order holds (over COPIES of it)."""
    before = heap_in_use()
    docs = []
    for _ in range(COPIES):
        doc: pycrdt.Doc = pycrdt.Doc()
        for update in build:
            doc.apply_update(update)
        docs.append(doc)
    return (heap_in_use() - before) / COPIES


def measure(count: int, args: argparse.Namespace) -> str:
    updates = edits(count, args.editors, args.reconnect_every, args.seed)
    live: pycrdt.Doc = pycrdt.Doc()
    started = time.perf_counter()
    for update in updates:
        live.apply_update(update)
    apply_us = (time.perf_counter() - started) / count * 1e6
    encoding = live.get_update()
    built, rebuilt = held_per_doc(updates), held_per_doc([encoding])
    timings = []
    for _ in range(TIMINGS):
        started = time.perf_counter()
        shadow: pycrdt.Doc = pycrdt.Doc()
        shadow.apply_update(live.get_update())
        timings.append(time.perf_counter() - started)
    return (
        f"| {count:,} | {built / 1e6:.2f} MB ({built / count:.0f} B/edit) | "
        f"{rebuilt / 1e6:.2f} MB ({rebuilt / built:.0%}) | {len(encoding) / 1024:.0f} KiB "
        f"({len(encoding) / count:.0f} B/edit) | {statistics.median(timings) * 1e3:.1f} ms | "
        f"{apply_us:.0f} µs |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edits", default="1000,3000,6000,15000", help="comma-separated")
    parser.add_argument("--editors", type=int, default=5)
    parser.add_argument("--reconnect-every", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    print(
        "| edits | Doc built by updates | rebuilt from its encoding | encoding "
        "| shadow rebuild | one edit applied |\n|---|---|---|---|---|---|"
    )
    for count in (int(value) for value in args.edits.split(",")):
        print(measure(count, args), flush=True)


if __name__ == "__main__":
    main()
