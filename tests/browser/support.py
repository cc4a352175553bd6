"""A real `realtime-cms serve` process with demo data, and signed-in browser pages on it.

One server and one Chromium per test module (CI has two cores). Chromium is Debian's
(`/usr/bin/chromium`, from `.ci/run`): missing, the module is skipped with an install hint,
and fails when CI=true.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from playwright.async_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    ViewportSize,
    expect,
)

from tests.support.live import wait_healthy
from tests.support.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "handlers"]
CHROMIUM = os.environ.get("RCMS_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless=new",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
# Generous: two browsers, a server and its group commits share two CI cores.
WAIT_MS = 30_000
expect.set_options(timeout=WAIT_MS)
# Every page keeps the Content-Security-Policy violations it saw (the console says too, but
# this says which directive refused what).
RECORD_CSP_VIOLATIONS = """
window.cspViolations = []
document.addEventListener('securitypolicyviolation', (event) => {
  window.cspViolations.push({ directive: event.effectiveDirective, blocked: event.blockedURI })
})
"""


def require_chromium() -> str:
    """The Chromium executable; skip the module when missing (fail with CI=true)."""
    if Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    message = (
        f"{CHROMIUM} not found: `apt-get install chromium` (or set RCMS_CHROMIUM) to run the "
        "browser tests; `playwright install` is not used"
    )
    if os.environ.get("CI", "").strip().lower() == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message, allow_module_level=True)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RCMS_")}
    env.update({"RCMS_ARGON2_MEMORY_KIB": "8192", "RCMS_ARGON2_TIME_COST": "1", **extra})
    env["RCMS_LOGIN_IP_RATE_LIMIT"] = "10000"
    env["RCMS_LOGIN_RATE_LIMIT"] = "1000"
    env["PYTHONPATH"] = str(ROOT)
    return env


@dataclass
class Server:
    """`realtime-cms serve` on a loopback port, in a work directory holding its SQLite file."""

    workdir: Path
    port: int = field(default_factory=free_port)
    logins: dict[str, str] = field(default_factory=dict)
    process: asyncio.subprocess.Process | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def database(self) -> Path:
        return self.workdir / "realtime_cms.sqlite3"

    def load_demo(self) -> None:
        result = subprocess.run(
            [*CLI, "demo"],
            cwd=self.workdir,
            env=_env(),
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert result.returncode == 0, result.stderr
        self.logins = dict(re.findall(r"username (\S+)\s+password (\S+)", result.stdout))

    async def start(self) -> None:
        log = (self.workdir / "server.log").open("ab")
        self.process = await asyncio.create_subprocess_exec(
            *CLI,
            "serve",
            "--port",
            str(self.port),
            cwd=self.workdir,
            env=_env(RCMS_ALLOWED_ORIGINS=self.base),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=log,
        )
        log.close()
        process = self.process
        await wait_healthy(
            self.base,
            alive=lambda: process.returncode is None,
            why_not=lambda: self.log()[-3000:],
            within=60,
        )

    async def stop(self) -> None:
        if self.process is None or self.process.returncode is not None:
            return
        self.process.terminate()
        await asyncio.wait_for(self.process.wait(), 60)

    def log(self) -> str:
        return (self.workdir / "server.log").read_text(errors="replace")


class Rest:
    """A bearer-token REST client for setting up and checking what the browsers did."""

    def __init__(self, http: aiohttp.ClientSession, base: str, token: str) -> None:
        self.http, self.base, self.token = http, base, token

    @classmethod
    async def login(cls, http: aiohttp.ClientSession, base: str, user: str, password: str) -> Rest:
        async with http.post(
            f"{base}/api/v1/auth/login", json={"login": user, "password": password}
        ) as response:
            assert response.status == 200, await response.text()
            return cls(http, base, (await response.json())["data"]["token"])

    async def call(self, method: str, path: str, body: Any = None, status: int = 200) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"}
        async with self.http.request(
            method, self.base + path, json=body, headers=headers
        ) as response:
            data = await response.json(content_type=None) if response.status != 204 else None
            assert response.status == status, (method, path, response.status, data)
            return data["data"] if isinstance(data, dict) and "data" in data else data


async def eventually(check: Callable[[], Awaitable[Any]], within: float = WAIT_MS / 1000) -> Any:
    """Poll `check()` until it answers something truthy (server-side state catching up);
    a generous bound, never a timing assertion."""
    deadline = asyncio.get_running_loop().time() + within
    while not (answer := await check()):
        assert asyncio.get_running_loop().time() < deadline, f"still {answer!r} after {within} s"
        await asyncio.sleep(0.2)
    return answer


@dataclass
class Person:
    """One signed-in browser context with the app open, and the errors its console logged."""

    name: str
    context: BrowserContext
    page: Page
    errors: list[str]
    sockets: list[str]  # the URL of every WebSocket the page opened

    async def close(self) -> None:
        await self.context.close()

    async def body(self) -> str:
        """The live document's body as this page's Y.Doc holds it."""
        text: str = await self.page.evaluate("() => window.rcms.session.body.toString()")
        return text

    async def wait_for_body(self, *parts: str, absent: tuple[str, ...] = ()) -> str:
        """Wait until this page's body holds every one of `parts` and none of `absent`."""
        await self.page.wait_for_function(
            """([parts, absent]) => {
                const text = window.rcms?.session.body.toString()
                return text !== undefined && parts.every((p) => text.includes(p))
                    && !absent.some((p) => text.includes(p))
            }""",
            arg=[list(parts), list(absent)],
            timeout=WAIT_MS,
        )
        return await self.body()

    async def type_at_end(self, text: str, delay: float = 15) -> None:
        await self.type_at("Control+End", text, delay)

    async def type_at_line_end(self, line: int, text: str, delay: float = 15) -> None:
        """Type at the end of body line `line` (1-based). Two people typing at one position
        at the same time may interleave their characters, as any CRDT may: tests that look
        for each person's phrase intact give each person a place of their own."""
        await self.type_at("Control+Home", "", 0)
        for _ in range(line - 1):
            await self.page.keyboard.press("ArrowDown")
        await self.type_at("End", text, delay)

    async def type_at(self, key: str, text: str, delay: float) -> None:
        """Focus the editor, press `key` to place the caret, then type `text`."""
        editor = self.page.locator(".cm-content")
        if not await editor.evaluate("(el) => el.contains(document.activeElement)"):
            await editor.click()
        await self.page.keyboard.press(key)
        await self.page.keyboard.type(text, delay=delay)

    async def saved(self) -> None:
        """Wait until every local change is acknowledged as durable."""
        await expect(self.page.locator(".saved")).to_have_attribute("data-state", "saved")

    async def csp_violations(self) -> list[dict[str, str]]:
        """What the page's Content-Security-Policy refused so far: `{directive, blocked}`."""
        found: list[dict[str, str]] = await self.page.evaluate("() => window.cspViolations")
        return found


async def open_editor(
    browser: Browser,
    server: Server,
    user: str,
    password: str,
    item_id: int,
    *,
    viewport: ViewportSize | None = None,
    ignore_https_errors: bool = False,
) -> Person:
    """A new browser context signed in as `user` (cookie from the REST login) on the editor."""
    context = await browser.new_context(
        viewport=viewport or {"width": 1280, "height": 860},
        ignore_https_errors=ignore_https_errors,
    )
    await context.add_init_script(RECORD_CSP_VIOLATIONS)
    page = await context.new_page()
    errors: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            errors.append(message.text)

    page.on("console", on_console)
    page.on("pageerror", lambda error: errors.append(str(error)))
    sockets: list[str] = []
    page.on("websocket", lambda socket: sockets.append(socket.url))
    response = await context.request.post(
        f"{server.base}/api/v1/auth/login", data={"login": user, "password": password}
    )
    assert response.ok, await response.text()
    await page.goto(f"{server.base}/#/items/{item_id}")
    await expect(page.locator(".connection")).to_have_attribute("data-state", "connected")
    return Person(user, context, page, errors, sockets)
