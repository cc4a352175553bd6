"""Reading an item's versions, restorations and conflicts, and the generic change log."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from realtime_cms.errors import Unprocessable
from realtime_cms.listing import ListQuery, Page
from realtime_cms.models.auth import User
from realtime_cms.models.versions import (
    ConflictResolution,
    RestorationAuditLog,
    Version,
    VersionContent,
    VersionHistory,
    VersionMetadata,
)
from realtime_cms.principal import Principal
from realtime_cms.rbac.authorize import authorize
from realtime_cms.versions import service
from realtime_cms.versions.schemas import ContentOut, VersionDetailOut, VersionDiff, VersionOut
from realtime_cms.versions.service import get_item, get_version, load_chain, replay


async def _readable_item(db: AsyncSession, principal: Principal, item_id: int) -> None:
    """Reading an item's history takes `versions.view` and `content.view`."""
    authorize(principal, "versions.view")
    authorize(principal, "content.view")
    await get_item(db, item_id)


async def _usernames(db: AsyncSession, versions: Sequence[Version]) -> dict[int, str]:
    """The usernames of the versions' savers, by user id."""
    ids = {version.user_id for version in versions if version.user_id is not None}
    if not ids:
        return {}
    rows = await db.execute(sa.select(User.id, User.username).where(User.id.in_(ids)))
    return {user_id: username for user_id, username in rows}


def _out(version: Version, stored: VersionContent, usernames: Mapping[int, str]) -> VersionOut:
    return VersionOut(
        id=version.id,
        content_id=version.content_id,
        version_number=version.version_number,
        user_id=version.user_id,
        username=usernames.get(version.user_id) if version.user_id is not None else None,
        created_at=version.created_at,
        notes=version.notes,
        is_autosave=version.is_autosave,
        publish_date=version.publish_date,
        lifecycle_status=version.lifecycle_status,
        content_hash=stored.content_hash,
        is_full_content=bool(stored.is_full_content),
    )


async def list_versions(
    db: AsyncSession, principal: Principal, item_id: int, query: ListQuery
) -> Page[VersionOut]:
    await _readable_item(db, principal, item_id)
    page = await query.fetch(db, sa.select(Version), Version.content_id == item_id)
    ids = [version.id for version in page.items]
    rows = await db.scalars(sa.select(VersionContent).where(VersionContent.version_id.in_(ids)))
    stored = {row.version_id: row for row in rows}
    names = await _usernames(db, page.items)
    items = [_out(version, stored[version.id], names) for version in page.items]
    return Page(items=items, total=page.total, limit=page.limit, offset=page.offset)


async def version_detail(
    db: AsyncSession, principal: Principal, item_id: int, version_id: int
) -> VersionDetailOut:
    """A version's metadata and its content, rebuilt and checked against its hash."""
    await _readable_item(db, principal, item_id)
    version = await get_version(db, item_id, version_id)
    chain = await load_chain(db, version.id)
    content = replay(chain)
    metadata = await db.scalar(
        sa.select(VersionMetadata).where(VersionMetadata.version_id == version.id)
    )
    base: dict[str, Any] = _out(version, chain[-1], await _usernames(db, [version])).model_dump()
    return VersionDetailOut.model_validate(
        {
            **base,
            "metadata": metadata,
            "content": ContentOut(body=content.body, fields=dict(content.fields)),
        },
        from_attributes=True,
    )


async def list_restorations(
    db: AsyncSession, principal: Principal, item_id: int, query: ListQuery
) -> Page[RestorationAuditLog]:
    await _readable_item(db, principal, item_id)
    stmt = sa.select(RestorationAuditLog)
    return await query.fetch(db, stmt, RestorationAuditLog.content_id == item_id)


async def list_conflicts(
    db: AsyncSession, principal: Principal, item_id: int, query: ListQuery
) -> Page[ConflictResolution]:
    """Conflicts whose either side is a version of the item."""
    await _readable_item(db, principal, item_id)
    of_item = sa.select(Version.id).where(Version.content_id == item_id)
    involved = sa.or_(
        ConflictResolution.version_a_id.in_(of_item), ConflictResolution.version_b_id.in_(of_item)
    )
    return await query.fetch(db, sa.select(ConflictResolution), involved)


async def list_history(
    db: AsyncSession, principal: Principal, query: ListQuery
) -> Page[VersionHistory]:
    """The generic change log of every entity: an administrative read (`audit.view`)."""
    authorize(principal, "audit.view")
    return await query.fetch(db, sa.select(VersionHistory))


async def version_summary(db: AsyncSession, version: Version) -> VersionOut:
    """A version as listed (with its hash), e.g. right after creating it."""
    stored = await db.scalar(
        sa.select(VersionContent).where(VersionContent.version_id == version.id)
    )
    assert stored is not None  # written with the version
    return _out(version, stored, await _usernames(db, [version]))


async def diff(
    db: AsyncSession, principal: Principal, item_id: int, from_id: int | None, to_id: int | None
) -> VersionDiff:
    await _readable_item(db, principal, item_id)
    missing = [name for name, value in (("from", from_id), ("to", to_id)) if value is None]
    if from_id is None or to_id is None:
        errors = [
            {"loc": ["query", name], "message": "Field required", "type": "missing"}
            for name in missing
        ]
        raise Unprocessable("The query did not validate", errors=errors)
    return await service.diff(db, item_id, from_id, to_id)
