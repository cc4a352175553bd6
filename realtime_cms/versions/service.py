"""Versions of content items: create (manual, autosave, restore), reconstruct, diff, restore.

Creating a version first takes the item row's write lock (a no-op UPDATE, which also takes
SQLite's database write lock), so concurrent creators get consecutive `version_number`s,
then reads the latest version's chain with locking reads, which see the newest commits. Storage is
`realtime_cms.versions.storage`; the rules for who may do what are in each function. Every
stored version publishes `VersionCreated`. `CONTENT_VERSIONS` is what the content binding
merges writes against (`content.conflicts.Versions`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from realtime_cms.audit import record
from realtime_cms.content.binding import ContentBinding, ContentState
from realtime_cms.errors import CMSError, NotFound
from realtime_cms.events import publish
from realtime_cms.models.content import ContentItem, ContentItemTag, Tag
from realtime_cms.models.versions import (
    RestorationAuditLog,
    Version,
    VersionContent,
    VersionMetadata,
)
from realtime_cms.principal import Principal
from realtime_cms.rbac.authorize import authorize
from realtime_cms.versions import storage
from realtime_cms.versions.diffs import VersionDiff, diff_contents
from realtime_cms.versions.events import VersionCreated

# content_items.status -> version_metadata.status (whose enum has no scheduled or expired).
_STATUS = {"scheduled": "pending_review", "expired": "archived"}
_VISIBILITY = {"password": "password_protected"}
_SEO_LIMITS = {"seo_title": 255, "seo_description": None, "seo_keywords": 255}


class VersionCorrupt(CMSError):
    status, code, title = 500, "version_corrupt", "Stored version data is corrupt"


@dataclass(frozen=True, slots=True)
class _Owned:
    """An item as `authorize` sees it: `<action>.own` applies to its author."""

    owner_id: int | None


def as_content(state: ContentState) -> storage.Content:
    return storage.Content(state.body, dict(state.fields))


def as_state(content: storage.Content) -> ContentState:
    return ContentState(body=content.body, fields=dict(content.fields))


# A write that changes nothing: it takes the row's write lock on MariaDB, and SQLite's write
# lock (a SELECT ... FOR UPDATE is not one on SQLite, where reads run outside transactions).
_LOCK_ITEM = sa.text("UPDATE content_items SET lifecycle_status = lifecycle_status WHERE id = :id")


async def get_item(db: AsyncSession, item_id: int, *, lock: bool = False) -> ContentItem:
    """The item; with `lock`, held against other version writers until the transaction ends."""
    if lock:
        await db.execute(_LOCK_ITEM, {"id": item_id})
    item = await db.scalar(sa.select(ContentItem).where(ContentItem.id == item_id))
    if item is None:
        raise NotFound("No such content item", code="content_not_found")
    return item


def authorize_update(principal: Principal, item: ContentItem) -> None:
    """Changing an item's versions takes `content.update` (`.own` for its author)."""
    authorize(principal, "content.update", _Owned(item.author_id))


async def get_version(db: AsyncSession, item_id: int, version_id: int) -> Version:
    version = await db.get(Version, version_id)
    if version is None or version.content_id != item_id:
        raise NotFound("No such version of this item", code="version_not_found")
    return version


async def _latest(db: AsyncSession, item_id: int) -> Version | None:
    stmt = (
        sa.select(Version)
        .where(Version.content_id == item_id)
        .order_by(Version.version_number.desc())
        .limit(1)
        .with_for_update(read=True)
    )
    return await db.scalar(stmt)


async def load_chain(db: AsyncSession, version_id: int) -> list[VersionContent]:
    """The stored rows `version_id` is rebuilt from: a full copy, then deltas, in order."""
    chain: list[VersionContent] = []
    next_id: int | None = version_id
    while next_id is not None:
        stmt = sa.select(VersionContent).where(VersionContent.version_id == next_id)
        row = await db.scalar(stmt.with_for_update(read=True))
        if row is None:
            raise VersionCorrupt(f"Version {next_id} has no stored content")
        chain.append(row)
        if len(chain) > 10_000:
            raise VersionCorrupt(f"Version {version_id} has a runaway chain")
        next_id = None if row.is_full_content else row.previous_version_id
        if next_id is None and not row.is_full_content:
            raise VersionCorrupt(f"Version {row.version_id} lost the version its delta is from")
    chain.reverse()
    return chain


def replay(chain: list[VersionContent]) -> storage.Content:
    try:
        return storage.replay(chain)
    except storage.CorruptVersion as exc:
        raise VersionCorrupt(f"Version {chain[-1].version_id}: {exc}") from exc


async def reconstruct(db: AsyncSession, version_id: int) -> ContentState:
    """Exactly the content that was saved as `version_id` (checked against its hash)."""
    return as_state(replay(await load_chain(db, version_id)))


async def _tag_names(db: AsyncSession, item_id: int) -> list[str]:
    rows = await db.scalars(
        sa.select(Tag.name)
        .join(ContentItemTag, ContentItemTag.tag_id == Tag.id)
        .where(ContentItemTag.content_item_id == item_id)
        .order_by(Tag.name)
    )
    return list(rows)


def _seo(fields: dict[str, Any], name: str) -> str | None:
    value = fields.get(name)
    if value is None or value == "":
        return None
    text = ", ".join(map(str, value)) if isinstance(value, list) else str(value)
    limit = _SEO_LIMITS[name]
    return text[:limit] if limit else text


async def _metadata(
    db: AsyncSession, item: ContentItem, state: ContentState, change_type: str
) -> VersionMetadata:
    fields = dict(state.fields)
    return VersionMetadata(
        meta_key="snapshot",
        change_type=change_type,
        tags=await _tag_names(db, item.id),
        seo_title=_seo(fields, "seo_title"),
        seo_description=_seo(fields, "seo_description"),
        seo_keywords=_seo(fields, "seo_keywords"),
        author_id=item.author_id,
        published_at=item.published_at,
        status=_STATUS.get(item.status, item.status),
        visibility=_VISIBILITY.get(item.visibility, item.visibility),
    )


async def record_version(
    db: AsyncSession,
    principal: Principal,
    *,
    item_id: int,
    state: ContentState,
    user_id: int | None,
    notes: str | None = None,
    is_autosave: bool = False,
    change_type: str = "manual",
    skip_unchanged: bool = False,
    full_every: int = storage.FULL_EVERY,
) -> Version | None:
    """Store `state` as the item's next version, attributed to `user_id`; no permission
    check (callers decide). With `skip_unchanged`, None when it equals the latest version."""
    item = await get_item(db, item_id, lock=True)
    latest = await _latest(db, item_id)
    content = as_content(state)
    previous: storage.Content | None = None
    depth = 0
    if latest is not None:
        chain = await load_chain(db, latest.id)
        if skip_unchanged and chain[-1].content_hash == storage.hash_of(content):
            return None
        previous, depth = replay(chain), len(chain) - 1
    encoded = storage.encode(content, previous, depth=depth, full_every=full_every)
    version = Version(
        content_id=item_id,
        user_id=user_id,
        version_number=(latest.version_number if latest else 0) + 1,
        notes=notes,
        is_autosave=is_autosave,
        publish_date=item.publish_date,
        lifecycle_status=item.lifecycle_status,
    )
    db.add(version)
    await db.flush()
    previous_id = latest.id if latest is not None else None
    db.add(
        VersionContent(
            version_id=version.id,
            content=encoded.content,
            content_hash=encoded.content_hash,
            diff_content=encoded.diff_content,
            diff_format=encoded.diff_format,
            previous_version_id=None if encoded.is_full_content else previous_id,
            is_full_content=encoded.is_full_content,
        )
    )
    metadata = await _metadata(db, item, state, change_type)
    metadata.version_id, metadata.previous_version_id = version.id, previous_id
    db.add(metadata)
    await db.flush()
    await db.refresh(version)
    details = {"content_id": item_id, "version_number": version.version_number}
    action = "version.autosave" if is_autosave else "version.create"
    await record(db, principal, action, "version", version.id, details, user_id=user_id)
    created = VersionCreated(
        version_id=version.id,
        item_id=item_id,
        version_number=version.version_number,
        user_id=user_id,
        is_autosave=is_autosave,
        change_type=change_type,
    )
    await publish(db, created)
    return version


async def create_version(
    db: AsyncSession,
    principal: Principal,
    *,
    item_id: int,
    state: ContentState,
    notes: str | None = None,
    is_autosave: bool = False,
) -> Version:
    """The item's next version holding `state`; needs `content.update` on the item."""
    authorize_update(principal, await get_item(db, item_id))
    version = await record_version(
        db,
        principal,
        item_id=item_id,
        state=state,
        user_id=principal.user_id,
        notes=notes,
        is_autosave=is_autosave,
    )
    assert version is not None  # only skip_unchanged skips
    return version


class _ContentVersions:
    """The versions a content write merges against, and records its conflicts as."""

    async def content_of(self, db: AsyncSession, item_id: int, version_id: int) -> ContentState:
        await get_version(db, item_id, version_id)
        return await reconstruct(db, version_id)

    async def autosave(
        self, db: AsyncSession, principal: Principal, item_id: int, state: ContentState
    ) -> int:
        version = await create_version(
            db, principal, item_id=item_id, state=state, is_autosave=True
        )
        return version.id


CONTENT_VERSIONS = _ContentVersions()


async def save_current(
    db: AsyncSession,
    principal: Principal,
    binding: ContentBinding,
    *,
    item_id: int,
    notes: str | None = None,
) -> Version:
    """A manual version of the item's current content (the live document's when loaded);
    needs `content.update` on the item."""
    authorize_update(principal, await get_item(db, item_id))
    return await save_seated(db, principal, binding, item_id=item_id, notes=notes)


async def save_seated(
    db: AsyncSession,
    principal: Principal,
    binding: ContentBinding,
    *,
    item_id: int,
    notes: str | None = None,
) -> Version:
    """A manual version saved from a live document seat whose write level the caller
    checked (a document grant may give it without `content.update`)."""
    version = await record_version(
        db,
        principal,
        item_id=item_id,
        state=await binding.current(item_id),
        user_id=principal.user_id,
        notes=notes,
    )
    assert version is not None
    return version


async def diff(db: AsyncSession, item_id: int, from_id: int, to_id: int) -> VersionDiff:
    """Text hunks and field changes from version `from_id` to `to_id` of one item."""
    old = await get_version(db, item_id, from_id)
    new = await get_version(db, item_id, to_id)
    old_content = replay(await load_chain(db, old.id))
    new_content = replay(await load_chain(db, new.id))
    return diff_contents(old, old_content, new, new_content)


def _json(state: ContentState) -> str:
    return storage.canonical(as_content(state))


async def restore(
    db: AsyncSession,
    principal: Principal,
    binding: ContentBinding,
    *,
    item_id: int,
    version_id: int,
) -> Version:
    """Apply a version's content to the live document (merging with concurrent edits),
    log the restoration and record the result as a new version. Needs `versions.restore`
    and `content.update` on the item; a failure raises (see `record_failed_restore`)."""
    authorize(principal, "versions.restore")
    item = await get_item(db, item_id)
    authorize_update(principal, item)
    target = await get_version(db, item_id, version_id)
    wanted = await reconstruct(db, target.id)
    before = await binding.current(item_id)
    after = await binding.write(
        db, principal, item_id, body=wanted.body, fields=wanted.fields, origin="restore"
    )
    version = await record_version(
        db,
        principal,
        item_id=item_id,
        state=after,
        user_id=principal.user_id,
        notes=f"Restored from version {target.version_number}",
        change_type="restore",
    )
    assert version is not None
    details = {"version_number": target.version_number, "new_version_id": version.id}
    db.add(_restoration(item, target, principal, "completed", details, _json(before)))
    await db.flush()
    await record(db, principal, "version.restore", "content_item", item_id, details)
    return version


def _restoration(
    item: ContentItem,
    target: Version,
    principal: Principal,
    status: str,
    details: dict[str, Any],
    previous_data: str | None,
) -> RestorationAuditLog:
    assert principal.user_id is not None  # restores need a signed-in user
    return RestorationAuditLog(
        site_id=item.site_id,
        content_id=item.id,
        version_id=target.id,
        user_id=principal.user_id,
        status=status,
        details=json.dumps(details, ensure_ascii=False),
        previous_data=previous_data,
    )


async def record_failed_restore(
    db: AsyncSession,
    principal: Principal,
    binding: ContentBinding,
    *,
    item_id: int,
    version_id: int,
    error: CMSError,
) -> None:
    """Log a restore that failed (in a transaction of its own: the restore's rolled back).
    Nothing is logged when the item or version does not exist or the caller may not restore."""
    item = await db.get(ContentItem, item_id)
    target = await db.get(Version, version_id)
    if item is None or target is None or target.content_id != item_id:
        return
    if error.status in (401, 403) or principal.user_id is None:
        return
    details = {"version_number": target.version_number, "code": error.code, "error": error.message}
    before = _json(await binding.current(item_id))
    db.add(_restoration(item, target, principal, "failed", details, before))
    await db.flush()
    await record(
        db, principal, "version.restore", "content_item", item_id, details, status="failure"
    )
