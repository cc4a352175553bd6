"""Reads only the live namespace needs: the newest notifications, for a widget's first paint.

Catch-up after that goes through `reads.list_since` (oldest first, from a cursor).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from realtime_cms.models.notifications import Notification
from realtime_cms.notifications.owner import require_user
from realtime_cms.notifications.reads import as_json
from realtime_cms.principal import Principal


async def latest(db: AsyncSession, principal: Principal, *, limit: int) -> list[dict[str, Any]]:
    """The caller's `limit` newest notifications, newest first."""
    user_id = require_user(principal)
    rows = await db.scalars(
        sa.select(Notification)
        .where(Notification.user_id == user_id)
        .order_by(Notification.id.desc())
        .limit(limit)
    )
    return await as_json(db, list(rows))
