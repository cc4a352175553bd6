"""The `realtime-cms` command end to end, as a newcomer runs it: demo, serve, log in, administer."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support.servers import free_port

CLI = [sys.executable, "-m", "handlers"]


def _env(workdir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RCMS_")}
    env.update({"RCMS_ARGON2_MEMORY_KIB": "8192", "RCMS_ARGON2_TIME_COST": "1", **extra})
    # Run this checkout's code whatever the virtualenv's editable install points at.
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    return env


def run_cli(
    workdir: Path, *args: str, stdin: str | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args],
        cwd=workdir,
        env=_env(workdir, **env),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cli")


@pytest.fixture(scope="module")
def demo_output(workdir: Path) -> str:
    result = run_cli(workdir, "demo")
    assert result.returncode == 0, result.stderr
    return result.stdout


def demo_logins(output: str) -> dict[str, str]:
    return dict(re.findall(r"username (\S+)\s+password (\S+)", output))


@pytest.fixture(scope="module")
async def server(workdir: Path, demo_output: str) -> AsyncIterator[str]:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        *CLI,
        "serve",
        "--port",
        str(port),
        cwd=workdir,
        env=_env(workdir),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(300):
                if process.returncode is not None:
                    stderr = await process.stderr.read() if process.stderr else b""
                    pytest.fail(f"server exited: {stderr.decode()[-2000:]}")
                try:
                    async with http.get(f"{base}/healthz") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.1)
        yield base
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), 30)


async def _json(
    http: aiohttp.ClientSession, method: str, url: str, token: str | None = None, **kw: Any
) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with http.request(method, url, headers=headers, **kw) as response:
        body = await response.json(content_type=None) if response.status != 204 else None
        return response.status, body


def test_demo_prints_an_admin_and_an_editor_login(demo_output: str) -> None:
    assert set(demo_logins(demo_output)) == {"admin", "editor"}
    assert "http://127.0.0.1:8080/" in demo_output


def test_demo_loads_once_and_reprints_the_saved_logins(workdir: Path, demo_output: str) -> None:
    again = run_cli(workdir, "demo")
    assert again.returncode == 0, again.stderr
    assert "already loaded" in again.stdout
    assert demo_logins(again.stdout) == demo_logins(demo_output)


async def test_a_newcomer_logs_in_creates_a_user_grants_editor_and_sees_the_audit_log(
    server: str, demo_output: str
) -> None:
    password = demo_logins(demo_output)["admin"]
    async with aiohttp.ClientSession() as http:
        status, health = await _json(http, "GET", f"{server}/healthz")
        assert status == 200 and health["checks"]["database"] == "ok"
        status, login = await _json(
            http,
            "POST",
            f"{server}/api/v1/auth/login",
            json={"login": "admin", "password": password},
        )
        assert status == 200, login
        token = login["data"]["token"]
        status, created = await _json(
            http,
            "POST",
            f"{server}/api/v1/users",
            token,
            json={
                "username": "colleague",
                "email": "colleague@example.com",
                "password": "a long enough password",
            },
        )
        assert status == 201, created
        user_id = created["data"]["id"]
        status, roles = await _json(
            http, "GET", f"{server}/api/v1/roles?filter[name]=editor", token
        )
        editor_id = roles["data"][0]["id"]
        status, _ = await _json(
            http, "PUT", f"{server}/api/v1/users/{user_id}/roles/{editor_id}", token
        )
        assert status == 204
        status, audit = await _json(
            http,
            "GET",
            f"{server}/api/v1/audit-log?filter[entity_type]=user&filter[entity_id]={user_id}",
            token,
        )
        assert status == 200
        actions = {entry["action_type"] for entry in audit["data"]}
        assert {"user.create", "role.grant"} <= actions
        status, colleague = await _json(
            http,
            "POST",
            f"{server}/api/v1/auth/login",
            json={"login": "colleague", "password": "a long enough password"},
        )
        assert status == 200, colleague
        status, me = await _json(
            http, "GET", f"{server}/api/v1/auth/me", colleague["data"]["token"]
        )
        assert status == 200 and me["data"]["roles"] == ["editor"]


def test_create_user_reads_the_password_from_stdin_and_refuses_duplicates(
    workdir: Path, demo_output: str
) -> None:
    made = run_cli(
        workdir,
        "create-user",
        "ops",
        "--email",
        "ops@example.com",
        "--admin",
        "--password-stdin",
        stdin="another long password\n",
    )
    assert made.returncode == 0, made.stderr
    again = run_cli(
        workdir,
        "create-user",
        "ops",
        "--email",
        "ops2@example.com",
        "--password-stdin",
        stdin="another long password\n",
    )
    assert again.returncode != 0
    assert "already in use" in again.stderr


def test_serve_refuses_the_default_secret_outside_embedded_mode(workdir: Path) -> None:
    result = run_cli(workdir, "serve", RCMS_REDIS_URL="redis://127.0.0.1:1/0")
    assert result.returncode != 0
    assert "RCMS_SECRET_KEY" in result.stderr


def test_migrate_round_trip_from_the_command_line(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/m.sqlite3"
    assert run_cli(tmp_path, "migrate", RCMS_DATABASE_URL=url).returncode == 0
    assert run_cli(tmp_path, "migrate", "--downgrade", RCMS_DATABASE_URL=url).returncode == 0
    assert run_cli(tmp_path, "migrate", RCMS_DATABASE_URL=url).returncode == 0
