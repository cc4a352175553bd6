"""Rooms give their memory back: 1,000 documents unloaded; shadow copies a refusal discards.

The server runs in this process, so its resident set size (VmRSS) is this process's. Each
document gets a 400-edit text, so a room (its Doc and shadow Doc) holds tens of kilobytes
in pycrdt's Rust heap, which Python's cycle collector cannot see. The check is relative:
what stays after unloading must be a small fraction of what opening took.

glibc keeps freed heap pages mapped for reuse, so RSS after `free` says little about leaks
(a pycrdt Doc allocated and freed 2,000 times keeps ~160 MB mapped until `malloc_trim`).
Each measurement therefore collects garbage and trims the heap first.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import random
import weakref
from collections.abc import AsyncIterator

import pycrdt
import pytest

from handlers import keys
from realtime_cms.client import CollabClient, CollabError
from realtime_cms.collab.room import DocumentRoom
from tests.support.harness import Harness, make_settings, start_harness
from tests.support.live import eventually

DOCUMENTS = 1000
CONNECTIONS = 4
PER_CONNECTION = DOCUMENTS // CONNECTIONS
WARM_UP = 50
REFUSED = 50
# Generous: 1,000 rooms unload within seconds alone, a minute or more beside the heaviest
# tests of the suite (each unload compacts its log); this only bounds a hang.
UNLOAD_SECONDS = 300.0


def resident_mib(*, trim: bool = True) -> float:
    """This process's resident set after a full collection and (unless `trim` is False) a
    heap trim, in MiB."""
    gc.collect()
    libc = ctypes.CDLL(None)
    if trim and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    pytest.fail("no VmRSS in /proc/self/status")


def seeded_text_update(edits: int = 400) -> bytes:
    """One update holding a text typed one character at a time at scattered positions."""
    doc: pycrdt.Doc = pycrdt.Doc()
    text = doc.get("body", type=pycrdt.Text)
    rng = random.Random(edits)
    for i in range(edits):
        text.insert(rng.randint(0, len(text)), "abcdefgh"[i % 8])
    return doc.get_update()


@pytest.fixture(scope="module")
async def harness(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Harness]:
    database = tmp_path_factory.mktemp("unload") / "db.sqlite3"
    settings = make_settings(
        f"sqlite+aiosqlite:///{database}",
        collab_max_documents=PER_CONNECTION,
        collab_max_seats_per_user=DOCUMENTS,
        collab_idle_unload_seconds=0.05,
        collab_max_messages_per_second=100_000,
    )
    h = await start_harness(settings)
    try:
        yield h
    finally:
        await h.client.close()


async def open_documents(harness: Harness, names: list[str], update: bytes) -> list[CollabClient]:
    """Join every document (a share of them per connection) and write the text into each."""
    url = str(harness.client.make_url("/"))

    async def one_connection(share: list[str]) -> CollabClient:
        client = CollabClient(url, harness.tokens["admin"], timeout=30)
        await client.connect()
        for name in share:
            await client.call("join", {"document": name})
            await client.call("update", {"document": name, "update": update})
        return client

    shares = [names[i::CONNECTIONS] for i in range(CONNECTIONS)]
    return list(await asyncio.gather(*(one_connection(share) for share in shares)))


async def close_and_wait_for_unload(harness: Harness, clients: list[CollabClient]) -> None:
    for client in clients:
        await client.sio.disconnect()
    await eventually(lambda: not harness.app[keys.ROOMS].rooms, within=UNLOAD_SECONDS)


async def test_unloading_a_thousand_rooms_returns_their_memory(harness: Harness) -> None:
    update = seeded_text_update()
    # One-time costs (imports, pools, caches) are not per-document memory: pay them first.
    warm = await open_documents(harness, [f"notes:warm-{n}" for n in range(WARM_UP)], update)
    await close_and_wait_for_unload(harness, warm)
    del warm

    before = resident_mib()
    names = [f"notes:unload-{n}" for n in range(DOCUMENTS)]
    clients = await open_documents(harness, names, update)
    rooms = harness.app[keys.ROOMS].rooms
    assert len(rooms) == DOCUMENTS
    alive: list[weakref.ref[DocumentRoom]] = [weakref.ref(room) for room in rooms.values()]
    del rooms
    opened = resident_mib()

    await close_and_wait_for_unload(harness, clients)
    del clients
    # A room leaves the manager's map before its unload finishes (compaction, hooks): let
    # those last coroutines end. A room still referenced after that is a leak.
    await eventually(lambda: gc.collect() >= 0 and all(ref() is None for ref in alive))
    after = resident_mib()
    leaked_rooms = sum(ref() is not None for ref in alive)

    print(
        f"\nunload memory: RSS before {before:.1f} MiB, {DOCUMENTS} open {opened:.1f} MiB, "
        f"after unload {after:.1f} MiB; rooms still alive {leaked_rooms}"
    )
    assert leaked_rooms == 0
    assert opened - before > 0
    assert after - before < 0.25 * (opened - before)


async def test_the_server_gives_unloaded_rooms_memory_back_without_help(harness: Harness) -> None:
    """The same, measured without trimming here: the room manager trims the heap itself
    after unloading rooms (realtime_cms/heap.py), so the pages come back to the system."""
    if not hasattr(ctypes.CDLL(None), "malloc_trim"):
        pytest.skip("not glibc: nothing keeps freed pages mapped the same way")
    update = seeded_text_update()
    rooms = harness.app[keys.ROOMS]
    before = resident_mib()
    clients = await open_documents(harness, [f"notes:self-{n}" for n in range(DOCUMENTS)], update)
    opened = resident_mib(trim=False)
    await close_and_wait_for_unload(harness, clients)
    del clients
    trims = rooms.heap.trims  # the trim that follows the last unload comes after these
    await eventually(lambda: rooms.heap.trims > trims, within=UNLOAD_SECONDS)
    after = resident_mib(trim=False)
    print(f"\nself-trim: RSS before {before:.1f} MiB, open {opened:.1f}, after {after:.1f}")
    assert opened - before > 0
    assert after - before < 0.25 * (opened - before)


def copy_mib(update: bytes, copies: int = 10) -> float:
    """What one Doc holding `update` costs in RSS, measured on `copies` of them here."""
    before = resident_mib()
    docs = []
    for _ in range(copies):
        doc: pycrdt.Doc = pycrdt.Doc()
        doc.apply_update(update)
        docs.append(doc)
    cost = (resident_mib() - before) / copies
    del docs, doc
    return cost


async def test_refused_updates_do_not_pile_up_copies_of_the_document(harness: Harness) -> None:
    """Each refusal discards the room's shadow copy (rebuilt for the next update): every
    discarded copy must be freed, not just forgotten."""
    document = {"document": "notes:refusals"}
    update = seeded_text_update(edits=8_000)
    copy = copy_mib(update)
    client = CollabClient(str(harness.client.make_url("/")), harness.tokens["admin"], timeout=30)
    await client.connect()
    try:
        await client.call("join", document)
        await client.call("update", {**document, "update": update})
        before = resident_mib()
        for _ in range(REFUSED):
            with pytest.raises(CollabError) as refused:
                await client.call("update", {**document, "update": b"\xff" * 64})
            assert refused.value.code == "invalid_update"
        grown = resident_mib() - before
    finally:
        await client.sio.disconnect()
    print(
        f"\nrefusal memory: one copy of the document {copy:.2f} MiB; "
        f"{REFUSED} refused updates {grown:+.1f} MiB"
    )
    assert copy > 0
    # Each refusal rebuilds the shadow once: kept copies would add `copy` per refusal.
    assert grown < 0.25 * REFUSED * copy
