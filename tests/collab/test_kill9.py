"""Acked edits survive `kill -9`: 20 kills at random points of a run of 1,000+ acked edits.

A real `realtime-cms serve` process on a throwaway MariaDB database; five clients write one
document concurrently, each edit a distinct token sent as its own update. An edit counts as
acked only once the server answered its `update` event with `ok` (docs/protocol.md: the ack
means durable). At a seeded random kill point the server gets SIGKILL; the test then reads
the raw log from the database, joins a fresh server process with a fresh client and checks
every acked token in both. Edits that were in flight may or may not have survived: only
acked ones are asserted. (Replacement processes boot while earlier rounds write, to keep
21 Python start-ups off the critical path; each opens the document only after the kill.)
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pycrdt
import pytest

from realtime_cms.client import CollabClient
from realtime_cms.collab.store import UpdateStore
from realtime_cms.db import create_engine, session_factory
from tests.support.servers import MariaDBServer, _die_with_parent, free_port

CLI = [sys.executable, "-m", "handlers"]
ROUNDS = 20
WRITERS = 5
ACKED_EDITS = 1000
SEED = 20261125
DOCUMENT = "notes:kill9"
USERNAME, PASSWORD = "killer", "a long enough password for kill -9"
# Generous bounds on waits that normally take milliseconds; they only stop a hang.
START_SECONDS = 60.0
ROUND_SECONDS = 60.0
# Server processes booting ahead of the round that needs them (a start-up takes seconds).
BOOTING_AHEAD = 2


@dataclass
class Figures:
    """What the run did, printed at the end (and in a failure message)."""

    acked: list[str] = field(default_factory=list)
    per_round: list[int] = field(default_factory=list)
    survived_unacked: int = 0
    checks: int = 0

    def summary(self) -> str:
        return (
            f"kill -9: {len(self.per_round)} rounds, {len(self.acked)} acked edits, "
            f"{self.checks} checks, {self.survived_unacked} unacked edits survived too; "
            f"acks per round {self.per_round}"
        )


def server_env(database_url: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("RCMS_")}
    env.update(
        RCMS_DATABASE_URL=database_url,
        RCMS_SECRET_KEY="kill9-" + "s" * 40,
        RCMS_ARGON2_MEMORY_KIB="8192",
        RCMS_ARGON2_TIME_COST="1",
        # Five writers as fast as acks come back; the rate limit is not under test here.
        RCMS_COLLAB_MAX_MESSAGES_PER_SECOND="100000",
    )
    return env


def run_cli(env: dict[str, str], *args: str, stdin: str | None = None) -> None:
    result = subprocess.run(
        [*CLI, *args], env=env, input=stdin, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.fixture(scope="module")
def env(mariadb_server: MariaDBServer) -> dict[str, str]:
    """A migrated database with one admin account (admins may open any document)."""
    env = server_env(mariadb_server.create_database(f"rcms_kill9_{os.getpid()}"))
    run_cli(env, "migrate")
    run_cli(
        env,
        "create-user",
        USERNAME,
        "--email",
        "killer@example.com",
        "--admin",
        "--password-stdin",
        stdin=PASSWORD + "\n",
    )
    return env


@pytest.fixture(scope="module")
async def store(env: dict[str, str]) -> AsyncIterator[UpdateStore]:
    """The test process's own view of the log, read while the server is down."""
    engine = create_engine(env["RCMS_DATABASE_URL"])
    try:
        async with UpdateStore(session_factory(engine)) as store:
            yield store
    finally:
        await engine.dispose()


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One file collecting every server run's stderr, shown when a start fails."""
    return tmp_path_factory.mktemp("kill9") / "server.log"


class Server:
    """One `realtime-cms serve` process, spawned at once and waited on when needed."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.log = log
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        with log.open("ab") as stderr:
            self.process = subprocess.Popen(
                [*CLI, "serve", "--port", str(self.port)],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                preexec_fn=_die_with_parent(),  # the kernel kills it if pytest dies first
            )

    def kill(self) -> None:
        """SIGKILL: no shutdown hook, no flush, no goodbye to the clients."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> int:
        """A graceful SIGTERM stop; returns the exit code."""
        self.process.terminate()
        return self.process.wait(timeout=30)

    async def healthy(self) -> Server:
        async with aiohttp.ClientSession() as http, asyncio.timeout(START_SECONDS):
            while True:
                if self.process.poll() is not None:
                    tail = self.log.read_text(errors="replace")[-3000:]
                    pytest.fail(f"the server exited ({self.process.returncode}):\n{tail}")
                try:
                    async with http.get(f"{self.url}/healthz") as response:
                        if response.status == 200:
                            return self
                except aiohttp.ClientConnectionError:
                    pass
                await asyncio.sleep(0.05)


@pytest.fixture
def spawn(env: dict[str, str], logs: Path) -> Iterator[Callable[[], Server]]:
    """Start server processes; every one of them is dead when the test ends, however."""
    servers: list[Server] = []

    def start() -> Server:
        servers.append(Server(env, logs))
        return servers[-1]

    try:
        yield start
    finally:
        for server in servers:
            server.kill()


async def login(url: str) -> str:
    async with aiohttp.ClientSession() as http:
        credentials = {"login": USERNAME, "password": PASSWORD}
        async with http.post(f"{url}/api/v1/auth/login", json=credentials) as response:
            body = await response.json()
            assert response.status == 200, body
            return str(body["data"]["token"])


def boundaries(text: str) -> list[int]:
    """Positions between tokens: an insert there never splits another writer's token."""
    return [0, *(i + 1 for i, char in enumerate(text) if char == " ")]


async def write(
    url: str, token: str, label: str, rng: random.Random, acked: list[str], progress: asyncio.Event
) -> None:
    """Insert distinct tokens one update at a time, recording each once it is acked.

    Runs until cancelled (the server is killed meanwhile); one edit in flight at a time, so
    an acked update never depends on an unacked one. The local doc holds the document as
    joined plus this writer's own edits; that is all an insert position needs.
    """
    client = CollabClient(url, token, timeout=ROUND_SECONDS)
    await client.connect()
    try:
        reply = await client.call("join", {"document": DOCUMENT})
        doc: pycrdt.Doc = pycrdt.Doc()
        doc.apply_update(reply["update"])
        text = doc.get("body", type=pycrdt.Text)
        for n in range(ACKED_EDITS):
            edit = f"{label}-{n}"
            before = doc.get_state()
            text.insert(rng.choice(boundaries(str(text))), edit + " ")
            update = doc.get_update(before)
            await client.call("update", {"document": DOCUMENT, "update": update})
            acked.append(edit)
            progress.set()
    finally:
        await client.sio.disconnect()


async def write_until_killed(
    server: Server, token: str, round_no: int, kill_after: int, rng: random.Random
) -> list[str]:
    """Run the writers until `kill_after` acks (and a random few ms more), then SIGKILL."""
    acked: list[str] = []
    progress = asyncio.Event()
    writers = [
        asyncio.create_task(
            write(
                server.url, token, f"r{round_no}w{w}", random.Random(rng.random()), acked, progress
            )
        )
        for w in range(WRITERS)
    ]
    try:
        async with asyncio.timeout(ROUND_SECONDS):
            while len(acked) < kill_after:
                progress.clear()
                waiter = asyncio.create_task(progress.wait())
                done, _ = await asyncio.wait(
                    {waiter, *writers}, return_when=asyncio.FIRST_COMPLETED
                )
                waiter.cancel()
                for task in done & set(writers):
                    task.result()  # a writer that stopped early is a failure: show why
                    pytest.fail("a writer stopped before the kill")
            if rng.random() < 0.5:
                await asyncio.sleep(rng.uniform(0, 0.03))
        server.kill()
    finally:
        for task in writers:
            task.cancel()
        await asyncio.gather(*writers, return_exceptions=True)
    # Acks that arrived after the SIGKILL was sent were committed before it too.
    return list(acked)


async def tokens_in_log(store: UpdateStore) -> list[str]:
    stored = await store.load(DOCUMENT)
    doc: pycrdt.Doc = pycrdt.Doc()
    assert stored.apply_to(doc) == [], "logged updates whose dependencies were never logged"
    return str(doc.get("body", type=pycrdt.Text)).split()


async def tokens_served(url: str, token: str) -> list[str]:
    async with CollabClient(url, token, timeout=ROUND_SECONDS) as client:
        document = await client.join(DOCUMENT)
        return document.text().split()


def check(tokens: list[str], figures: Figures, where: str) -> None:
    """Every acked token is there, exactly once."""
    figures.checks += 1
    missing = sorted(set(figures.acked) - set(tokens))
    doubled = sorted(edit for edit, count in Counter(tokens).items() if count > 1)
    assert not missing, f"{where}: {len(missing)} acked edits missing, e.g. {missing[:10]}"
    assert not doubled, f"{where}: edits present twice: {doubled[:10]}"


def kill_points(rng: random.Random) -> list[int]:
    """ROUNDS random cut points of a run of ACKED_EDITS acks, as acks per round."""
    cuts = [0, *sorted(rng.sample(range(1, ACKED_EDITS), ROUNDS - 1)), ACKED_EDITS]
    return [after - before for before, after in zip(cuts, cuts[1:], strict=False)]


async def test_every_acked_edit_survives_twenty_kill_9s(
    spawn: Callable[[], Server], store: UpdateStore
) -> None:
    rng = random.Random(SEED)
    figures = Figures()
    token = ""
    logged: list[str] = []
    booting = deque(spawn() for _ in range(BOOTING_AHEAD))
    try:
        for round_no, kill_after in enumerate(kill_points(rng)):
            server = await booting.popleft().healthy()
            token = token or await login(server.url)
            served = await tokens_served(server.url, token)
            assert sorted(served) == sorted(logged), "the restarted server differs from the log"
            check(served, figures, f"round {round_no}, after restart")
            # Later rounds' processes boot meanwhile; they read the document after the kill.
            if round_no < ROUNDS + 1 - BOOTING_AHEAD:
                booting.append(spawn())
            acked = await write_until_killed(server, token, round_no, kill_after, rng)
            assert len(acked) >= kill_after
            figures.acked += acked
            figures.per_round.append(len(acked))
            logged = await tokens_in_log(store)
            check(logged, figures, f"round {round_no}, the log after kill -9")
            if round_no % 5 == 4:
                # Offline compaction: later rounds load from a snapshot plus a log.
                assert await store.compact(DOCUMENT) is not None
        server = await booting.popleft().healthy()
        check(await tokens_served(server.url, token), figures, "the last restart")
        assert server.stop() == 0
        figures.survived_unacked = len(set(logged) - set(figures.acked))
    finally:
        print(f"\n{figures.summary()}")
    assert len(figures.per_round) == ROUNDS and len(figures.acked) >= ACKED_EDITS
    print(f"kill -9: missing acked edits: 0 of {len(figures.acked)}")
