"""The live fan-out of notifications: Socket.IO events to every connection of a user, on every node.

Each connection of namespace `/notifications` sits in the room `user:<id>` of its user. With
`RCMS_REDIS_URL` the server's `AsyncRedisManager` publishes every emit to all nodes, so a
user connected to node B receives what node A produced. Pushes happen after the commit that
made them true; a push that is lost (Redis down, a tab offline) is recovered by the client's
catch-up (`since`), which reads the database.
"""

from __future__ import annotations

import logging
from typing import Any

import socketio

log = logging.getLogger(__name__)

NAMESPACE = "/notifications"


def user_room(user_id: int) -> str:
    """The Socket.IO room holding every connection of `user_id`."""
    return f"user:{user_id}"


class NotificationHub:
    """Pushes to users' connections; never raises (its callers have already committed)."""

    def __init__(self, sio: socketio.AsyncServer) -> None:
        self.sio = sio

    async def deliver(self, user_id: int, notification: dict[str, Any]) -> None:
        """Event `notification` (the notification's JSON) to every connection of the user."""
        await self._emit(user_id, "notification", notification)

    async def counts(self, user_id: int, unread: dict[str, Any]) -> None:
        """Event `unread` (`{"total": n, "by_category": {"<id>|none": n}}`)."""
        await self._emit(user_id, "unread", unread)

    async def read(self, user_id: int, ids: list[int] | None) -> None:
        """Event `read`: `{"ids": [...]}`, or `{"all": true}` when `ids` is None."""
        await self._emit(user_id, "read", {"all": True} if ids is None else {"ids": list(ids)})

    async def _emit(self, user_id: int, event: str, data: dict[str, Any]) -> None:
        try:
            await self.sio.emit(event, data, room=user_room(user_id), namespace=NAMESPACE)
        except Exception:
            # The change is committed; clients recover it with `since` / `unread`.
            log.exception("pushing %s to user %s failed", event, user_id)
