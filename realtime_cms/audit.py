"""The audit trail: every administrative change and security event goes into `audit_log`."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from realtime_cms.models.analytics import AuditLog
from realtime_cms.principal import Principal

_MAX_DETAILS = 60_000


async def record(
    db: AsyncSession,
    principal: Principal,
    action: str,
    entity_type: str | None = None,
    entity_id: int | None = None,
    details: dict[str, Any] | None = None,
    *,
    status: str = "success",
    user_id: int | None = None,
) -> AuditLog:
    """Append one audit entry in the caller's transaction (so it commits with the change)."""
    text = json.dumps(details, default=str, ensure_ascii=False) if details else None
    entry = AuditLog(
        user_id=user_id if user_id is not None else principal.user_id,
        action_type=action,
        entity_type=entity_type,
        entity_id=entity_id,
        ip_address=principal.ip[:45] if principal.ip else None,
        user_agent=principal.user_agent[:2000] if principal.user_agent else None,
        details=text[:_MAX_DETAILS] if text else None,
        status=status,
    )
    db.add(entry)
    await db.flush()
    return entry
