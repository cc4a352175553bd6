"""Two real server processes: a change made through node A ends idle sockets on node B at once.

The sockets are opened on B just before the change, so B's periodic re-check is seconds
away: only the access change relayed through Redis (`{prefix}collab:access`) closes them
within AT_ONCE_SECONDS.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from tests.support.cluster import PASSWORD, Cluster, cluster, login, rest
from tests.support.sockets import REVOKED, Passive, endings, on_every_transport

__all__ = ["cluster"]  # one pair of nodes for this module

_users = itertools.count(1)


@dataclass
class OnNodeB:
    """A fresh editor made through node A, signed in on node B, with a socket of theirs on
    every transport of node B."""

    user_id: int
    token: str
    sockets: list[Passive]


@pytest.fixture
async def on_node_b(cluster: Cluster) -> AsyncIterator[OnNodeB]:
    node_a, node_b = cluster.urls
    admin = cluster.tokens["alice"]
    name = f"revoked-across-{next(_users)}"
    account = {"username": name, "email": f"{name}@example.com", "password": PASSWORD}
    user = await rest("POST", f"{node_a}/api/v1/users", admin, {**account, "roles": ["editor"]})
    document_id = f"notes.revoked-across-{user['id']}"
    grant = f"{node_a}/api/v1/documents/{document_id}/permissions/{user['id']}"
    await rest("PUT", grant, admin, {"level": "write"})
    token = await login(node_b, name)
    async with contextlib.AsyncExitStack() as stack:
        sockets = await on_every_transport(stack, node_b, token, document_id)
        yield OnNodeB(user["id"], token, sockets)


async def test_deactivating_a_user_on_one_node_closes_their_sockets_on_the_other_at_once(
    cluster: Cluster, on_node_b: OnNodeB
) -> None:
    user = f"{cluster.urls[0]}/api/v1/users/{on_node_b.user_id}"
    await rest("POST", f"{user}/deactivate", cluster.tokens["alice"])
    assert await endings(on_node_b.sockets) == REVOKED


async def test_deleting_a_user_on_one_node_closes_their_sockets_on_the_other_at_once(
    cluster: Cluster, on_node_b: OnNodeB
) -> None:
    user = f"{cluster.urls[0]}/api/v1/users/{on_node_b.user_id}"
    await rest("DELETE", user, cluster.tokens["alice"])
    assert await endings(on_node_b.sockets) == REVOKED


async def test_signing_out_everywhere_on_one_node_closes_the_sockets_on_the_other_at_once(
    cluster: Cluster, on_node_b: OnNodeB
) -> None:
    await rest("POST", f"{cluster.urls[0]}/api/v1/auth/logout-everywhere", on_node_b.token)
    assert await endings(on_node_b.sockets) == REVOKED


async def test_logging_out_on_one_node_closes_that_sessions_sockets_on_the_other_at_once(
    cluster: Cluster, on_node_b: OnNodeB
) -> None:
    """A logout names the session only (no user): the relay carries that across as well."""
    await rest("POST", f"{cluster.urls[0]}/api/v1/auth/logout", on_node_b.token)
    assert await endings(on_node_b.sockets) == REVOKED
