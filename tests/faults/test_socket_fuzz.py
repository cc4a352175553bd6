"""100,000 fuzzed messages through the sockets themselves, while editors edit and newcomers join.

One `realtime-cms serve` process (embedded SQLite). Nine attacker connections, authenticated
as a writer or a reader of two documents, send seeded random input at the server's sockets:
`/collab` events in JSON and msgpack framing (random events and payload shapes, random
bytes, truncated and mutated Yjs updates, state vectors, awareness updates, huge varUints,
duplicate and out-of-order updates with missing dependencies, unknown and reserved events),
y-socket.io events on `/yjs|<doc>`, y-websocket frames on `/ws/<doc>`, and junk at the
Engine.IO and Socket.IO packet level. They reconnect whenever they are dropped and count
every frame they send. Meanwhile four editors (`CollabClient`, JSON and msgpack) type into
the same documents, and every two seconds a newcomer joins on each of `/collab`, `/ws` and
`/yjs`. Throughout, newcomers are admitted and editors' acks are ok; at the end the editors
of a document agree, hold every acknowledged insert, the server is alive and its log has no
ERROR with a traceback.

Rate limits stay at their defaults (400 messages a second per connection): each attacker
paces itself at 300 frames a second, so the fuzz reaches the handlers rather than the
limiter, and the `/collab` attackers flood past the limit now and then to be rate limited.
Set FAULTS_FUZZ_SEED to replay a run; the seed is printed.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from tests.faults.attackers import (
    Counts,
    Quota,
    Target,
    attack_collab,
    attack_engine,
    attack_ws,
    attack_yjs,
)
from tests.faults.editors import Crew, missing_from
from tests.faults.joiners import Joiners
from tests.faults.support import PASSWORD, Node, create_user, grant, login, post_json, server_env

pytestmark = pytest.mark.faults

SEED = int(os.environ.get("FAULTS_FUZZ_SEED") or random.SystemRandom().randrange(2**32))
DOCUMENTS = ["notes:fuzz-a", "notes:fuzz-b"]
STRANGERS = [f"notes:fuzz-stranger-{n}" for n in range(8)]
# Frames per transport: 100,000 in all.
BUDGETS = {
    "collab": 30_000,
    "collab-msgpack": 30_000,
    "yjs": 14_000,
    "ws": 16_000,
    "engine": 10_000,
}
EDITORS = 4
UPDATES_PER_SECOND = 16.0
JOIN_EVERY_SECONDS = 2.0
# Bounds a hang only; the budgets take one to three minutes on two cores.
ATTACK_SECONDS = 420.0
CONVERGE_SECONDS = 20.0


@dataclass
class FuzzServer:
    node: Node
    tokens: dict[str, str]


@pytest.fixture(scope="module")
async def server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[FuzzServer]:
    """The server with an admin, a writer and a reader of both documents."""
    workdir: Path = tmp_path_factory.mktemp("fuzz")
    env = server_env(RCMS_DATABASE_URL=f"sqlite+aiosqlite:///{workdir / 'fuzz.sqlite3'}")
    await asyncio.to_thread(create_user, env, workdir, "chief", "admin")
    node = Node("fuzz", env, workdir)
    try:
        await node.start()
        admin, _ = await login(node.url, "chief")
        tokens = {"chief": admin}
        for username, level in (("writer", "write"), ("reader", "read")):
            account = {
                "username": username,
                "email": f"{username}@example.com",
                "password": PASSWORD,
                "roles": ["viewer"],
            }
            await post_json(f"{node.url}/api/v1/users", account, admin)
            tokens[username], user_id = await login(node.url, username)
            for document in DOCUMENTS:
                await grant(node.url, admin, document, user_id, level)
        yield FuzzServer(node, tokens)
    finally:
        node.stop()


async def attack(server: FuzzServer, counts: Counts) -> None:
    """Every attacker at once until the budgets are spent."""
    quota = Quota(BUDGETS)
    url, tokens = server.node.url, server.tokens
    writer = Target(url, DOCUMENTS, STRANGERS, tokens["writer"], "writer")
    reader = Target(url, DOCUMENTS, STRANGERS, tokens["reader"], "reader")
    seeds = random.Random(SEED)
    async with aiohttp.ClientSession() as http:
        attackers = [
            attack_collab(http, writer, "collab", quota, counts, seeds.randrange(2**32)),
            attack_collab(http, reader, "collab", quota, counts, seeds.randrange(2**32)),
            attack_collab(http, writer, "collab-msgpack", quota, counts, seeds.randrange(2**32)),
            attack_collab(http, reader, "collab-msgpack", quota, counts, seeds.randrange(2**32)),
            attack_yjs(http, writer, quota, counts, seeds.randrange(2**32)),
            attack_yjs(http, reader, quota, counts, seeds.randrange(2**32)),
            attack_ws(http, writer, quota, counts, seeds.randrange(2**32)),
            attack_ws(http, reader, quota, counts, seeds.randrange(2**32)),
            attack_engine(http, writer, quota, counts, seeds.randrange(2**32)),
        ]
        tasks = [asyncio.ensure_future(attacker) for attacker in attackers]
        progress = asyncio.create_task(report_progress(quota))
        done, pending = await asyncio.wait(tasks, timeout=ATTACK_SECONDS)
        progress.cancel()
        for task in pending:  # a hang: the frame count below says how far it got
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for task in done:
            task.result()


async def report_progress(quota: Quota) -> None:
    """Print the frames left per transport every 20 s (where a slow or stuck run stands)."""
    started = time.monotonic()
    while True:
        await asyncio.sleep(20)
        print(f"socket fuzz: {time.monotonic() - started:.0f}s: frames left {quota.left}")


async def editors_agree(crew: Crew) -> list[str]:
    """Poll until the editors of each document hold the same text; the disagreements left."""
    deadline = time.monotonic() + CONVERGE_SECONDS
    while True:
        texts: dict[str, set[str]] = {}
        for editor in crew.editors:
            assert editor.document is not None
            texts.setdefault(editor.document_id, set()).add(editor.document.text())
        split = [document for document, seen in texts.items() if len(seen) > 1]
        if not split or time.monotonic() > deadline:
            return [f"the editors of {document} disagree" for document in split]
        await asyncio.sleep(0.5)


async def test_sockets_survive_100k_fuzzed_messages_while_editors_edit_and_newcomers_join(
    server: FuzzServer,
) -> None:
    print(f"\nsocket fuzz seed {SEED} (FAULTS_FUZZ_SEED={SEED} replays it)")
    url, admin = server.node.url, server.tokens["chief"]
    tokens = [(await login(url, "chief"))[0] for _ in range(EDITORS)]
    crew = await Crew.start([url], tokens, DOCUMENTS, updates_per_second=UPDATES_PER_SECOND)
    joiners = Joiners(url, admin, DOCUMENTS)
    joining = asyncio.create_task(joiners.keep_joining(crew.stop, JOIN_EVERY_SECONDS))
    counts = Counts()
    started = time.monotonic()
    try:
        await attack(server, counts)
    finally:
        attack_seconds = time.monotonic() - started
        await crew.halt()
        await joining
    problems = await editors_agree(crew)
    await crew.close()
    acked = crew.acked_by_document()
    for editor in joiners.editors:
        acked.setdefault(editor.document_id, set()).update(editor.acked)
    missing = await missing_from(url, admin, acked)
    log = server.node.log_entries()
    print(f"socket fuzz: {counts.total} frames in {attack_seconds:.0f}s; {counts.summary()}")
    print(f"socket fuzz: editors: {crew.summary()}")
    print(f"socket fuzz: {joiners.joins} joins, {len(joiners.problems)} refused or dropped")
    print(f"socket fuzz: server log: {len(log.at('WARNING'))} warnings, {len(log.at('ERROR'))}")
    for message, count in (log.counts("WARNING", "ERROR", "CRITICAL")).most_common(12):
        print(f"  {count:6d} x {message}")

    problems += joiners.problems[:20]
    # `store_unavailable` (not committed within the ack deadline) is what a slow machine
    # answers, and the editors resync; that nothing was lost is what `stranded` checks.
    if crew.tally.final_refusals or crew.tally.unanswered:
        problems.append(f"editors' acks not ok: {crew.tally.summary()}")
    if missing:
        problems.append(f"acknowledged inserts missing: { {d: t[:8] for d, t in missing.items()} }")
    problems += await crew.stranded(url, admin)
    problems += await joiners.stranded()
    if not server.node.running:
        problems.append(f"the server died:\n{server.node.log_tail()}")
    problems += [
        f"ERROR with a traceback:\n{error[:1500]}" for error in log.errors_with_traceback()[:5]
    ]
    if counts.total < sum(BUDGETS.values()):
        problems.append(f"only {counts.total} frames sent")
    assert not problems, "\n".join(problems)
