"""The servers under test: how to start each one fresh, and which protocol adapter speaks to it.

Every server listens on 127.0.0.1 only and is started in its own temporary directory (its
databases live there, or on /dev/shm for ours in memory). A server whose packages are not
installed reports why instead of starting, and the run goes on with the others.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import tempfile
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1]
ROOT = BENCH.parent
PRODUCT_BIN = ROOT / ".venv" / "bin"
BENCH_PYTHON = BENCH / ".venv" / "bin" / "python"
NODE_MODULES = BENCH / "node_modules"
PASSWORD = "benchmark password, long enough"


class Unavailable(Exception):
    """The server cannot run here (a package is missing); the message says which."""


@dataclass
class Launch:
    """What to run for one server in one persistence mode."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    url: str = ""
    token: str = ""
    after_start: Callable[[Launch, int], None] | None = None


@dataclass(frozen=True)
class ServerKind:
    name: str
    adapter: str
    modes: tuple[str, ...]
    launch: Callable[[int, Path, str], Launch]
    handshake: bool = True
    note: str = ""


def _need(path: Path, what: str) -> None:
    if not path.exists():
        raise Unavailable(f"{what} is not installed ({path.relative_to(ROOT)} missing)")


def _ours_env(database: Path, extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RCMS_")}
    env.update(
        RCMS_DATABASE_URL=f"sqlite+aiosqlite:///{database}",
        RCMS_ARGON2_MEMORY_KIB="8192",
        RCMS_ARGON2_TIME_COST="1",
        PYTHONPATH=str(ROOT),
        **extra,
    )
    return env


_template: list[Path] = []


def _template_database() -> Path:
    """A migrated database holding the admin `bench`, made once by the CLI and then copied."""
    if not _template:
        _need(PRODUCT_BIN / "realtime-cms", "the product venv (make install)")
        folder = Path(tempfile.mkdtemp(prefix="bench-template-"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        database = folder / "template.sqlite3"
        made = subprocess.run(
            [str(PRODUCT_BIN / "realtime-cms"), "create-user", "bench", "--email",
             "bench@example.com", "--admin", "--password-stdin"],
            cwd=folder, env=_ours_env(database, {}), input=PASSWORD + "\n",
            capture_output=True, text=True, timeout=120,
        )
        if made.returncode != 0:
            raise RuntimeError(f"create-user failed: {made.stderr[-2000:]}")
        _template.append(database)
    return _template[0]


def _ours(path: str, extra: dict[str, str] | None = None) -> Callable[[int, Path, str], Launch]:
    def launch(port: int, workdir: Path, mode: str) -> Launch:
        # In memory: the same SQLite log and commits, on tmpfs (no disk flush). Durable: disk.
        base = Path("/dev/shm") if mode == "memory" and Path("/dev/shm").is_dir() else workdir
        database = base / f"rcms-bench-{workdir.name}.sqlite3"
        shutil.copyfile(_template_database(), database)
        scheme = "ws" if path else "http"
        return Launch(
            argv=[str(PRODUCT_BIN / "realtime-cms"), "serve", "--host", "127.0.0.1",
                  "--port", str(port)],
            env=_ours_env(database, extra or {}),
            url=f"{scheme}://127.0.0.1:{port}{path}",
            after_start=_login,
        )

    return launch


def _login(launch: Launch, port: int) -> None:
    body = json.dumps({"login": "bench", "password": PASSWORD}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v1/auth/login", data=body,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        launch.token = json.load(response)["data"]["token"]


def _y_websocket(port: int, workdir: Path, mode: str) -> Launch:
    script = NODE_MODULES / "y-websocket" / "bin" / "server.js"
    _need(script, "y-websocket 1.5.4")
    env = dict(os.environ, HOST="127.0.0.1", PORT=str(port))
    if mode == "durable":
        _need(NODE_MODULES / "y-leveldb", "y-leveldb")
        env["YPERSISTENCE"] = str(workdir / "leveldb")
    return Launch([shutil.which("node") or "node", str(script)], env, f"ws://127.0.0.1:{port}")


def _hocuspocus(port: int, workdir: Path, mode: str) -> Launch:
    _need(NODE_MODULES / "@hocuspocus" / "server", "@hocuspocus/server 3.4.x")
    argv = [shutil.which("node") or "node", str(BENCH / "servers" / "hocuspocus.mjs"), str(port)]
    if mode == "durable":
        _need(
            NODE_MODULES / "@hocuspocus" / "extension-sqlite",
            "@hocuspocus/extension-sqlite (an optional dependency: `npm ci` without "
            "--omit=optional; its sqlite3 module compiles for ~2 minutes)",
        )
        argv.append(str(workdir / "hocuspocus.sqlite"))
    return Launch(argv, dict(os.environ), f"ws://127.0.0.1:{port}")


def _bench_python(script: str, *args: str) -> Callable[[int, Path, str], Launch]:
    def launch(port: int, workdir: Path, mode: str) -> Launch:
        _need(BENCH_PYTHON, "the bench venv (bench/.venv, from bench/requirements.txt)")
        argv = [str(BENCH_PYTHON), str(BENCH / script), *args, "--port", str(port)]
        if mode == "durable":
            argv += ["--sqlite-dir", str(workdir / "ystore")]
        return Launch(argv, dict(os.environ), f"ws://127.0.0.1:{port}")

    return launch


# The *-tuned servers: the per-connection rate limit (default 400 messages/s) lifted for S4.
_UNLIMITED = {"RCMS_COLLAB_MAX_MESSAGES_PER_SECOND": "1000000"}

SERVERS = {
    kind.name: kind
    for kind in (
        ServerKind("ours-collab", "collab", ("memory", "durable"), _ours(""),
                   note="/collab Socket.IO namespace, acks after commit"),
        ServerKind("ours-ws", "ywebsocket", ("memory", "durable"), _ours("/ws"),
                   note="our y-websocket transport /ws/<doc>"),
        ServerKind("ours-ysio", "ysocketio", ("memory", "durable"), _ours(""),
                   note="our y-socket.io namespaces /yjs|<doc>"),
        ServerKind("ours-collab-tuned", "collab", ("memory", "durable"),
                   _ours("", _UNLIMITED),
                   note="/collab with the per-connection rate limit (default 400/s) lifted"),
        ServerKind("ours-ws-tuned", "ywebsocket", ("memory", "durable"),
                   _ours("/ws", _UNLIMITED),
                   note="/ws with the per-connection rate limit (default 400/s) lifted"),
        ServerKind("ours-collab-msgpack", "collab-msgpack", ("memory", "durable"), _ours(""),
                   note="/collab over msgpack framing (/socket.io-msgpack/)"),
        ServerKind("ours-collab-msgpack-tuned", "collab-msgpack", ("memory", "durable"),
                   _ours("", _UNLIMITED),
                   note="/collab over msgpack framing with the rate limit (400/s) lifted"),
        ServerKind("y-websocket", "ywebsocket", ("memory", "durable"), _y_websocket,
                   note="y-websocket 1.5.4 bin/server.js; durable: y-leveldb"),
        ServerKind("hocuspocus", "hocuspocus", ("memory", "durable"), _hocuspocus,
                   note="@hocuspocus/server 3.4.4; durable: extension-sqlite"),
        ServerKind("pycrdt-websocket", "ywebsocket", ("memory", "durable"),
                   _bench_python("servers/pycrdt_ws.py"),
                   note="pycrdt-websocket 0.16.5 on aiohttp; durable: SQLiteYStore"),
        ServerKind("floor-relay", "ywebsocket", ("memory",),
                   _bench_python("floors/relay.py", "--mode", "relay"), handshake=False,
                   note="aiohttp WebSocket relay, no CRDT"),
        ServerKind("floor-crdt", "ywebsocket", ("memory",),
                   _bench_python("floors/relay.py", "--mode", "crdt"),
                   note="aiohttp + pycrdt apply + relay"),
    )
}

