"""Benchmark of live notifications (not a test): idle connections, RSS each, delivery rate.

Starts one `realtime-cms serve` process on a fresh SQLite database (or the database given
with --database-url), creates the users and their sessions directly in the database, then:

1. idle: opens --idle connections to `/notifications` from several client processes and
   reports the server's RSS growth per connection and its CPU use while they sit idle
   (the token re-check sweep runs every 5 s);
2. delivery: keeps --users connections (one per user) and sends --rounds notifications to
   every one of them through `POST /api/v1/notifications/send` (one request per round for
   all users), then --per-user sends of one request per user; it reports notifications
   delivered per second, from the first request until every client has received all.

Every connection is to 127.0.0.1; loops are bounded. See README.md for how to run it.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import aiohttp
import socketio

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from realtime_cms.accounts.sessions import create_session  # noqa: E402
from realtime_cms.db import create_engine, session_factory, transaction  # noqa: E402
from realtime_cms.models.auth import User, UserRole  # noqa: E402
from realtime_cms.rbac.service import role_id_by_name, seed_defaults  # noqa: E402

NAMESPACE = "/notifications"
CONNECT_CONCURRENCY = 50
# Spawned, not forked: a child forked inside the running event loop could not start its own.
MP = mp.get_context("spawn")
DEADLINE_SECONDS = 600


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def make_users(database_url: str, count: int) -> tuple[str, list[str]]:
    """An admin session token and one session token per new user."""
    engine = create_engine(database_url)
    try:
        async with transaction(session_factory(engine)) as db:
            await seed_defaults(db)
            admin = User(username="bench-admin", email="bench-admin@example.com", password="x")
            db.add(admin)
            await db.flush()
            db.add(UserRole(user_id=admin.id, role_id=await role_id_by_name(db, "admin")))
            admin_token = await create_session(db, admin, "127.0.0.1", "bench")
            tokens = []
            viewer = await role_id_by_name(db, "viewer")
            for n in range(count):
                user = User(username=f"bench{n}", email=f"bench{n}@example.com", password="x")
                db.add(user)
                await db.flush()
                db.add(UserRole(user_id=user.id, role_id=viewer))
                tokens.append(await create_session(db, user, "127.0.0.1", "bench"))
        return admin_token, tokens
    finally:
        await engine.dispose()


# --- client processes -------------------------------------------------------------------


async def _client_main(url: str, tokens: list[str], pipe: Connection) -> None:
    received = 0
    target: int | None = None
    reached = asyncio.Event()

    async def on_notification(data: Any) -> None:
        nonlocal received
        received += 1
        if target is not None and received >= target:
            reached.set()

    clients: list[socketio.AsyncClient] = []
    limit = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def open_one(token: str) -> None:
        client = socketio.AsyncClient(reconnection=False)
        client.on("notification", on_notification, namespace=NAMESPACE)
        async with limit:
            await client.connect(
                url,
                namespaces=[NAMESPACE],
                auth={"token": token},
                transports=["websocket"],
                wait_timeout=60,
            )
        clients.append(client)

    await asyncio.gather(*(open_one(token) for token in tokens))
    pipe.send(("connected", len(clients)))
    loop = asyncio.get_running_loop()
    while True:
        command, value = await loop.run_in_executor(None, pipe.recv)
        if command == "quit":
            break
        target = int(value)
        if received < target:
            reached.clear()
            await asyncio.wait_for(reached.wait(), DEADLINE_SECONDS)
        pipe.send(("reached", time.monotonic()))
    await asyncio.gather(*(client.disconnect() for client in clients))
    pipe.send(("closed", received))


def _client_process(url: str, tokens: list[str], pipe: Connection) -> None:
    asyncio.run(_client_main(url, tokens, pipe))


class Clients:
    """Client processes, each holding a share of the connections."""

    def __init__(self, url: str, tokens: list[str], processes: int) -> None:
        self.pipes: list[Connection] = []
        self.procs: list[Any] = []
        for share in (tokens[n::processes] for n in range(processes)):
            mine, theirs = MP.Pipe()
            proc = MP.Process(target=_client_process, args=(url, share, theirs), daemon=True)
            proc.start()
            self.pipes.append(mine)
            self.procs.append(proc)
        self.shares = [len(tokens[n::processes]) for n in range(processes)]

    def wait(self, kind: str) -> list[Any]:
        answers = []
        for pipe in self.pipes:
            if not pipe.poll(DEADLINE_SECONDS):
                raise TimeoutError(f"a client process did not answer {kind!r}")
            answer_kind, value = pipe.recv()
            assert answer_kind == kind, (answer_kind, value)
            answers.append(value)
        return answers

    def expect_per_client(self, count: int) -> float:
        """Wait until every connection has `count` notifications in all; when the last did."""
        for pipe, share in zip(self.pipes, self.shares, strict=True):
            pipe.send(("expect", count * share))
        return max(self.wait("reached"))

    def close(self) -> None:
        for pipe in self.pipes:
            pipe.send(("quit", None))
        self.wait("closed")
        for proc in self.procs:
            proc.join(30)


# --- phases ---------------------------------------------------------------------------


async def idle_phase(server: Server, tokens: list[str], processes: int) -> dict[str, float]:
    before = rss_kib(server.pid)
    clients = Clients(server.url, tokens, processes)
    connected = sum(await asyncio.to_thread(clients.wait, "connected"))
    await asyncio.sleep(10)  # let the server's allocations settle (and a couple of sweeps run)
    after = rss_kib(server.pid)
    cpu_start, wall_start = cpu_seconds(server.pid), time.monotonic()
    await asyncio.sleep(20)
    cpu = (cpu_seconds(server.pid) - cpu_start) / (time.monotonic() - wall_start)
    await asyncio.to_thread(clients.close)
    return {
        "connections": connected,
        "rss_before_mib": before / 1024,
        "rss_after_mib": after / 1024,
        "rss_per_connection_kib": (after - before) / connected,
        "idle_cpu_percent": 100 * cpu,
    }


async def delivery_phase(
    server: Server, admin: str, user_ids: list[int], tokens: list[str], args: argparse.Namespace
) -> dict[str, float]:
    clients = Clients(server.url, tokens, args.processes)
    await asyncio.to_thread(clients.wait, "connected")
    results: dict[str, float] = {"users": len(tokens)}
    headers = {"Authorization": f"Bearer {admin}"}
    async with aiohttp.ClientSession(headers=headers) as http:

        async def send(users: list[int], title: str) -> None:
            body = {"user_ids": users, "title": title, "message": "bench"}
            async with http.post(f"{server.url}/api/v1/notifications/send", json=body) as r:
                assert r.status == 200, await r.text()

        cpu_start, start = cpu_seconds(server.pid), time.monotonic()
        for n in range(args.rounds):
            await send(user_ids, f"round {n}")
        done = await asyncio.to_thread(clients.expect_per_client, args.rounds)
        elapsed = done - start
        results["batch_notifications"] = args.rounds * len(tokens)
        results["batch_seconds"] = elapsed
        results["batch_per_second"] = args.rounds * len(tokens) / elapsed
        results["batch_server_cpu_percent"] = 100 * (cpu_seconds(server.pid) - cpu_start) / elapsed

        limit = asyncio.Semaphore(args.concurrency)

        async def send_one(user_id: int, n: int) -> None:
            async with limit:
                await send([user_id], f"single {n}")

        cpu_start, start = cpu_seconds(server.pid), time.monotonic()
        for n in range(args.per_user):
            await asyncio.gather(*(send_one(user_id, n) for user_id in user_ids))
        done = await asyncio.to_thread(clients.expect_per_client, args.rounds + args.per_user)
        elapsed = done - start
        results["single_notifications"] = args.per_user * len(tokens)
        results["single_seconds"] = elapsed
        results["single_per_second"] = args.per_user * len(tokens) / elapsed
        results["single_server_cpu_percent"] = 100 * (cpu_seconds(server.pid) - cpu_start) / elapsed
    await asyncio.to_thread(clients.close)
    return results


# --- the server -----------------------------------------------------------------------


class Server:
    def __init__(self, workdir: Path, database_url: str) -> None:
        self.workdir, self.database_url = workdir, database_url
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("RCMS_")}
        self.env.update(
            PYTHONPATH=str(ROOT),
            RCMS_DATABASE_URL=database_url,
            RCMS_SECRET_KEY=secrets.token_urlsafe(48),
            RCMS_LOG_LEVEL="WARNING",
        )
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def migrate(self) -> None:
        command = [sys.executable, "-m", "handlers", "migrate"]
        subprocess.run(command, cwd=self.workdir, env=self.env, check=True, capture_output=True)

    def launch(self) -> None:
        with (self.workdir / "server.log").open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "handlers", "serve", "--port", str(self.port)],
                cwd=self.workdir,
                env=self.env,
                stdout=log,
                stderr=log,
            )

    async def wait_healthy(self) -> None:
        assert self.process is not None
        async with aiohttp.ClientSession() as http:
            for _ in range(600):
                if self.process.poll() is not None:
                    break
                try:
                    async with http.get(f"{self.url}/healthz") as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientConnectionError:
                    pass
                await asyncio.sleep(0.1)
        raise RuntimeError(f"the server did not start; see {self.workdir / 'server.log'}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(60)


async def user_ids_of(server: Server, tokens: list[str]) -> list[int]:
    ids = []
    async with aiohttp.ClientSession() as http:
        for token in tokens:
            headers = {"Authorization": f"Bearer {token}"}
            async with http.get(f"{server.url}/api/v1/auth/me", headers=headers) as response:
                ids.append(int((await response.json())["data"]["user"]["id"]))
    return ids


async def main(args: argparse.Namespace) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="rcms-bench-notifications-"))
    database_url = args.database_url or f"sqlite+aiosqlite:///{workdir / 'bench.sqlite3'}"
    server = Server(workdir, database_url)
    server.migrate()
    admin, tokens = await make_users(database_url, max(args.idle, args.users))
    server.launch()
    await server.wait_healthy()
    try:
        idle = await idle_phase(server, tokens[: args.idle], args.processes)
        print_table("Idle connections", idle)
        user_ids = await user_ids_of(server, tokens[: args.users])
        delivery = await delivery_phase(server, admin, user_ids, tokens[: args.users], args)
        print_table("Delivery", delivery)
    finally:
        server.stop()
    print(f"(work directory: {workdir})")


def print_table(title: str, figures: dict[str, float]) -> None:
    print(f"\n{title}")
    for name, value in figures.items():
        print(f"  {name:28} {value:12.1f}")


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle", type=int, default=2000, help="idle connections to hold")
    parser.add_argument("--users", type=int, default=1000, help="connected users for delivery")
    parser.add_argument("--rounds", type=int, default=10, help="batch sends to every user")
    parser.add_argument("--per-user", type=int, default=2, help="single-user sends per user")
    parser.add_argument("--concurrency", type=int, default=20, help="parallel single sends")
    parser.add_argument("--processes", type=int, default=4, help="client processes")
    parser.add_argument("--database-url", help="default: a fresh SQLite file")
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse()))
