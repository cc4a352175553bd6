"""No edit is stranded in static/collab-provider.js: answered "not saved yet", it resyncs.

`resync.mjs` runs the shipped provider in Node against a live server in this process, which
answers its edits `store_unavailable`, `store_failed` or `too_many_pending` through the
faults of tests/collab/test_client_resync.py. The provider alone must get every character
typed into the log: the moment it says every change is saved, the log holds them. On the
way its saved badge (as the editor derives it) goes saving, then "not saved", then saved.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.collab.test_client_resync import (
    SETTLE_SECONDS,
    RefusingStore,
    fresh_text,
    logged_once,
    server_url,
    stalled_log,
    store_of,
    writable_document,
)
from tests.collab.test_client_resync import harness as harness  # the fixture: the same server
from tests.interop.test_npm_providers import INTEROP, require_node
from tests.interop.test_npm_providers import node as node  # the fixture: npm packages in place
from tests.support.harness import Harness

pytestmark = pytest.mark.usefixtures("node")


@dataclass
class Typist:
    """`resync.mjs` running: its events as they come, and the command that starts typing."""

    process: asyncio.subprocess.Process
    stderr: Path
    seen: list[dict[str, Any]]

    async def event(self, wanted: str, code: str | None = None) -> dict[str, Any]:
        """Wait for the next event `wanted` (with `code`, for an error); fail on `failed`."""
        assert self.process.stdout is not None
        while True:
            line = await asyncio.wait_for(self.process.stdout.readline(), SETTLE_SECONDS)
            assert line, f"resync.mjs ended: {self.seen} {self.stderr.read_text()[-2000:]}"
            event = json.loads(line)
            self.seen.append(event)
            assert event["event"] != "failed", event
            if event["event"] == wanted and code in (None, event.get("code")):
                return event

    async def type(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(b"type\n")
        await self.process.stdin.drain()


@contextlib.asynccontextmanager
async def typist(
    harness: Harness, document_id: str, tmp_path: Path, *options: str
) -> AsyncIterator[Typist]:
    """`resync.mjs` as the default editor on the document, joined and waiting to type."""
    stderr = tmp_path / "resync.stderr"
    node_binary, _ = require_node()
    with stderr.open("wb") as errors:
        process = await asyncio.create_subprocess_exec(
            node_binary,
            "resync.mjs",
            "--url",
            server_url(harness),
            "--document",
            document_id,
            "--token",
            harness.tokens["editor"],
            *options,
            cwd=INTEROP,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=errors,
        )
    try:
        running = Typist(process, stderr, [])
        await running.event("synced")
        yield running
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()


async def assert_saved(
    harness: Harness, document_id: str, saved: dict[str, Any], logged: str, expected: str
) -> None:
    """Every character was in the log once the provider said saved, and is in what a fresh
    client gets; the badge went saving, "not saved", saved."""
    assert logged == expected == saved["text"]
    assert await fresh_text(harness, document_id) == expected
    states = saved["states"]
    assert states[-1] == "saved", states
    assert "saving" in states and "not_saved" in states, states
    assert states.index("saving") < states.index("not_saved"), states


async def test_the_provider_saves_edits_answered_store_unavailable(
    harness: Harness, tmp_path: Path
) -> None:
    document_id = await writable_document(harness, "js-unavailable")
    async with typist(harness, document_id, tmp_path, "--text", "slow but saved") as running:
        async with stalled_log(harness, document_id) as stall:
            await running.type()
            await running.event("error", "store_unavailable")
            saved, logged = await logged_once(
                harness, document_id, running.event("saved"), stall.release
            )
    await assert_saved(harness, document_id, saved, logged, "slow but saved")


async def test_the_provider_saves_edits_answered_store_failed(
    harness: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    document_id = await writable_document(harness, "js-failed")
    async with typist(harness, document_id, tmp_path, "--text", "refused then saved") as running:
        with RefusingStore(store_of(harness), monkeypatch) as refusing:
            await running.type()
            await running.event("error", "store_failed")
            saved, logged = await logged_once(
                harness, document_id, running.event("saved"), refusing.release
            )
    await assert_saved(harness, document_id, saved, logged, "refused then saved")


async def test_the_provider_saves_edits_answered_too_many_pending(
    harness: Harness, tmp_path: Path
) -> None:
    document_id = await writable_document(harness, "js-pending")
    options = ("--text", "held", "--typing", "burst", "--withhold", "withheld ")
    async with typist(harness, document_id, tmp_path, *options) as running:
        await running.type()
        await running.event("error", "too_many_pending")
        saved, logged = await logged_once(harness, document_id, running.event("saved"))
    await assert_saved(harness, document_id, saved, logged, "withheld held")
