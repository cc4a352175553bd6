"""REST for reading the audit log."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from handlers.api import Call, Routes
from realtime_cms.listing import Field, Listing, Page
from realtime_cms.models.analytics import AuditLog
from realtime_cms.rbac.schemas import AuditEntryOut

routes = Routes("audit")

AUDIT_LISTING = Listing(
    fields={
        "id": Field(AuditLog.id, int),
        "user_id": Field(AuditLog.user_id, int),
        "action_type": Field(AuditLog.action_type),
        "entity_type": Field(AuditLog.entity_type),
        "entity_id": Field(AuditLog.entity_id, int),
        "status": Field(AuditLog.status),
        "created_at": Field(AuditLog.created_at, datetime),
    },
    default_sort="-id",
)


@routes.get(
    "/api/v1/audit-log",
    "Read the audit log",
    permission="audit.view",
    response=AuditEntryOut,
    listing=AUDIT_LISTING,
)
async def list_audit_log(call: Call) -> Page[AuditLog]:
    assert call.query is not None
    return await call.query.fetch(call.db, sa.select(AuditLog))
