"""Two real server processes on one MariaDB and one Redis: clients on different nodes co-edit."""

from __future__ import annotations

import asyncio
import itertools
import os
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pycrdt
import pytest

from realtime_cms.client import ClientDocument, CollabClient
from tests.handlers.test_collab import eventually
from tests.support.servers import MariaDBServer, RedisServer, free_port, require_binaries

CLI = [sys.executable, "-m", "handlers"]
# The servers must run this tree's code, whatever checkout the package is installed from.
ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "a long multinode password"
# Generous: polling stops as soon as the condition holds; this only bounds a hang.
WAIT_SECONDS = 60.0
_names = (f"notes.multinode-{n}" for n in itertools.count(1))


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
    deadline = asyncio.get_running_loop().time() + WAIT_SECONDS
    async with aiohttp.ClientSession() as http:
        while True:
            if process.returncode is not None:
                output = await asyncio.to_thread(log.read_text)
                pytest.fail(f"{url} exited:\n{output[-3000:]}")
            try:
                async with http.get(f"{url}/healthz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            assert asyncio.get_running_loop().time() < deadline, f"{url} never became healthy"
            await asyncio.sleep(0.1)


async def _post(url: str, body: dict[str, Any], token: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        aiohttp.ClientSession() as http,
        http.post(url, json=body, headers=headers) as response,
    ):
        answer = await response.json()
        assert response.status in (200, 201), answer
        return answer["data"]


async def _login(url: str, username: str) -> str:
    login = {"login": username, "password": PASSWORD}
    return str((await _post(f"{url}/api/v1/auth/login", login))["token"])


async def _add_users(cluster: Cluster) -> None:
    """Alice (made by the command) logs in on node 0 and adds Bob, who logs in on node 1."""
    cluster.tokens["alice"] = await _login(cluster.urls[0], "alice")
    bob = {"username": "bob", "email": "bob@example.com", "password": PASSWORD, "roles": ["admin"]}
    await _post(f"{cluster.urls[0]}/api/v1/users", bob, cluster.tokens["alice"])
    cluster.tokens["bob"] = await _login(cluster.urls[1], "bob")


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


@pytest.fixture
async def connect(cluster: Cluster) -> AsyncIterator[Callable[[int, str], Awaitable[CollabClient]]]:
    """Open a `/collab` client as `username` on node 0 or 1; all are closed afterwards."""
    clients: list[CollabClient] = []

    async def open_client(node: int, username: str) -> CollabClient:
        client = CollabClient(cluster.urls[node], cluster.tokens[username], timeout=WAIT_SECONDS)
        await client.connect()
        clients.append(client)
        return client

    yield open_client
    for client in clients:
        if client.sio.connected:
            await client.sio.disconnect()


async def type_words(document: ClientDocument, tag: str, count: int) -> None:
    """Append `count` words, one transaction (one update) each, then wait for the acks."""
    text = document.doc.get("body", type=pycrdt.Text)
    for n in range(count):
        text.insert(len(text), f"{tag}{n} ")
        await asyncio.sleep(0.01)
    await document.flush()
    assert not document.errors


def converged(documents: list[ClientDocument], *tags_and_counts: tuple[str, int]) -> bool:
    """Whether every document shows the same text, made of exactly the expected words."""
    expected = sorted(f"{tag}{n}" for tag, count in tags_and_counts for n in range(count))
    texts = {document.text() for document in documents}
    return len(texts) == 1 and sorted(texts.pop().split()) == expected


async def test_clients_on_different_nodes_co_edit_one_document_and_converge(
    connect: Callable[[int, str], Awaitable[CollabClient]],
) -> None:
    document_id = next(_names)
    a = await (await connect(0, "alice")).join(document_id)
    b = await (await connect(1, "bob")).join(document_id)
    c = await (await connect(1, "alice")).join(document_id)
    await asyncio.gather(type_words(a, "a", 25), type_words(b, "b", 25), type_words(c, "c", 25))
    await eventually(lambda: converged([a, b, c], ("a", 25), ("b", 25), ("c", 25)), WAIT_SECONDS)


async def test_editing_through_a_redis_restart_converges_through_the_log(
    cluster: Cluster, connect: Callable[[int, str], Awaitable[CollabClient]]
) -> None:
    document_id = next(_names)
    a = await (await connect(0, "alice")).join(document_id)
    b = await (await connect(1, "bob")).join(document_id)
    await asyncio.gather(type_words(a, "a", 20), type_words(b, "b", 20), cluster.stop_redis())
    # Redis is down: only the nodes' catch-up from the log carries changes across.
    await asyncio.gather(type_words(a, "down-a", 10), type_words(b, "down-b", 10))
    expected = [("a", 20), ("b", 20), ("down-a", 10), ("down-b", 10)]
    await eventually(lambda: converged([a, b], *expected), WAIT_SECONDS)
    await asyncio.gather(
        type_words(a, "up-a", 20), type_words(b, "up-b", 20), cluster.start_redis_again()
    )
    await asyncio.gather(type_words(a, "after-a", 10), type_words(b, "after-b", 10))
    expected += [("up-a", 20), ("up-b", 20), ("after-a", 10), ("after-b", 10)]
    late = await (await connect(1, "alice")).join(document_id)
    await eventually(lambda: converged([a, b, late], *expected), WAIT_SECONDS)
