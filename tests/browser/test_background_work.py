"""The "Background work" page in Chromium: a job failing shows up live, Retry queues it again;
a silent worker's alert shows and is suppressed from the page; a batch's progress shows.

The server loads the `browser.gate` job type (tests/browser/test_background_work_jobs.py):
its jobs fail while their gate file is missing, so a test decides when a retry succeeds.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, BrowserContext, ConsoleMessage, Page, expect

from realtime_cms.db import SessionFactory, create_engine, session_factory, transaction
from realtime_cms.jobs import alerts, processes
from realtime_cms.jobs.queue import enqueue
from realtime_cms.models.base import utcnow
from tests.browser.support import RECORD_CSP_VIOLATIONS, Rest, Server, eventually, require_chromium

PLUGIN = "tests.browser.test_background_work_jobs"


@pytest.fixture(scope="module")
async def server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Server]:
    """The demo installation, with the gate job type loaded (the server reads `.env`)."""
    require_chromium()
    workdir = tmp_path_factory.mktemp("background")
    (workdir / ".env").write_text(f"RCMS_JOB_PLUGINS={PLUGIN}\n")
    served = Server(workdir)
    served.load_demo()
    await served.start()
    try:
        yield served
    finally:
        await served.stop()


async def signed_in_page(
    browser: Browser, server: Server, user: str, password: str
) -> tuple[BrowserContext, Page, list[str]]:
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    await context.add_init_script(RECORD_CSP_VIOLATIONS)
    page = await context.new_page()
    errors: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            errors.append(message.text)

    page.on("console", on_console)
    page.on("pageerror", lambda error: errors.append(str(error)))
    response = await context.request.post(
        f"{server.base}/api/v1/auth/login", data={"login": user, "password": password}
    )
    assert response.ok, await response.text()
    return context, page, errors


async def job(admin: Rest, job_id: str) -> dict[str, Any]:
    found: dict[str, Any] = await admin.call("GET", f"/api/v1/jobs/{job_id}")
    return found


async def test_a_failed_job_appears_live_and_retry_queues_it_again(
    browser: Browser, server: Server, admin: Rest, tmp_path: Path
) -> None:
    context, page, errors = await signed_in_page(browser, server, "admin", server.logins["admin"])
    try:
        await page.goto(f"{server.base}/#/items")
        await page.get_by_role("link", name="Background work").click()
        await expect(page.get_by_role("heading", name="Background work")).to_be_visible()
        await expect(page.locator(".connection")).to_have_attribute("data-state", "connected")
        await expect(page.locator("#workers tr[data-alive=true]")).not_to_have_count(0)

        gate = tmp_path / "gate"
        body = {"type": "browser.gate", "payload": {"path": str(gate)}}
        queued = await admin.call("POST", "/api/v1/jobs", body, status=201)
        row = page.locator(f"#jobs-failed li.job[data-id='{queued['id']}']")
        # Pushed: the page was not reloaded.
        await expect(row).to_be_visible()
        await expect(row.locator(".job-error")).to_contain_text("is closed")
        await expect(page.locator("#queues tr[data-queue=browser] td.failed")).not_to_have_text("0")
        failed = await job(admin, queued["id"])
        assert (failed["status"], failed["attempts"]) == ("failed", 1)

        gate.write_text("open")
        await row.get_by_role("button", name="Retry").click()
        await expect(row).to_have_count(0)
        done = await eventually(lambda: _completed(admin, queued["id"]), within=30)
        assert done["attempts"] == 1 and done["output"] == "through the gate"
        assert done["last_error"] is None
        assert await page.evaluate("() => window.cspViolations") == []
    finally:
        await context.close()
    assert errors == []


async def _completed(admin: Rest, job_id: str) -> dict[str, Any] | None:
    found = await job(admin, job_id)
    return found if found["status"] == "completed" else None


async def test_retry_on_a_job_that_fails_again_shows_it_failed_again(
    browser: Browser, server: Server, admin: Rest, tmp_path: Path
) -> None:
    context, page, errors = await signed_in_page(browser, server, "admin", server.logins["admin"])
    try:
        body = {"type": "browser.gate", "payload": {"path": str(tmp_path / "never")}}
        queued = await admin.call("POST", "/api/v1/jobs", body, status=201)
        await eventually(lambda: _failed(admin, queued["id"]))
        await page.goto(f"{server.base}/#/background")
        row = page.locator(f"#jobs-failed li.job[data-id='{queued['id']}']")
        await expect(row).to_be_visible()
        await row.get_by_role("button", name="Retry").click()
        # Queued again (the retry is audited in the same commit), run again, failed again.
        await eventually(lambda: _retried(admin, queued["id"]))
        await eventually(lambda: _failed(admin, queued["id"]))
        await expect(row).to_be_visible()
        await expect(row.get_by_role("button", name="Retry")).to_be_enabled()
    finally:
        await context.close()
    assert errors == []


async def _failed(admin: Rest, job_id: str) -> bool:
    return (await job(admin, job_id))["status"] == "failed"


async def _retried(admin: Rest, job_id: str) -> bool:
    entries = await admin.call("GET", "/api/v1/audit-log?filter[action_type]=job.retry&limit=200")
    return any(job_id in (entry["details"] or "") for entry in entries)


async def test_a_viewer_gets_no_link_and_the_page_says_what_it_needs(
    browser: Browser, server: Server, viewer: str
) -> None:
    context, page, errors = await signed_in_page(browser, server, "viewer", viewer)
    try:
        await page.goto(f"{server.base}/#/items")
        await expect(page.get_by_role("heading", name="Content")).to_be_visible()
        await expect(page.get_by_role("link", name="Background work")).to_have_count(0)
        await page.goto(f"{server.base}/#/background")
        await expect(page.get_by_role("alert")).to_contain_text("jobs.view")
    finally:
        await context.close()
    assert errors == []


@asynccontextmanager
async def server_db(server: Server) -> AsyncIterator[SessionFactory]:
    """Sessions on the served installation's SQLite file (as another process would write)."""
    engine = create_engine(f"sqlite+aiosqlite:///{server.database}")
    try:
        yield session_factory(engine)
    finally:
        await engine.dispose()


async def silent_process_alerted(server: Server) -> str:
    """A worker process silent for an hour, and a run of the monitor the server's worker
    takes at once (not waiting for its 30 s period): the alert is raised by the server."""
    async with server_db(server) as sessions:
        process_id = await processes.register(
            sessions,
            kind="worker",
            concurrency=1,
            queues=["default"],
            now=utcnow() - timedelta(hours=1),
        )
        async with transaction(sessions) as db:
            await enqueue(db, alerts.MONITOR, {})
    return process_id


async def alert_of(admin: Rest, process_id: str) -> dict[str, Any] | None:
    found = await admin.call("GET", f"/api/v1/alerts?filter[worker_id]={process_id}")
    return found[0] if found else None


async def test_an_open_alert_shows_and_suppressing_it_from_the_page_updates_it(
    browser: Browser, server: Server, admin: Rest
) -> None:
    context, page, errors = await signed_in_page(browser, server, "admin", server.logins["admin"])
    try:
        await page.goto(f"{server.base}/#/background")
        await expect(page.locator(".connection")).to_have_attribute("data-state", "connected")
        process_id = await silent_process_alerted(server)
        row = page.locator(f"#alerts tr[data-worker='{process_id}']")
        # Shown without a reload of the page.
        await expect(row).to_be_visible()
        await expect(row.locator(".level")).to_have_text("level 1")
        await expect(row).to_have_attribute("data-suppressed", "false")

        await row.get_by_role("button", name="Suppress").click()
        await expect(row).to_have_attribute("data-suppressed", "true")
        await expect(row.locator(".state")).to_have_text("suppressed")
        stored = await alert_of(admin, process_id)
        assert stored is not None and stored["is_suppressed"] is True

        await row.get_by_role("button", name="Unsuppress").click()
        await expect(row).to_have_attribute("data-suppressed", "false")
        stored = await alert_of(admin, process_id)
        assert stored is not None and stored["is_suppressed"] is False
        entries = await admin.call(
            "GET", "/api/v1/audit-log?filter[entity_type]=heartbeat_alert&limit=200"
        )
        actions = [e["action_type"] for e in entries if e["entity_id"] == stored["id"]]
        assert sorted(actions) == ["heartbeat_alert.suppress", "heartbeat_alert.unsuppress"]
    finally:
        await context.close()
    assert errors == []


async def test_a_batch_shows_its_progress_live(
    browser: Browser, server: Server, admin: Rest, tmp_path: Path
) -> None:
    context, page, errors = await signed_in_page(browser, server, "admin", server.logins["admin"])
    try:
        await page.goto(f"{server.base}/#/background")
        await expect(page.locator(".connection")).to_have_attribute("data-state", "connected")
        gate = tmp_path / "open"
        gate.write_text("open")
        items = [{"path": str(gate)}, {"path": str(tmp_path / "closed")}]
        batch = await admin.call(
            "POST", "/api/v1/batches", {"type": "browser.gate", "items": items}, status=201
        )
        row = page.locator(f"#batches li.batch[data-id='{batch['id']}']")
        await expect(row).to_be_visible()
        # One item through its gate, one failed at its closed one: the batch has ended.
        await expect(row.locator(".counts")).to_have_text("1 done, 1 failed, 0 pending of 2")
        await expect(row.locator("progress")).to_have_attribute("value", "2")
        await expect(row).to_have_attribute("data-status", "failed")
    finally:
        await context.close()
    assert errors == []


async def test_without_a_batches_api_the_section_stays_hidden(
    browser: Browser, server: Server
) -> None:
    context, page, errors = await signed_in_page(browser, server, "admin", server.logins["admin"])
    missing = {"status": 404, "code": "not_found", "title": "Not found", "detail": "none"}
    try:
        # An older server: the batches API answers 404.
        await page.route(
            re.compile(r"/api/v1/batches\?"),
            lambda route: route.fulfill(
                status=404, content_type="application/problem+json", body=json.dumps(missing)
            ),
        )
        await page.goto(f"{server.base}/#/background")
        await expect(page.locator(".connection")).to_have_attribute("data-state", "connected")
        await expect(page.locator("#workers tr[data-alive=true]")).not_to_have_count(0)
        await expect(page.locator("#jobs-queued")).to_be_visible()
        await expect(page.get_by_role("heading", name="Batches")).to_be_hidden()
        await expect(page.get_by_role("alert")).to_be_hidden()
    finally:
        await context.close()
    # The refused request is all the console reports (Chromium logs every failed load).
    assert errors and all(e.startswith("Failed to load resource") and "404" in e for e in errors)
