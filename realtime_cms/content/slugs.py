"""URL slugs: `slugify` turns a name into one, `unique_slug` makes it unique in its table."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from realtime_cms.errors import Conflict

# What every stored slug looks like: lowercase words of a-z0-9 joined by single hyphens.
SLUG_PATTERN = r"^[a-z0-9]+(?:-[a-z0-9]+)*$"
_SLUG = re.compile(SLUG_PATTERN)
_NON_SLUG = re.compile(r"[^a-z0-9]+")
DEFAULT_MAX_LENGTH = 255
# Candidates `base`, `base-2`, ... checked with one query per batch.
_BATCH = 50


def is_slug(value: str) -> bool:
    """Whether `value` is already a well-formed slug."""
    return bool(_SLUG.match(value))


def slugify(text: str, max_length: int = DEFAULT_MAX_LENGTH, *, fallback: str = "item") -> str:
    """`text` folded to ASCII, lowercased, runs of other characters as one hyphen; never empty."""
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    slug = _NON_SLUG.sub("-", folded.lower()).strip("-")
    slug = slug[:max_length].rstrip("-")
    return slug or fallback[:max_length]


def _with_suffix(base: str, number: int, max_length: int) -> str:
    if number == 1:
        return base[:max_length]
    suffix = f"-{number}"
    return base[: max_length - len(suffix)].rstrip("-") + suffix


async def unique_slug(
    db: AsyncSession,
    column: InstrumentedAttribute[str],
    base: str,
    *,
    scope: Iterable[sa.ColumnElement[bool]] = (),
    exclude_id: int | None = None,
) -> str:
    """`slugify(base)`, or with -2, -3... appended: the first not used in `column`.

    `scope` restricts the uniqueness check (e.g. `ContentItem.content_type_id == 3` for slugs
    unique per type); `exclude_id` is the row being renamed, whose own slug does not count.
    The column's length bounds the result. The table's unique index still decides a race.
    """
    max_length = getattr(column.type, "length", None) or DEFAULT_MAX_LENGTH
    stem = slugify(base, max_length)
    model: Any = column.class_
    conditions = list(scope)
    if exclude_id is not None:
        conditions.append(model.id != exclude_id)
    first = 1
    while True:
        candidates = [_with_suffix(stem, n, max_length) for n in range(first, first + _BATCH)]
        taken = set(
            (await db.scalars(sa.select(column).where(column.in_(candidates), *conditions))).all()
        )
        for candidate in candidates:
            if candidate not in taken:
                return candidate
        first += _BATCH


async def claim_slug(
    db: AsyncSession,
    column: InstrumentedAttribute[str],
    *,
    wanted: str | None,
    name: str,
    scope: Iterable[sa.ColumnElement[bool]] = (),
    exclude_id: int | None = None,
) -> str:
    """The slug a caller asked for (Conflict `slug_exists` when taken), else one from `name`."""
    if wanted is None:
        return await unique_slug(db, column, name, scope=scope, exclude_id=exclude_id)
    if await unique_slug(db, column, wanted, scope=scope, exclude_id=exclude_id) != wanted:
        raise Conflict(f"The slug {wanted!r} is taken", code="slug_exists")
    return wanted
