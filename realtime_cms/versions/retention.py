"""Retention: prune old autosaves, re-basing every delta that depended on a pruned version.

Manual versions are kept forever. Of each item's autosaves, the newest `keep` are kept and
those older than `max_age_days` go (0 means no age limit), except the item's latest version
(the base of its next one) and versions a restoration or a conflict record names. Before a
version goes, every remaining version whose delta was taken from it is rewritten: as a delta
from the nearest remaining version of its chain, or as a full copy when the chain's full
copy goes. Each item is pruned in one transaction, under the item's row lock: the periodic
job `versions.retention` (realtime_cms/versions/jobs.py) queues one `versions.prune` job for
each item `items_to_prune` finds.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from realtime_cms.audit import record
from realtime_cms.config import Settings
from realtime_cms.models.versions import (
    ConflictResolution,
    RestorationAuditLog,
    Version,
    VersionContent,
    VersionMetadata,
)
from realtime_cms.principal import system
from realtime_cms.rbac.catalog import PERMISSIONS
from realtime_cms.versions import storage
from realtime_cms.versions.service import get_item

_SYSTEM = system(frozenset(PERMISSIONS))


@dataclass(frozen=True, slots=True)
class Policy:
    """How many autosaves to keep per item, and for how long (0 days: no age limit)."""

    keep: int = 50
    max_age_days: float = 30.0

    @classmethod
    def of(cls, settings: Settings) -> Policy:
        return cls(
            keep=settings.version_autosave_keep, max_age_days=settings.version_autosave_max_age_days
        )


class ChainRow(storage.StoredRow, Protocol):
    @property
    def version_id(self) -> int: ...

    @property
    def previous_version_id(self) -> int | None: ...


@dataclass(frozen=True, slots=True)
class Candidate:
    """What choosing versions to prune needs to know of one version."""

    id: int
    is_autosave: bool
    created_at: datetime | None


def choose(
    versions: Sequence[Candidate],
    policy: Policy,
    *,
    now: datetime,
    protected: Collection[int] = (),
) -> set[int]:
    """Ids of the autosaves to prune; `versions` oldest first (the last one always stays)."""
    autosaves = [v for v in versions if v.is_autosave]
    newest = {v.id for v in autosaves[max(len(autosaves) - policy.keep, 0) :]}
    cutoff = now - timedelta(days=policy.max_age_days) if policy.max_age_days > 0 else None
    doomed = set()
    for version in autosaves:
        if version is versions[-1] or version.id in protected:
            continue
        created = version.created_at
        too_old = cutoff is not None and created is not None and created < cutoff
        if version.id not in newest or too_old:
            doomed.add(version.id)
    return doomed


def rebase(
    rows: Mapping[int, ChainRow],
    order: Sequence[int],
    doomed: Collection[int],
    *,
    full_every: int = storage.FULL_EVERY,
) -> dict[int, tuple[storage.Encoded, int | None]]:
    """New storage (and base version) for each remaining version whose delta is from a
    doomed one. `rows` holds every version of the item; `order` lists them oldest first."""
    contents: dict[int, storage.Content] = {}

    def content_of(version_id: int) -> storage.Content:
        if version_id not in contents:
            row = rows[version_id]
            if row.is_full_content:
                contents[version_id] = storage.parse_canonical(row.content)
            else:
                base = content_of(_base(row))
                contents[version_id] = storage.apply_delta(base, row.diff_content or "")
        return contents[version_id]

    depth: dict[int, int] = {}
    rewritten: dict[int, tuple[storage.Encoded, int | None]] = {}
    for version_id in order:
        row = rows[version_id]
        if version_id in doomed:
            continue
        if row.is_full_content:
            depth[version_id] = 0
            continue
        base = _surviving_base(rows, _base(row), doomed)
        if base is not None and base == row.previous_version_id:
            depth[version_id] = depth[base] + 1
            continue
        previous = None if base is None else content_of(base)
        base_depth = 0 if base is None else depth[base]
        encoded = storage.encode(
            content_of(version_id), previous, depth=base_depth, full_every=full_every
        )
        if encoded.content_hash != row.content_hash:
            raise storage.CorruptVersion(f"version {version_id} does not match its hash")
        rewritten[version_id] = (encoded, None if encoded.is_full_content else base)
        depth[version_id] = 0 if encoded.is_full_content else base_depth + 1
    return rewritten


def _base(row: ChainRow) -> int:
    if row.previous_version_id is None:
        raise storage.CorruptVersion(f"version {row.version_id} lost the version it is from")
    return row.previous_version_id


def _surviving_base(rows: Mapping[int, ChainRow], base: int, doomed: Collection[int]) -> int | None:
    """The nearest version on the chain back from `base` that stays (None: its full copy goes)."""
    while base in doomed:
        row = rows[base]
        if row.is_full_content:
            return None
        base = _base(row)
    return base


async def _protected(db: AsyncSession, item_id: int) -> set[int]:
    """Versions a restoration or a conflict record names (pruning would delete the record)."""
    of_item = sa.select(Version.id).where(Version.content_id == item_id)
    named = sa.union(
        sa.select(RestorationAuditLog.version_id).where(
            RestorationAuditLog.version_id.in_(of_item)
        ),
        sa.select(ConflictResolution.version_a_id).where(
            ConflictResolution.version_a_id.in_(of_item)
        ),
        sa.select(ConflictResolution.version_b_id).where(
            ConflictResolution.version_b_id.in_(of_item)
        ),
    )
    return set((await db.execute(named)).scalars())


async def prune_item(
    db: AsyncSession, item_id: int, policy: Policy, *, now: datetime | None = None
) -> int:
    """Prune one item's autosaves as `policy` says; returns how many versions went."""
    await get_item(db, item_id, lock=True)
    versions = list(
        await db.scalars(
            sa.select(Version).where(Version.content_id == item_id).order_by(Version.version_number)
        )
    )
    candidates = [Candidate(v.id, v.is_autosave, v.created_at) for v in versions]
    protected = await _protected(db, item_id)
    doomed = choose(candidates, policy, now=now or datetime.now(UTC), protected=protected)
    if not doomed:
        return 0
    order = [v.id for v in versions]
    stored = await db.scalars(sa.select(VersionContent).where(VersionContent.version_id.in_(order)))
    rows = {row.version_id: row for row in stored}
    for version_id, (encoded, base) in rebase(rows, order, doomed).items():
        row = rows[version_id]
        row.content, row.diff_content = encoded.content, encoded.diff_content
        row.diff_format, row.is_full_content = encoded.diff_format, encoded.is_full_content
        row.previous_version_id = base
    await _relink_metadata(db, order, doomed)
    await db.flush()
    await db.execute(sa.delete(Version).where(Version.id.in_(doomed)))
    details = {"content_id": item_id, "pruned": len(doomed)}
    await record(db, _SYSTEM, "version.prune", "content_item", item_id, details)
    return len(doomed)


async def _relink_metadata(db: AsyncSession, order: Sequence[int], doomed: Collection[int]) -> None:
    """Point each remaining version's metadata at the previous remaining version."""
    survivors = [version_id for version_id in order if version_id not in doomed]
    previous = dict(zip(survivors[1:], survivors[:-1], strict=True))
    rows = await db.scalars(
        sa.select(VersionMetadata).where(
            VersionMetadata.version_id.in_(survivors),
            VersionMetadata.previous_version_id.in_(doomed),
        )
    )
    for row in rows:
        row.previous_version_id = previous.get(row.version_id)


async def items_to_prune(
    db: AsyncSession, policy: Policy, *, now: datetime, after: int = 0, limit: int = 500
) -> list[int]:
    """Ids above `after` (ascending, at most `limit`) of the items that may have autosaves to
    prune: more than `keep` of them, or one older than the age limit. A superset (`choose`
    decides), so that the items with nothing to prune, nearly all of them, are not visited."""
    over = sa.func.count(Version.id) > policy.keep
    if policy.max_age_days > 0:
        cutoff = now - timedelta(days=policy.max_age_days)
        over = sa.or_(over, sa.func.min(Version.created_at) < cutoff)
    rows = await db.scalars(
        sa.select(Version.content_id)
        .where(Version.is_autosave.is_(True), Version.content_id > after)
        .group_by(Version.content_id)
        .having(over)
        .order_by(Version.content_id)
        .limit(limit)
    )
    return list(rows)
