"""Conflicts of merging writes: the base a writer saw, and scalar fields settled last-writer-wins.

A write that names the content it was based on merges with what others changed since; a
field both sides changed takes the write's value, and `conflict_resolution` records it
between two autosave versions: the other side's content and the written result.

Versions are the versions domain's, which builds on content (it snapshots `ContentState`s
and writes through the binding), so content does not import it: the binding's owner hands
it a `Versions` (`realtime_cms.versions.service.CONTENT_VERSIONS`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from realtime_cms.content.materialize import ContentState
from realtime_cms.models.versions import ConflictResolution
from realtime_cms.principal import Principal

CONFLICT_TYPE = "field"
METHOD = "last_writer_wins"


class Versions(Protocol):
    """What merging writes needs of an item's versions."""

    async def content_of(self, db: AsyncSession, item_id: int, version_id: int) -> ContentState:
        """The content of the item's version `version_id` (NotFound if it is another item's)."""
        ...

    async def autosave(
        self, db: AsyncSession, principal: Principal, item_id: int, state: ContentState
    ) -> int:
        """Store `state` as the item's next (autosave) version for `principal`; its id."""
        ...


async def record(
    db: AsyncSession,
    versions: Versions,
    principal: Principal,
    item_id: int,
    *,
    theirs: ContentState,
    ours: ContentState,
    names: Sequence[str],
) -> None:
    """Record that this write's values of `names` replaced values others wrote since its base.

    Both sides are saved as autosave versions (a = the other side, b = this write's result),
    and one `conflict_resolution` row per field names it. A principal without a user (the
    system) has no one to record as `resolved_by`, so nothing is recorded for it.
    """
    if principal.user_id is None or not names:
        return
    version_a = await versions.autosave(db, principal, item_id, theirs)
    version_b = await versions.autosave(db, principal, item_id, ours)
    for name in names:
        db.add(
            ConflictResolution(
                version_a_id=version_a,
                version_b_id=version_b,
                conflict_type=CONFLICT_TYPE,
                resolution_method=METHOD,
                resolved_by=principal.user_id,
                notes=f"field {name!r}: both changed since the base; this write's value kept",
            )
        )
    await db.flush()
