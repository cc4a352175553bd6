"""Acknowledged edits survive MariaDB and Redis faults on two nodes.

Two `realtime-cms serve` processes share a private MariaDB and Redis. Ten editors
(`CollabClient`, half of them msgpack, spread over both nodes) type distinct tokens into
three documents, about 18 updates a second in all, while one fault strikes: MariaDB killed
and restarted, MariaDB frozen for 30 s, Redis killed and restarted. Typing goes on for a few
seconds after it; then the editors stop and settle (every ack in, the client resending what
it must). Every token an ok ack covers (see `editors`) must then be in the document as a
fresh client on either node receives it, and again after both nodes are killed -9 and
started fresh from the log. Edits never acknowledged may be lost; no acknowledged one may.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable

import pytest

from tests.faults.editors import Crew, served_everywhere
from tests.faults.support import ACK_DEADLINE_SECONDS, Cluster, Stack

pytestmark = pytest.mark.faults

EDITORS = 10
DOCUMENTS = 3
UPDATES_PER_SECOND = 18.0
TYPING_BEFORE_SECONDS = 4.0
TYPING_AFTER_SECONDS = 5.0
DOWN_SECONDS = 4.0
FROZEN_SECONDS = 30.0
# Network, queueing and the client's own work on top of the server's ack deadline.
ACK_SLACK_SECONDS = 5.0
_runs = itertools.count(1)


async def type_through(cluster: Cluster, fault: Callable[[], Awaitable[None]]) -> Crew:
    """Editors type before, during and after `fault()`, then settle and disconnect."""
    documents = [f"notes:faults-{next(_runs)}-{n}" for n in range(DOCUMENTS)]
    tokens = await cluster.tokens(EDITORS)
    crew = await Crew.start(cluster.urls, tokens, documents, updates_per_second=UPDATES_PER_SECOND)
    try:
        await asyncio.sleep(TYPING_BEFORE_SECONDS)
        await fault()
        await asyncio.sleep(TYPING_AFTER_SECONDS)
    finally:
        await crew.finish()
    return crew


async def test_acked_edits_survive_mariadb_killed_and_restarted(
    cluster: Cluster, stack: Stack
) -> None:
    async def kill_mariadb() -> None:
        await asyncio.to_thread(stack.mariadb.kill)
        try:
            await asyncio.sleep(DOWN_SECONDS)
        finally:
            await asyncio.to_thread(stack.mariadb.restart)

    crew = await type_through(cluster, kill_mariadb)
    problems = await served_everywhere(cluster, crew, "MariaDB kill -9")
    assert not problems, "\n".join(problems)


async def test_acked_edits_survive_mariadb_frozen_and_acks_keep_their_deadline(
    cluster: Cluster, stack: Stack
) -> None:
    async def freeze_mariadb() -> None:
        stack.mariadb.pause()
        try:
            await asyncio.sleep(FROZEN_SECONDS)
        finally:
            stack.mariadb.resume()

    crew = await type_through(cluster, freeze_mariadb)
    problems = await served_everywhere(cluster, crew, "MariaDB SIGSTOP 30 s")
    bound = ACK_DEADLINE_SECONDS + ACK_SLACK_SECONDS
    late = [seconds for seconds in crew.tally.latencies if seconds > bound]
    if late:
        problems.append(f"{len(late)} acks took over {bound:.0f}s (slowest {max(late):.1f}s)")
    if crew.tally.refused["update:store_unavailable"] == 0:
        problems.append(f"no ack said store_unavailable: {dict(crew.tally.refused)}")
    timeouts = crew.tally.unanswered["update:TimeoutError"]
    if timeouts:
        problems.append(f"{timeouts} updates were never answered (client timeout)")
    assert not problems, "\n".join(problems)


async def test_acked_edits_survive_redis_killed_and_restarted(
    cluster: Cluster, stack: Stack
) -> None:
    async def kill_redis() -> None:
        await asyncio.to_thread(stack.redis.kill)
        try:
            await asyncio.sleep(DOWN_SECONDS)
        finally:
            await asyncio.to_thread(stack.redis.restart)

    crew = await type_through(cluster, kill_redis)
    problems = await served_everywhere(cluster, crew, "Redis kill -9")
    assert not problems, "\n".join(problems)
