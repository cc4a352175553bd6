"""Real server processes for the fault battery: nodes on fixed ports that can be killed and
started again, a MariaDB that survives its own SIGKILL, accounts, and the nodes' logs."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import aiohttp

from tests.support.live import wait_healthy
from tests.support.servers import MariaDBServer, RedisServer, _die_with_parent, free_port

CLI = [sys.executable, "-m", "handlers"]
# The servers must run this tree's code, whatever checkout the package is installed from.
ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "a long password for the fault battery"
# Generous bounds that only stop a hang; waits end as soon as their condition holds.
START_SECONDS = 60.0
# The server-side bound on an update's ack (RCMS_COLLAB_ACK_DEADLINE_SECONDS).
ACK_DEADLINE_SECONDS = 10.0


class DurableMariaDB(MariaDBServer):
    """A private MariaDB whose commits survive a SIGKILL of `mariadbd`.

    The shared test server flushes its redo log once a second (`trx-commit=0`), so killing
    it loses the last second of commits: an acknowledged edit would vanish for a reason
    that is not the application's. `2` writes the log at every commit (to the OS, which
    outlives the process) and is still fast.
    """

    NAME: ClassVar[str] = "mariadb-durable"

    def _command(self) -> list[str]:
        return [*super()._command(), "--innodb-flush-log-at-trx-commit=2"]


@dataclass
class Stack:
    """Private backing services (faults kill them) and the environment of nodes using them."""

    mariadb: DurableMariaDB
    redis: RedisServer
    env: dict[str, str]


def server_env(**settings: str) -> dict[str, str]:
    """The environment of a server process: this tree's code, cheap argon2, lifted login
    limits (many editors log in), the ack deadline the tests assume, JSON logs."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("RCMS_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(
        RCMS_SECRET_KEY=secrets.token_urlsafe(48),
        RCMS_ARGON2_MEMORY_KIB="8192",
        RCMS_ARGON2_TIME_COST="1",
        RCMS_LOGIN_RATE_LIMIT="100000",
        RCMS_LOGIN_IP_RATE_LIMIT="100000",
        RCMS_COLLAB_ACK_DEADLINE_SECONDS=str(ACK_DEADLINE_SECONDS),
        RCMS_LOG_FORMAT="json",
    )
    return env | settings


def create_user(env: dict[str, str], workdir: Path, username: str, role: str) -> None:
    """An account made as an operator makes it (the command also migrates the database)."""
    role_args = ["--admin"] if role == "admin" else ["--role", role]
    result = subprocess.run(
        [*CLI, "create-user", username, "--email", f"{username}@example.com", *role_args]
        + ["--password-stdin"],
        input=PASSWORD + "\n",
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]


class Node:
    """One `realtime-cms serve` process on a port of its own, kept across restarts."""

    def __init__(self, name: str, env: dict[str, str], workdir: Path) -> None:
        self.name = name
        self.env = env
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = workdir / f"{name}.log"
        self.starts = 0
        self.ready = False
        self.process: subprocess.Popen[bytes] | None = None

    def spawn(self) -> None:
        """Start the process (without waiting for it); its stderr is appended to `log`."""
        assert self.process is None or self.process.poll() is not None, f"{self.name} runs"
        self.starts += 1
        with self.log.open("ab") as out:
            out.write(f"=== {self.name}: start {self.starts} ===\n".encode())
            out.flush()
            self.process = subprocess.Popen(
                [*CLI, "serve", "--port", str(self.port)],
                cwd=self.workdir,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                preexec_fn=_die_with_parent(),  # the kernel kills it if pytest dies first
            )

    async def start(self) -> Node:
        """Spawn and wait until `/healthz` answers 200."""
        self.spawn()
        await self.healthy()
        self.ready = True
        return self

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    async def healthy(self) -> None:
        await wait_healthy(
            self.url, alive=lambda: self.running, why_not=self.log_tail, within=START_SECONDS
        )

    def kill(self) -> None:
        """SIGKILL: no shutdown hook, no flush, no goodbye to the clients."""
        self.ready = False
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not stop."""
        self.ready = False
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.kill()

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:]

    def log_entries(self) -> LogSummary:
        return LogSummary.read(self.log)


@dataclass
class Cluster:
    """Server nodes sharing one database (and one Redis, for more than one node)."""

    nodes: list[Node]
    admin: str = "chief"

    @classmethod
    def of(cls, env: dict[str, str], workdir: Path, count: int) -> Cluster:
        return cls([Node(f"node-{n}", env, workdir) for n in range(count)])

    async def start(self) -> None:
        await asyncio.gather(*(node.start() for node in self.nodes))

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    def ready(self, node: int) -> bool:
        return self.nodes[node].ready

    async def tokens(self, count: int, username: str | None = None) -> list[str]:
        """`count` sessions of one account (the admin by default), logged in round-robin."""
        logins = [
            login(self.urls[n % len(self.nodes)], username or self.admin) for n in range(count)
        ]
        return [token for token, _ in await asyncio.gather(*logins)]

    async def restart_all(self) -> None:
        """kill -9 every node, then start fresh processes on the same ports."""
        for node in self.nodes:
            node.kill()
        await asyncio.gather(*(node.start() for node in self.nodes))

    def stop(self) -> None:
        for node in self.nodes:
            node.kill()

    def errors(self) -> list[str]:
        return [
            error for node in self.nodes for error in node.log_entries().errors_with_traceback()
        ]


@dataclass
class LogSummary:
    """A node's log, JSON lines (RCMS_LOG_FORMAT=json) and any raw lines beside them."""

    entries: list[dict[str, Any]] = field(default_factory=list)
    raw_tracebacks: list[str] = field(default_factory=list)

    @classmethod
    def read(cls, path: Path) -> LogSummary:
        summary = cls()
        lines = path.read_text(errors="replace").splitlines()
        for index, line in enumerate(lines):
            if line.startswith("{"):
                try:
                    summary.entries.append(json.loads(line))
                    continue
                except ValueError:
                    pass
            if line.startswith("Traceback (most recent call last)"):
                # A library logging on its own handler, bypassing the JSON formatter.
                summary.raw_tracebacks.append("\n".join(lines[max(index - 2, 0) : index + 30]))
        return summary

    def at(self, *levels: str) -> list[dict[str, Any]]:
        return [entry for entry in self.entries if entry.get("level") in levels]

    def errors_with_traceback(self) -> list[str]:
        """Every ERROR (or worse) logged with an exception, and every bare traceback."""
        logged = [
            f"{entry.get('logger')}: {entry.get('message')}\n{entry['exc']}"
            for entry in self.at("ERROR", "CRITICAL")
            if entry.get("exc")
        ]
        return logged + self.raw_tracebacks

    def counts(self, *levels: str) -> Counter[str]:
        """How often each message was logged at these levels (numbers folded, for a digest)."""
        return Counter(
            f"{entry.get('level')} {entry.get('logger')}: {_fold(str(entry.get('message')))}"
            for entry in self.at(*levels)
        )


def _fold(message: str) -> str:
    """A log message with its ids and numbers blanked, so repeats count as one."""
    words = [("#" if any(char.isdigit() for char in word) else word) for word in message.split()]
    return " ".join(words)[:160]


def digest(nodes: list[Node], *levels: str, top: int = 12) -> str:
    """The most frequent WARNING/ERROR messages of the nodes' logs, for a failure report."""
    counts: Counter[str] = Counter()
    for node in nodes:
        counts += node.log_entries().counts(*levels)
    return "\n".join(f"  {count:6d} x {message}" for message, count in counts.most_common(top))


async def post_json(url: str, body: dict[str, Any], token: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        aiohttp.ClientSession() as http,
        http.post(url, json=body, headers=headers) as response,
    ):
        answer = await response.json()
        assert response.status in (200, 201), answer
        return answer["data"]


async def login(url: str, username: str) -> tuple[str, int]:
    """A bearer token of the account and its user id."""
    data = await post_json(f"{url}/api/v1/auth/login", {"login": username, "password": PASSWORD})
    return str(data["token"]), int(data["user"]["id"])


async def grant(url: str, admin_token: str, document_id: str, user_id: int, level: str) -> None:
    """Give a user `level` on a document (a grant through the REST API)."""
    path = f"{url}/api/v1/documents/{document_id}/permissions/{user_id}"
    headers = {"Authorization": f"Bearer {admin_token}"}
    async with (
        aiohttp.ClientSession() as http,
        http.put(path, json={"level": level}, headers=headers) as response,
    ):
        assert response.status in (200, 201), await response.text()
