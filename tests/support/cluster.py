"""Two real `realtime-cms serve` processes on one MariaDB and one Redis, per test module.

`cluster` is a module-scoped fixture: a module that imports it gets its own pair of nodes
(and its own database), with the admins alice (made by the CLI, signed in on node 0) and
bob (made through the API, signed in on node 1).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support.live import wait_healthy
from tests.support.servers import MariaDBServer, RedisServer, free_port, require_binaries

CLI = [sys.executable, "-m", "handlers"]
# The servers must run this tree's code, whatever checkout the package is installed from.
ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "a long multinode password"
# Generous: polling stops as soon as the condition holds; this only bounds a hang.
WAIT_SECONDS = 60.0


@dataclass
class Cluster:
    """Two `realtime-cms serve` processes sharing a database and a Redis."""

    urls: list[str]
    tokens: dict[str, str]
    redis: RedisServer

    async def stop_redis(self) -> None:
        await asyncio.to_thread(self.redis.stop)

    async def start_redis_again(self) -> None:
        """A new, empty Redis on the port the nodes were configured with."""
        self.redis = await asyncio.to_thread(RedisServer(port=self.redis.port).start)


def _env(**settings: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("RCMS_")}
    path = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update({"PYTHONPATH": path, "RCMS_ARGON2_MEMORY_KIB": "8192", "RCMS_ARGON2_TIME_COST": "1"})
    return env | settings


def _create_admin(env: dict[str, str], workdir: Path, username: str) -> None:
    """The first user, as an operator makes it (the command also migrates the database)."""
    command = [*CLI, "create-user", username, "--email", f"{username}@example.com"]
    result = subprocess.run(
        [*command, "--admin", "--password-stdin"],
        input=PASSWORD + "\n",
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr


async def _wait_healthy(process: asyncio.subprocess.Process, url: str, log: Path) -> None:
    await wait_healthy(
        url,
        alive=lambda: process.returncode is None,
        why_not=lambda: log.read_text()[-3000:],
        within=WAIT_SECONDS,
    )


async def rest(method: str, url: str, token: str | None = None, body: Any = None) -> Any:
    """Call the REST API at `url`; the answer's `data` (None for a 204), any 2xx expected."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, url, json=body, headers=headers) as response,
    ):
        if response.status == 204:
            return None
        answer = await response.json(content_type=None)
        assert response.status in (200, 201), answer
        return answer["data"]


async def login(url: str, username: str) -> str:
    """Sign in on the node at `url`; the session token."""
    signed_in = {"login": username, "password": PASSWORD}
    return str((await rest("POST", f"{url}/api/v1/auth/login", body=signed_in))["token"])


async def _add_users(cluster: Cluster) -> None:
    """Alice (made by the command) logs in on node 0 and adds Bob, who logs in on node 1."""
    cluster.tokens["alice"] = await login(cluster.urls[0], "alice")
    bob = {"username": "bob", "email": "bob@example.com", "password": PASSWORD, "roles": ["admin"]}
    await rest("POST", f"{cluster.urls[0]}/api/v1/users", cluster.tokens["alice"], bob)
    cluster.tokens["bob"] = await login(cluster.urls[1], "bob")


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.terminate()
    try:
        await asyncio.wait_for(process.wait(), 30)
    except TimeoutError:
        process.kill()
        await process.wait()


@pytest.fixture(scope="module")
async def cluster(
    mariadb_server: MariaDBServer, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Cluster]:
    require_binaries(*RedisServer.BINARIES)
    workdir = tmp_path_factory.mktemp("multinode")
    database = f"rcms_multinode_{secrets.token_hex(4)}"
    cluster = Cluster([], {}, await asyncio.to_thread(RedisServer().start))
    processes: list[asyncio.subprocess.Process] = []
    try:
        env = _env(
            RCMS_DATABASE_URL=mariadb_server.create_database(database),
            RCMS_REDIS_URL=cluster.redis.url,
            RCMS_REDIS_PREFIX=f"rcms-multinode-{secrets.token_hex(4)}:",
            RCMS_SECRET_KEY=secrets.token_urlsafe(48),
            RCMS_LOGIN_IP_RATE_LIMIT="10000",
        )
        await asyncio.to_thread(_create_admin, env, workdir, "alice")
        starting = []
        for node in range(2):
            port, log = free_port(), workdir / f"node-{node}.log"
            with log.open("wb") as out:
                process = await asyncio.create_subprocess_exec(
                    *CLI, "serve", "--port", str(port), cwd=workdir, env=env, stdout=out, stderr=out
                )
            processes.append(process)
            cluster.urls.append(f"http://127.0.0.1:{port}")
            starting.append(_wait_healthy(process, cluster.urls[-1], log))
        await asyncio.gather(*starting)
        await _add_users(cluster)
        yield cluster
    finally:
        await asyncio.gather(*(_stop(process) for process in processes))
        cluster.redis.stop()
        mariadb_server.drop_database(database)
