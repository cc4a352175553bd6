"""Acknowledged edits survive a node killed -9 five times while editors type through both.

Complements tests/collab/test_kill9.py (one node, one document, one edit in flight per
writer, the log read offline): here two nodes share MariaDB and Redis, and ten editors
(`CollabClient`, half of them msgpack) pipeline their updates into three documents through
both nodes. Each round kills one node (alternately) with SIGKILL and starts it again on its
port while the editors type on; its editors reconnect through the other node at once (a
rejoin sends what the server lacks) and go back once their node is up. Afterwards every
token an ok ack covers must be served by both nodes, and by fresh processes after both are
killed -9 once more.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.faults.editors import Crew, served_everywhere
from tests.faults.support import Cluster

pytestmark = pytest.mark.faults

ROUNDS = 5
EDITORS = 10
DOCUMENTS = ["notes:node-kill-0", "notes:node-kill-1", "notes:node-kill-2"]
UPDATES_PER_SECOND = 18.0
TYPING_SECONDS = 3.0
# Calls on a killed connection are never answered: they time out and the rejoin resends.
ACK_TIMEOUT_SECONDS = 10.0


async def test_acked_edits_survive_a_node_killed_five_times(cluster: Cluster) -> None:
    tokens = await cluster.tokens(EDITORS)
    crew = await Crew.start(
        cluster.urls,
        tokens,
        DOCUMENTS,
        updates_per_second=UPDATES_PER_SECOND,
        ready=cluster.ready,
        ack_timeout=ACK_TIMEOUT_SECONDS,
    )
    booting: asyncio.Future[object] = asyncio.get_running_loop().create_future()
    booting.set_result(None)
    try:
        for round_no in range(ROUNDS):
            await asyncio.sleep(TYPING_SECONDS)
            await booting  # the other node is up again: never both down at once
            victim = cluster.nodes[round_no % len(cluster.nodes)]
            victim.kill()
            # It boots again on its port while the editors go on through the other node.
            booting = asyncio.ensure_future(victim.start())
        await booting
        await asyncio.sleep(TYPING_SECONDS)
    finally:
        await crew.finish()
    problems = await served_everywhere(cluster, crew, f"node kill -9 x{ROUNDS}")
    if crew.tally.reconnects < ROUNDS:
        problems.append(f"only {crew.tally.reconnects} reconnects: did the kills hit editors?")
    assert not problems, "\n".join(problems)
