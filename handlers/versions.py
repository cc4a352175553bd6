"""REST for versions: history of an item, manual versions, diffs, restores, conflicts, and
the generic change log (`version_history`)."""

from __future__ import annotations

import logging
from datetime import datetime

from handlers import keys
from handlers.api import Call, Routes
from realtime_cms.db import transaction
from realtime_cms.errors import CMSError
from realtime_cms.listing import Field, Listing, Page
from realtime_cms.models.versions import (
    ConflictResolution,
    RestorationAuditLog,
    Version,
    VersionHistory,
)
from realtime_cms.versions import reads, service
from realtime_cms.versions.schemas import (
    ConflictOut,
    DiffQuery,
    HistoryEntryOut,
    RestorationOut,
    VersionCreate,
    VersionDetailOut,
    VersionDiff,
    VersionOut,
)

log = logging.getLogger(__name__)
routes = Routes("versions")

ITEM = "/api/v1/content-items/{item_id:\\d+}"
VERSIONS = ITEM + "/versions"
VERSION = VERSIONS + "/{version_id:\\d+}"

VERSION_LISTING = Listing(
    fields={
        "id": Field(Version.id, int),
        "version_number": Field(Version.version_number, int),
        "user_id": Field(Version.user_id, int),
        "is_autosave": Field(Version.is_autosave, bool),
        "created_at": Field(Version.created_at, datetime),
    },
    default_sort="-version_number",
)
RESTORATION_LISTING = Listing(
    fields={
        "id": Field(RestorationAuditLog.id, int),
        "version_id": Field(RestorationAuditLog.version_id, int),
        "user_id": Field(RestorationAuditLog.user_id, int),
        "status": Field(RestorationAuditLog.status),
        "restored_at": Field(RestorationAuditLog.restored_at, datetime),
    },
    default_sort="-id",
)
CONFLICT_LISTING = Listing(
    fields={
        "id": Field(ConflictResolution.id, int),
        "version_a_id": Field(ConflictResolution.version_a_id, int),
        "version_b_id": Field(ConflictResolution.version_b_id, int),
        "conflict_type": Field(ConflictResolution.conflict_type),
        "resolution_method": Field(ConflictResolution.resolution_method),
        "resolved_by": Field(ConflictResolution.resolved_by, int),
        "resolved_at": Field(ConflictResolution.resolved_at, datetime),
    },
    default_sort="-id",
)
HISTORY_LISTING = Listing(
    fields={
        "id": Field(VersionHistory.id, int),
        "entity_type": Field(VersionHistory.entity_type),
        "entity_id": Field(VersionHistory.entity_id, int),
        "version_number": Field(VersionHistory.version_number, int),
        "user_id": Field(VersionHistory.user_id, int),
        "change_type": Field(VersionHistory.change_type),
        "created_at": Field(VersionHistory.created_at, datetime),
    },
    default_sort="-id",
)


@routes.get(
    VERSIONS,
    "List an item's versions",
    permission="versions.view",
    response=VersionOut,
    listing=VERSION_LISTING,
)
async def list_versions(call: Call) -> Page[VersionOut]:
    """Newest first by default; also needs `content.view`."""
    assert call.query is not None
    return await reads.list_versions(call.db, call.principal, call.path_int("item_id"), call.query)


@routes.post(
    VERSIONS, "Save a version of an item", body=VersionCreate, response=VersionOut, status=201
)
async def create_version(call: Call) -> VersionOut:
    """Saves the item's current content (the live document's, when it is being edited) as
    a manual version. Needs `content.update` on the item (`content.update.own` for its
    author)."""
    body: VersionCreate = call.body
    version = await service.save_current(
        call.db,
        call.principal,
        call.app[keys.CONTENT],
        item_id=call.path_int("item_id"),
        notes=body.notes,
    )
    return await reads.version_summary(call.db, version)


@routes.get(
    VERSIONS + "/diff",
    "Compare two versions of an item",
    permission="versions.view",
    query=DiffQuery,
    response=VersionDiff,
)
async def diff_versions(call: Call) -> VersionDiff:
    """Line hunks of the body and the changed fields, from version `from` to version `to`."""
    params: DiffQuery = call.params
    return await reads.diff(
        call.db, call.principal, call.path_int("item_id"), params.from_, params.to
    )


@routes.get(
    VERSION,
    "Read a version with its content",
    permission="versions.view",
    response=VersionDetailOut,
)
async def get_version(call: Call) -> VersionDetailOut:
    return await reads.version_detail(
        call.db, call.principal, call.path_int("item_id"), call.path_int("version_id")
    )


@routes.post(
    VERSION + "/restore",
    "Restore an item to a version",
    permission="versions.restore",
    response=VersionOut,
    status=201,
)
async def restore_version(call: Call) -> VersionOut:
    """Applies the version's body and fields to the live document (merging with edits in
    progress), logs the restoration and answers the new version that records it. Also needs
    `content.update` on the item. A restore that fails is logged with status `failed`."""
    item_id, version_id = call.path_int("item_id"), call.path_int("version_id")
    binding = call.app[keys.CONTENT]
    try:
        version = await service.restore(
            call.db, call.principal, binding, item_id=item_id, version_id=version_id
        )
    except CMSError as exc:
        await call.db.rollback()
        try:
            async with transaction(call.app[keys.SESSIONS]) as db:
                await service.record_failed_restore(
                    db, call.principal, binding, item_id=item_id, version_id=version_id, error=exc
                )
        except Exception:
            log.exception("logging the failed restore of item %s failed", item_id)
        raise
    return await reads.version_summary(call.db, version)


@routes.get(
    ITEM + "/restorations",
    "List an item's restorations",
    permission="versions.view",
    response=RestorationOut,
    listing=RESTORATION_LISTING,
)
async def list_restorations(call: Call) -> Page[RestorationAuditLog]:
    assert call.query is not None
    return await reads.list_restorations(
        call.db, call.principal, call.path_int("item_id"), call.query
    )


@routes.get(
    ITEM + "/conflicts",
    "List conflicts settled between an item's versions",
    permission="versions.view",
    response=ConflictOut,
    listing=CONFLICT_LISTING,
)
async def list_conflicts(call: Call) -> Page[ConflictResolution]:
    assert call.query is not None
    return await reads.list_conflicts(call.db, call.principal, call.path_int("item_id"), call.query)


@routes.get(
    "/api/v1/history",
    "Read the change log of entities",
    permission="audit.view",
    response=HistoryEntryOut,
    listing=HISTORY_LISTING,
)
async def list_history(call: Call) -> Page[VersionHistory]:
    """Every create, update and delete of an entity with its old and new values; filter
    with `filter[entity_type]` and `filter[entity_id]`."""
    assert call.query is not None
    return await reads.list_history(call.db, call.principal, call.query)
