"""Generic entity change history: one `version_history` row per create, update or delete.

Services call `record_change` in the same transaction as the change, with the old and the
new values of what changed (JSON), so any entity's history reads as a sequence of diffs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from realtime_cms.models.versions import VersionHistory
from realtime_cms.principal import Principal

ChangeType = Literal["create", "update", "delete"]


def _json(values: Mapping[str, Any] | None) -> str | None:
    if values is None:
        return None
    return json.dumps(dict(values), default=str, ensure_ascii=False, sort_keys=True)


async def record_change(
    db: AsyncSession,
    principal: Principal,
    entity_type: str,
    entity_id: int,
    change_type: ChangeType,
    *,
    old: Mapping[str, Any] | None = None,
    new: Mapping[str, Any] | None = None,
    reason: str | None = None,
) -> VersionHistory | None:
    """Append the entity's next history entry; an update that changed nothing is not one."""
    if change_type == "update" and (old or {}) == (new or {}):
        return None
    latest = await db.scalar(
        sa.select(sa.func.max(VersionHistory.version_number)).where(
            VersionHistory.entity_type == entity_type, VersionHistory.entity_id == entity_id
        )
    )
    entry = VersionHistory(
        entity_type=entity_type,
        entity_id=entity_id,
        version_number=(latest or 0) + 1,
        user_id=principal.user_id,
        change_type=change_type,
        old_value=_json(old),
        new_value=_json(new),
        change_reason=reason,
    )
    db.add(entry)
    await db.flush()
    return entry


async def history_of(db: AsyncSession, entity_type: str, entity_id: int) -> list[VersionHistory]:
    """The entity's entries, oldest first."""
    rows = await db.scalars(
        sa.select(VersionHistory)
        .where(VersionHistory.entity_type == entity_type, VersionHistory.entity_id == entity_id)
        .order_by(VersionHistory.version_number)
    )
    return list(rows.all())
