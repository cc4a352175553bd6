"""A real editing history through the update log: 259,778 edits appended, compacted, cold-loaded.

The `automerge-paper` trace (Martin Kleppmann, CC BY 4.0; see ../shared/bench-data/README.md)
is replayed into a pycrdt document, one update per edit, exactly as a browser would send
them. The figures (log size, snapshot size, compaction and cold-load time) are printed, not
asserted: timings depend on the machine.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pycrdt import Doc, Text

import realtime_cms.models  # noqa: F401  (registers every table)
from realtime_cms.collab.store import UpdateStore
from realtime_cms.db import SessionFactory, create_engine, session_factory
from realtime_cms.models.base import Base

TRACE = Path(__file__).resolve().parents[3] / "shared" / "bench-data" / "automerge-paper.json.gz"
EDITS = 259_778
DOCUMENT = "notes:automerge-paper"
# Appends handed to the store at once; group commit turns them into 512-row INSERTs.
CHUNK = 8192


def load_trace() -> dict[str, Any]:
    if not TRACE.exists():
        pytest.fail(
            f"the editing trace is missing: expected {TRACE} (../shared beside the checkout)"
        )
    with gzip.open(TRACE, "rt") as stream:
        trace: dict[str, Any] = json.load(stream)
    return trace


def replay(trace: dict[str, Any]) -> tuple[list[bytes], Doc]:
    """Every edit of the trace as its own update, and the document they built.

    A fixed client id keeps the byte counts the same from run to run (ids are varints).
    """
    doc: Doc = Doc(client_id=1)
    text = doc.get("body", type=Text)
    updates: list[bytes] = []
    doc.observe(lambda event: updates.append(event.update))
    if trace["startContent"]:
        text.insert(0, trace["startContent"])
    for txn in trace["txns"]:
        for position, deleted, inserted in txn["patches"]:
            if deleted:
                del text[position : position + deleted]
            if inserted:
                text.insert(position, inserted)
    return updates, doc


def text_of(doc: Doc) -> str:
    return str(doc.get("body", type=Text))


@pytest.fixture(scope="module")
async def sessions(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[SessionFactory]:
    path = tmp_path_factory.mktemp("trace") / "trace.sqlite3"
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    yield session_factory(engine)
    await engine.dispose()


async def test_the_automerge_paper_trace_survives_logging_compaction_and_a_cold_load(
    sessions: SessionFactory,
) -> None:
    trace = load_trace()
    began = time.perf_counter()
    updates, source = replay(trace)
    replayed = time.perf_counter() - began
    assert len(updates) == EDITS
    assert text_of(source) == trace["endContent"]

    began = time.perf_counter()
    async with UpdateStore(sessions) as store:
        for start in range(0, len(updates), CHUNK):
            chunk = updates[start : start + CHUNK]
            await asyncio.gather(*(store.append(DOCUMENT, update) for update in chunk))
        appended = time.perf_counter() - began
        rows, log_bytes = await store.log_stats(DOCUMENT)
        assert (rows, log_bytes) == (EDITS, sum(map(len, updates)))

        began = time.perf_counter()
        result = await store.compact(DOCUMENT)
        compacted = time.perf_counter() - began
        assert result is not None and (result.folded, result.kept) == (EDITS, 0)
        assert await store.log_stats(DOCUMENT) == (0, 0)
        # The snapshot is the document's own encoding: nothing lost, nothing doubled.
        assert result.state_bytes == len(source.get_update())

    began = time.perf_counter()
    async with UpdateStore(sessions) as cold:
        stored = await cold.load(DOCUMENT)
        doc: Doc = Doc()
        assert stored.apply_to(doc) == []
    cold_load = time.perf_counter() - began
    assert stored.updates == [] and stored.snapshot is not None
    assert text_of(doc) == trace["endContent"]
    print(
        f"\ntrace: {EDITS} edits replayed in {replayed:.1f} s, appended in {appended:.1f} s; "
        f"log {rows} rows, {log_bytes} bytes; snapshot {result.state_bytes} bytes; "
        f"compaction {compacted:.2f} s; cold load {cold_load:.3f} s; "
        f"text {len(trace['endContent'])} chars"
    )
