"""Fixtures of the fault battery: a private MariaDB and Redis (faults kill them, so never
the session-wide ones), migrated once for the package, and two server nodes per test."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.faults.support import Cluster, DurableMariaDB, Stack, create_user, server_env
from tests.support.servers import RedisServer, require_binaries


@pytest.fixture(scope="package")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One migrated database with an admin account; each test's nodes and documents are
    its own. Tests leave both servers running (a fault is undone before the test ends)."""
    require_binaries(*DurableMariaDB.BINARIES, *RedisServer.BINARIES)
    with DurableMariaDB() as mariadb, RedisServer() as redis:
        env = server_env(
            RCMS_DATABASE_URL=mariadb.create_database("rcms_faults"),
            RCMS_REDIS_URL=redis.url,
            RCMS_REDIS_PREFIX=f"rcms-faults-{secrets.token_hex(4)}:",
        )
        create_user(env, tmp_path_factory.mktemp("faults-setup"), "chief", "admin")
        yield Stack(mariadb, redis, env)


@pytest.fixture
async def cluster(stack: Stack, tmp_path: Path) -> AsyncIterator[Cluster]:
    """Two fresh nodes on the stack; killed when the test ends, however it ends."""
    cluster = Cluster.of(stack.env, tmp_path, 2)
    try:
        await cluster.start()
        yield cluster
    finally:
        cluster.stop()
