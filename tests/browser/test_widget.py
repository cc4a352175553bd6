"""The notification widget in Chromium: live pushes, read state across tabs, offline catch-up."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest
from playwright.async_api import Browser, BrowserContext, Locator, Page, expect

from tests.browser.support import Rest, Server

DEMO = "/static/notifications-demo.html"
PASSWORD = "widget password, long enough"
_users = (f"bell{n}" for n in itertools.count(1))


@dataclass
class Reader:
    """A user with a signed-in browser context; pages are tabs of the demo page."""

    user_id: int
    context: BrowserContext

    async def tab(self, server: Server) -> Page:
        page = await self.context.new_page()
        await page.goto(server.base + DEMO)
        await expect(page.locator("#rcms-bell")).to_have_attribute("data-state", "connected")
        return page


OpenReader = Callable[[], Awaitable[Reader]]


@pytest.fixture
async def reader(browser: Browser, server: Server, admin: Rest) -> AsyncIterator[OpenReader]:
    """A new user (no notifications yet), signed in through the REST login in a new context."""
    contexts: list[BrowserContext] = []

    async def open_reader() -> Reader:
        username = next(_users)
        user = await admin.call(
            "POST",
            "/api/v1/users",
            {
                "username": username,
                "email": f"{username}@example.com",
                "password": PASSWORD,
                "roles": ["viewer"],
            },
            status=201,
        )
        context = await browser.new_context()
        contexts.append(context)
        response = await context.request.post(
            f"{server.base}/api/v1/auth/login", data={"login": username, "password": PASSWORD}
        )
        assert response.ok, await response.text()
        return Reader(user["id"], context)

    yield open_reader
    for context in contexts:
        await context.close()


async def send(admin: Rest, user_id: int, title: str) -> None:
    body = {"user_ids": [user_id], "title": title, "message": f"The message of {title}."}
    sent = await admin.call("POST", "/api/v1/notifications/send", body)
    assert sent["stored"] == 1, sent


def bell(page: Page) -> Locator:
    return page.locator("#rcms-bell")


def item(page: Page, title: str) -> Locator:
    return bell(page).locator(".item", has_text=title)


async def open_panel(page: Page) -> None:
    button = bell(page).locator("button.button")
    if await button.get_attribute("aria-expanded") != "true":
        await button.click()
    await expect(button).to_have_attribute("aria-expanded", "true")


async def test_a_notification_sent_through_rest_appears_in_an_open_widget(
    server: Server, admin: Rest, reader: OpenReader
) -> None:
    person = await reader()
    page = await person.tab(server)
    await expect(bell(page)).to_have_attribute("data-unread", "0")
    await send(admin, person.user_id, "Deploy finished")
    await expect(bell(page)).to_have_attribute("data-unread", "1")
    await expect(bell(page).locator(".badge")).to_have_text("1")
    await open_panel(page)
    await expect(item(page, "Deploy finished")).to_have_attribute("data-read", "false")
    await expect(item(page, "Deploy finished")).to_contain_text("The message of Deploy finished.")


async def test_marking_read_in_one_tab_clears_it_in_another(
    server: Server, admin: Rest, reader: OpenReader
) -> None:
    person = await reader()
    first, second = await person.tab(server), await person.tab(server)
    await send(admin, person.user_id, "Review requested")
    await send(admin, person.user_id, "Comment added")
    for page in (first, second):
        await expect(bell(page)).to_have_attribute("data-unread", "2")
    await open_panel(first)
    await item(first, "Review requested").get_by_role("button").click()
    await expect(item(second, "Review requested")).to_have_attribute("data-read", "true")
    await expect(bell(second)).to_have_attribute("data-unread", "1")
    await open_panel(second)
    await bell(second).get_by_role("button", name="Mark all as read").click()
    await expect(item(first, "Comment added")).to_have_attribute("data-read", "true")
    await expect(bell(first)).to_have_attribute("data-unread", "0")
    await expect(bell(first).locator(".badge")).to_be_hidden()


async def test_a_tab_that_was_offline_gets_every_notification_once_after_reconnecting(
    server: Server, admin: Rest, reader: OpenReader
) -> None:
    person = await reader()
    page = await person.tab(server)
    await send(admin, person.user_id, "Before the outage")
    await expect(bell(page)).to_have_attribute("data-unread", "1")
    await person.context.set_offline(True)
    await expect(bell(page)).to_have_attribute("data-state", "offline")
    missed = [f"While offline {n}" for n in range(1, 6)]
    for title in missed:
        await send(admin, person.user_id, title)
    await person.context.set_offline(False)
    await expect(bell(page)).to_have_attribute("data-state", "connected")
    await expect(bell(page)).to_have_attribute("data-unread", "6")
    await open_panel(page)
    items = bell(page).locator(".item")
    await expect(items).to_have_count(6)
    for title in missed:
        await expect(item(page, title)).to_have_count(1)
    ids = [await entry.get_attribute("data-id") for entry in await items.all()]
    assert len(set(ids)) == 6
    await send(admin, person.user_id, "After the outage")
    await expect(items).to_have_count(7)


async def test_the_bell_is_a_keyboard_operable_disclosure(
    server: Server, admin: Rest, reader: OpenReader
) -> None:
    person = await reader()
    page = await person.tab(server)
    for title in ("First", "Second"):
        await send(admin, person.user_id, title)
    await expect(bell(page)).to_have_attribute("data-unread", "2")
    button = bell(page).get_by_role("button", name="Notifications, 2 unread")
    await button.focus()
    await page.keyboard.press("Enter")
    await expect(button).to_have_attribute("aria-expanded", "true")
    await expect(item(page, "Second")).to_be_focused()
    await expect(bell(page).get_by_role("list").get_by_role("listitem")).to_have_count(2)
    await page.keyboard.press("ArrowDown")
    await expect(item(page, "First")).to_be_focused()
    await page.keyboard.press("Escape")
    await expect(button).to_have_attribute("aria-expanded", "false")
    await expect(button).to_be_focused()
