"""The editor in Chromium saves edits the server answered `too_many_pending`, by itself.

The server holds at most one update per sender waiting for a change it lacks
(`RCMS_COLLAB_MAX_PENDING=1`, from the `.env` file of its work directory). The page's
document gets a change the server never received, and then several edits after it, each
its own update, all sent before any answer comes back: the server holds the first, refuses
them all as over budget, and the shipped bundle must resync until they are saved. The saved
badge goes "Saving…", "Not saved yet", then "All changes saved", and by then the log holds
every character. (tests/browser/test_editor.py does `store_unavailable`, a locked database;
tests/interop/test_provider_resync.py every code, in Node.)
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser

from realtime_cms.client import CollabClient
from realtime_cms.collab.store import UpdateStore
from realtime_cms.db import create_engine, session_factory
from tests.browser.support import Person, Rest, Server, open_editor, require_chromium
from tests.browser.test_editor import close_all, new_item
from tests.collab.test_client_resync import logged_text

# Every value the saved badge takes, in order, from the moment this runs.
RECORD_BADGE = """() => {
    const badge = document.querySelector('.saved')
    window.badgeStates = [badge.dataset.state]
    const note = (state) => {
        if (window.badgeStates.at(-1) !== state) window.badgeStates.push(state)
    }
    new MutationObserver((records) => {
        for (const record of records) note(record.oldValue)
        note(badge.dataset.state)
    }).observe(badge, { attributeFilter: ['data-state'], attributeOldValue: true })
}"""
# A change the provider holds but never sent (the provider as origin, as if the server had
# sent it), then each character of `typed` as its own transaction, without yielding.
WITHHOLD_THEN_TYPE = """([withheld, typed]) => {
    const { doc, body, provider } = window.rcms.session
    doc.transact(() => body.insert(body.length, withheld), provider)
    for (const char of typed) body.insert(body.length, char)
}"""
SAVED_AGAIN = (
    """() => window.badgeStates.includes('not_saved') && window.badgeStates.at(-1) === 'saved'"""
)


@pytest.fixture(scope="module")
async def server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Server]:
    require_chromium()
    served = Server(tmp_path_factory.mktemp("browser-resync"))
    served.load_demo()
    (served.workdir / ".env").write_text("RCMS_COLLAB_MAX_PENDING=1\n")
    await served.start()
    try:
        yield served
    finally:
        await served.stop()


async def logged_body(server: Server, document_id: str) -> str:
    engine = create_engine(f"sqlite+aiosqlite:///{server.database}")
    try:
        async with UpdateStore(session_factory(engine)) as store:
            return await logged_text(store, document_id)
    finally:
        await engine.dispose()


async def badge_states(person: Person) -> list[str]:
    states: list[str] = await person.page.evaluate("() => window.badgeStates")
    return states


async def test_edits_over_the_pending_budget_show_not_saved_then_are_saved(
    server: Server, browser: Browser, admin: Rest
) -> None:
    item_id = await new_item(admin, "Held edits", "Line one.\n")
    document_id = f"content:{item_id}"
    ed = await open_editor(browser, server, "editor", server.logins["editor"], item_id)
    await ed.saved()
    await ed.page.evaluate(RECORD_BADGE)
    await ed.page.evaluate(WITHHOLD_THEN_TYPE, ["withheld ", "held"])
    await ed.page.wait_for_function(SAVED_AGAIN)
    logged = await logged_body(server, document_id)
    states = await badge_states(ed)
    assert states[0] == "saved" and states[-1] == "saved", states
    assert "saving" in states and states.index("saving") < states.index("not_saved"), states
    assert logged == "Line one.\nwithheld held" == await ed.body()
    async with CollabClient(server.base, admin.token, timeout=10) as reader:
        assert (await reader.join(document_id)).text() == logged
    await close_all(ed)
