"""Real npm Yjs providers against a real server: they co-edit with the Python client.

`coedit.mjs` runs static/collab-provider.js (on `/collab`), y-websocket's WebsocketProvider
(on `/ws/<document>`) and y-socket.io's SocketIOProvider (on `/yjs|<document>`) in one
Node process, each with its own Y.Doc, while a Python `CollabClient` edits the same
document. Every client must end with the same text holding every word anyone inserted, and
the server's durable log must say the same. Node and npm are required: missing, the module
is skipped locally and fails when CI=true. The npm packages (tests/interop/package-lock.json)
are installed by `npm ci` once, and again only when the lockfile changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import os
import random
import secrets
import sqlite3
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pycrdt
import pytest

from realtime_cms.client import CollabClient, CollabError
from realtime_cms.collab.store import apply_rows
from tests.support.servers import find_binary, free_port

INTEROP = Path(__file__).resolve().parent
ROOT = INTEROP.parents[1]
STAMP = INTEROP / "node_modules" / ".rcms-installed"
PASSWORD = "interop password, long enough"
WORDS = 50
NODE_CLIENTS = ("collab", "ywebsocket", "ysocketio")
NODE_TIMEOUT = 40.0
CLI = [sys.executable, "-m", "handlers"]
ACK_DEADLINE_SECONDS = 2


def require_node() -> tuple[str, str]:
    """The node and npm executables; skip when missing (fail with CI=true)."""
    node, npm = find_binary("node"), find_binary("npm")
    if node and npm:
        return node, npm
    message = (
        "node/npm not found: install Node.js 20 with npm (e.g. `apt-get install nodejs npm` "
        "or https://nodejs.org) to run the npm provider interop tests"
    )
    if os.environ.get("CI", "").strip().lower() == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def _lock_digest(node: str) -> str:
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True)
    digest = hashlib.sha256(version.stdout.encode())
    for name in ("package.json", "package-lock.json"):
        digest.update((INTEROP / name).read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def node() -> str:
    """`npm ci` the pinned packages unless node_modules already matches the lockfile."""
    node, npm = require_node()
    # Several test runs may share this checkout: install under an exclusive lock.
    with (INTEROP / "package-lock.json").open("rb") as lockfile:
        fcntl.flock(lockfile, fcntl.LOCK_EX)
        wanted = _lock_digest(node)
        if not STAMP.exists() or STAMP.read_text() != wanted:
            result = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts", "--prefer-offline"],
                cwd=INTEROP,
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert result.returncode == 0, f"npm ci failed:\n{result.stdout}\n{result.stderr}"
            STAMP.write_text(wanted)
    return node


@dataclass
class Server:
    url: str
    database: Path
    tokens: dict[str, str]

    def grant(self, document_id: str, username: str, level: str) -> None:
        with contextlib.closing(sqlite3.connect(self.database, timeout=10)) as db, db:
            db.execute(
                "INSERT INTO document_permissions (document_id, user_id, permission_level) "
                "SELECT ?, id, ? FROM users WHERE username = ?",
                (document_id, level, username),
            )

    def logged_text(self, document_id: str) -> str:
        """The document as its durable log (snapshot plus later updates) says."""
        with contextlib.closing(sqlite3.connect(self.database, timeout=10)) as db:
            snapshot = db.execute(
                "SELECT state, last_update_id FROM document_snapshots WHERE document_id = ?",
                (document_id,),
            ).fetchone()
            state, after = snapshot if snapshot else (b"", 0)
            rows = db.execute(
                'SELECT id, "update" FROM document_updates WHERE document_id = ? AND id > ? '
                "ORDER BY id",
                (document_id, after),
            ).fetchall()
        doc: pycrdt.Doc = pycrdt.Doc()
        if state:
            doc.apply_update(state)
        assert not apply_rows(doc, [(row_id, bytes(update)) for row_id, update in rows])
        return str(doc.get("body", type=pycrdt.Text))


def _env(database: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RCMS_")}
    # This checkout's code, whatever the venv's editable install points at.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(
        RCMS_DATABASE_URL=f"sqlite+aiosqlite:///{database}",
        RCMS_ARGON2_MEMORY_KIB="8192",
        RCMS_ARGON2_TIME_COST="1",
        # Short, so that the test of a client ignoring the server's `sync` request is quick.
        RCMS_COLLAB_ACK_DEADLINE_SECONDS=str(ACK_DEADLINE_SECONDS),
    )
    return env


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite database holding one admin, `root`, made by the CLI."""
    database = tmp_path_factory.mktemp("interop") / "rcms.sqlite3"
    made = subprocess.run(
        [*CLI, "create-user", "root", "--email", "root@example.com", "--admin", "--password-stdin"],
        cwd=database.parent,
        env=_env(database),
        input=PASSWORD + "\n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert made.returncode == 0, made.stderr
    return database


@pytest.fixture(scope="module")
async def server(database: Path) -> AsyncIterator[Server]:
    """A real `realtime_cms serve` on that database, with 4 writers and a viewer."""
    port = free_port()
    log = database.parent / "server.log"
    with log.open("wb") as stderr:
        process = await asyncio.create_subprocess_exec(
            *CLI,
            "serve",
            "--port",
            str(port),
            cwd=database.parent,
            env=_env(database),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=stderr,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            await _wait_healthy(http, url, process, log)
            root = await _login(http, url, "root")
            tokens = {"root": root}
            for name in ("collab", "ywebsocket", "ysocketio", "python", "viewer"):
                payload = {"username": name, "email": f"{name}@example.com", "password": PASSWORD}
                async with http.post(
                    f"{url}/api/v1/users", json=payload, headers={"Authorization": f"Bearer {root}"}
                ) as response:
                    assert response.status == 201, await response.text()
                tokens[name] = await _login(http, url, name)
        yield Server(url, database, tokens)
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), 30)


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:]


async def _wait_healthy(
    http: aiohttp.ClientSession, url: str, process: asyncio.subprocess.Process, log: Path
) -> None:
    for _ in range(300):
        if process.returncode is not None:
            pytest.fail(f"server exited: {_tail(log)}")
        with contextlib.suppress(aiohttp.ClientConnectionError):
            async with http.get(f"{url}/healthz") as response:
                if response.status == 200:
                    return
        await asyncio.sleep(0.1)
    pytest.fail("server did not become healthy")


async def _login(http: aiohttp.ClientSession, url: str, login: str) -> str:
    payload = {"login": login, "password": PASSWORD}
    async with http.post(f"{url}/api/v1/auth/login", json=payload) as response:
        body = await response.json()
        assert response.status == 200, body
        return str(body["data"]["token"])


async def node_report(node: str, *args: str) -> tuple[int | None, dict[str, Any], str]:
    """Run coedit.mjs: its exit code, its JSON report (the last stdout line), its stderr."""
    process = await asyncio.create_subprocess_exec(
        node,
        "coedit.mjs",
        *args,
        cwd=INTEROP,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), NODE_TIMEOUT)
    except TimeoutError:
        process.kill()
        await process.wait()
        pytest.fail("coedit.mjs did not finish")
    lines = stdout.decode().strip().splitlines()
    assert lines, f"no report from coedit.mjs (exit {process.returncode}): {stderr.decode()}"
    return process.returncode, json.loads(lines[-1]), stderr.decode()[-3000:]


async def run_node(node: str, *args: str) -> dict[str, Any]:
    """Run coedit.mjs and return its report; it must succeed."""
    returncode, report, stderr = await node_report(node, *args)
    assert returncode == 0 and report["ok"], _summary(report, stderr)
    return report


def _summary(report: dict[str, Any], stderr: str) -> str:
    """A failed report in short: words per client and each distinct error with its count."""
    words = {name: len(text.split()) for name, text in report.get("texts", {}).items()}
    errors = report.get("errors", {})
    if isinstance(errors, dict):
        errors = {name: dict(Counter(codes)) for name, codes in errors.items()}
    return f"{report.get('error')}; words {words}; errors {errors}; stderr {stderr[-1000:]!r}"


async def edit_with_python(
    url: str, token: str, document_id: str, words: int, expect_total: int
) -> tuple[list[str], str]:
    """Insert words at random word boundaries, then wait until the text has every word."""
    rng = random.Random()
    async with CollabClient(url, token, timeout=10) as client:
        document = await client.join(document_id)
        text = document.doc.get("body", type=pycrdt.Text)
        inserted = []
        for i in range(words):
            await asyncio.sleep(rng.random() * 0.02)
            current = str(text)
            boundaries = [0] + [at + 1 for at, char in enumerate(current) if char == " "]
            word = f"python{i}x{rng.randrange(10**6)}"
            text.insert(rng.choice(boundaries), word + " ")
            inserted.append(word)
        await document.flush()
        assert not document.errors, document.errors
        deadline = asyncio.get_running_loop().time() + NODE_TIMEOUT
        while len(document.text().split()) < expect_total:
            assert asyncio.get_running_loop().time() < deadline, "python never saw every word"
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # nothing more may arrive: every client is done
        return inserted, document.text()


async def fresh_text(server: Server, document_id: str) -> str:
    async with CollabClient(server.url, server.tokens["root"], timeout=10) as client:
        return (await client.join(document_id)).text()


@pytest.fixture
def document_id() -> str:
    return f"notes:interop-{secrets.token_hex(4)}"


async def test_npm_providers_and_python_converge_on_the_same_text(
    node: str, server: Server, document_id: str
) -> None:
    for name in (*NODE_CLIENTS, "python"):
        server.grant(document_id, name, "write")
    expect_total = WORDS * (len(NODE_CLIENTS) + 1)
    node_args = [
        "--url",
        server.url,
        "--document",
        document_id,
        "--collab-token",
        server.tokens["collab"],
        "--ws-token",
        server.tokens["ywebsocket"],
        "--sio-token",
        server.tokens["ysocketio"],
        "--clients",
        ",".join(NODE_CLIENTS),
        "--words",
        str(WORDS),
        "--expect-total",
        str(expect_total),
        "--timeout-ms",
        str(int(NODE_TIMEOUT * 1000) - 5000),
    ]
    report, (python_words, python_text) = await asyncio.gather(
        run_node(node, *node_args),
        edit_with_python(server.url, server.tokens["python"], document_id, WORDS, expect_total),
    )
    texts = {**report["texts"], "python": python_text}
    assert set(texts) == {*NODE_CLIENTS, "python"}
    assert len(set(texts.values())) == 1, texts
    final = python_text
    everyone = [word for words in report["inserted"].values() for word in words] + python_words
    assert len(set(everyone)) == expect_total
    assert sorted(final.split()) == sorted(everyone)
    assert all(not errors for errors in report["errors"].values()), report["errors"]
    assert await fresh_text(server, document_id) == final
    assert server.logged_text(document_id) == final
    # Awareness crosses transports: every Node client saw every other's state (the JS
    # provider's included), with no refusal on the way (checked above).
    assert all(seen == sorted(NODE_CLIENTS) for seen in report["awareness"].values()), report[
        "awareness"
    ]


async def test_the_js_provider_on_a_read_seat_is_refused_and_changes_nothing(
    node: str, server: Server, document_id: str
) -> None:
    server.grant(document_id, "python", "write")
    server.grant(document_id, "viewer", "read")
    async with CollabClient(server.url, server.tokens["python"], timeout=10) as writer:
        document = await writer.join(document_id)
        document.doc.get("body", type=pycrdt.Text).insert(0, "original text")
        await document.flush()
        report = await run_node(
            node,
            "--mode",
            "read-only",
            "--url",
            server.url,
            "--document",
            document_id,
            "--token",
            server.tokens["viewer"],
        )
        assert report["role"] == "read"
        assert report["received"] == "original text"
        assert report["errors"] == ["read_only"]
        await asyncio.sleep(0.2)
        assert document.text() == "original text"
    assert await fresh_text(server, document_id) == "original text"
    assert server.logged_text(document_id) == "original text"


@pytest.mark.parametrize("answer_sync", ["on", "off"])
async def test_the_js_provider_saves_changes_that_depend_on_one_the_server_lacks(
    node: str, server: Server, document_id: str, answer_sync: str
) -> None:
    """An update whose dependency never reached the server is held, not acknowledged; the
    provider answers the server's `sync` request (or, ignoring it, resyncs after the ack
    deadline's `missing_dependencies`) and every change ends up saved."""
    server.grant(document_id, "collab", "write")
    report = await run_node(
        node,
        "--mode",
        "gap",
        "--answer-sync",
        answer_sync,
        "--url",
        server.url,
        "--document",
        document_id,
        "--token",
        server.tokens["collab"],
    )
    expected = [report["hidden"], *report["words"]]
    assert report["text"].split() == expected
    if answer_sync == "on":
        assert report["errors"] == [] and not report["saw_not_saved"]
    else:
        assert "missing_dependencies" in report["errors"] and report["saw_not_saved"]
    assert (await fresh_text(server, document_id)).split() == expected
    assert server.logged_text(document_id).split() == expected


async def test_a_user_without_a_grant_cannot_join_through_the_js_provider(
    node: str, server: Server, document_id: str
) -> None:
    returncode, report, _ = await node_report(
        node,
        "--mode",
        "read-only",
        "--url",
        server.url,
        "--document",
        document_id,
        "--token",
        server.tokens["viewer"],
    )
    assert returncode == 1 and report["error"] == "join refused"
    assert report["errors"] == {"collab": ["no_access"]}
    with pytest.raises(CollabError, match="no_access"):
        async with CollabClient(server.url, server.tokens["viewer"], timeout=10) as client:
            await client.join(document_id)
