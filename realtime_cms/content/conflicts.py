"""Conflicts of merging writes: the base a writer saw, and scalar fields settled last-writer-wins.

A write that names the content it was based on merges with what others changed since; a
field both sides changed takes the write's value, and `conflict_resolution` records it
between two autosave versions: the other side's content and the written result.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession

from realtime_cms.models.versions import ConflictResolution
from realtime_cms.principal import Principal

if TYPE_CHECKING:
    from realtime_cms.content.materialize import ContentState

CONFLICT_TYPE = "field"
METHOD = "last_writer_wins"


async def reconstruct(db: AsyncSession, item_id: int, version_id: int) -> ContentState:
    """The content of the item's version `version_id` (NotFound if it is another item's)."""
    # Imported here: the versions service imports the binding, which imports this module.
    from realtime_cms.versions import service as versions

    await versions.get_version(db, item_id, version_id)
    return await versions.reconstruct(db, version_id)


async def record(
    db: AsyncSession,
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
    from realtime_cms.versions import service as versions

    if principal.user_id is None or not names:
        return
    version_a = await versions.create_version(
        db, principal, item_id=item_id, state=theirs, is_autosave=True
    )
    version_b = await versions.create_version(
        db, principal, item_id=item_id, state=ours, is_autosave=True
    )
    for name in names:
        db.add(
            ConflictResolution(
                version_a_id=version_a.id,
                version_b_id=version_b.id,
                conflict_type=CONFLICT_TYPE,
                resolution_method=METHOD,
                resolved_by=principal.user_id,
                notes=f"field {name!r}: both changed since the base; this write's value kept",
            )
        )
    await db.flush()
