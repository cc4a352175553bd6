"""The one check behind every "that name is taken" answer: does another row match?"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession


async def taken(
    db: AsyncSession, id_column: Any, *conditions: sa.ColumnElement[bool], exclude: int | None
) -> bool:
    """Whether a row other than `exclude` (the one being changed) matches every condition."""
    stmt = sa.select(id_column).where(*conditions)
    if exclude is not None:
        stmt = stmt.where(id_column != exclude)
    return await db.scalar(stmt.limit(1)) is not None
