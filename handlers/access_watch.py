"""At-once re-checks of live connections when a user's access changes, on every process.

A deactivation, deletion, logout, revoked session or token, password change or role change
commits an `AccessChanged` event. This process then forgets its cached re-checks and asks
every transport to judge the connections concerned again now (not at their next periodic
re-check), and the collab relay tells the other processes to do the same. A connection
whose credentials no longer hold is closed; one whose level changed gets the new level.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from handlers.collab_seat import forget_checks
from realtime_cms.events import AccessChanged

log = logging.getLogger(__name__)

# `(user_id, session_id)` -> re-check the transport's matching connections (see
# `matches`). Registered by each transport at setup.
Recheck = Callable[[int | None, str | None], Awaitable[None]]


def matches(
    user_id: int | None, session_id: str | None, *, of_user: int | None, of_session: str | None
) -> bool:
    """Whether a connection of `of_user` on `of_session` is concerned by the change."""
    if user_id is not None and of_user != user_id:
        return False
    return session_id is None or of_session == session_id


class AccessWatch:
    """The transports' re-check callbacks, run for every access change seen here."""

    def __init__(self, app: web.Application) -> None:
        self._app = app
        self._rechecks: list[Recheck] = []
        self._running: set[asyncio.Task[None]] = set()

    def register(self, recheck: Recheck) -> None:
        self._rechecks.append(recheck)

    def on_event(self, event: AccessChanged) -> None:
        """A committed change on this process (an event-bus subscriber)."""
        self.changed(event.user_id, event.session_id)

    def changed(self, user_id: int | None, session_id: str | None) -> None:
        """Re-check the connections concerned now; returns at once (tasks do the work)."""
        forget_checks(self._app)
        for recheck in self._rechecks:
            task = asyncio.create_task(self._run(recheck, user_id, session_id))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _run(self, recheck: Recheck, user_id: int | None, session_id: str | None) -> None:
        try:
            await recheck(user_id, session_id)
        except Exception:
            log.exception("re-checking connections of user %s failed", user_id)

    async def close(self) -> None:
        """Wait for re-checks under way (shutdown)."""
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)


ACCESS_WATCH = web.AppKey("access_watch", AccessWatch)


def setup(app: web.Application) -> AccessWatch:
    """The process's AccessWatch; transports register with it in their own setup."""
    watch = AccessWatch(app)
    app[ACCESS_WATCH] = watch
    return watch
