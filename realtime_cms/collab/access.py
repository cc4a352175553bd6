"""Who may do what on a live document: read, write or admin, from grants and content RBAC."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import get_args

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from realtime_cms.errors import Invalid
from realtime_cms.models.content import ContentItem
from realtime_cms.models.realtime import DocumentPermission
from realtime_cms.principal import Level, Principal
from realtime_cms.rbac.authorize import is_allowed

logger = logging.getLogger(__name__)

# Lowest first: a level grants everything the levels before it grant.
LEVELS: tuple[Level, ...] = get_args(Level)

_DOCUMENT_ID = re.compile(r"[A-Za-z0-9:_.\-]{1,255}")
_CONTENT_PREFIX = "content:"
# One canonical spelling per item (no leading zeros), small enough for every INT column.
_CONTENT_ID = re.compile(r"[1-9][0-9]{0,17}")


@dataclass(frozen=True, slots=True)
class _AuthoredItem:
    """A content item as `authorize` sees it: `content.update.own` applies to its author."""

    owner_id: int


def rank(level: Level) -> int:
    """The position of `level` in LEVELS: higher grants more."""
    return LEVELS.index(level)


def highest(*levels: Level | None) -> Level | None:
    """The highest of the given levels; None when none is given."""
    ranks = [rank(level) for level in levels if level is not None]
    return LEVELS[max(ranks)] if ranks else None


def lowest(*levels: Level | None) -> Level | None:
    """The lowest of the given levels; None (no access) when any of them is None."""
    if any(level is None for level in levels):
        return None
    return LEVELS[min(rank(level) for level in levels if level is not None)]


def at_least(level: Level | None, minimum: Level) -> bool:
    """Whether `level` grants everything `minimum` grants (no access grants nothing)."""
    return level is not None and rank(level) >= rank(minimum)


def can_write(level: Level | None) -> bool:
    """Whether the level may change the document."""
    return at_least(level, "write")


def can_admin(level: Level | None) -> bool:
    """Whether the level may change who has access to the document."""
    return at_least(level, "admin")


def content_item_id(document_id: str) -> int | None:
    """The content item whose body `document_id` is, or None for a free document.

    Raises Invalid(code="invalid_document_id") for a malformed id, including a `content:`
    id that is not a canonical decimal (two spellings must never name two documents).
    """
    if not _DOCUMENT_ID.fullmatch(document_id):
        raise Invalid("Malformed document id", code="invalid_document_id")
    if not document_id.startswith(_CONTENT_PREFIX):
        return None
    item = document_id.removeprefix(_CONTENT_PREFIX)
    if not _CONTENT_ID.fullmatch(item):
        raise Invalid("A content document is named content:<item id>", code="invalid_document_id")
    return int(item)


async def document_level(db: AsyncSession, principal: Principal, document_id: str) -> Level | None:
    """The principal's level on the document: the highest any rule grants, capped by the
    credential (`Principal.document_cap`, an API token's scopes); None = no access.

    Rules: `documents.admin` is admin everywhere; a `document_permissions` row grants its
    level; on `content:<id>`, `content.update` (or `content.update.own` for the item's
    author) grants write and `content.view` grants read. The body of a content item that
    does not exist is open to nobody but document admins.
    """
    return lowest(await _uncapped_level(db, principal, document_id), principal.document_cap)


async def _uncapped_level(db: AsyncSession, principal: Principal, document_id: str) -> Level | None:
    item_id = content_item_id(document_id)
    if principal.can("documents.admin"):
        return "admin"
    granted = await _granted_level(db, principal, document_id)
    if item_id is None:
        return granted
    author_id = await db.scalar(sa.select(ContentItem.author_id).where(ContentItem.id == item_id))
    if author_id is None:
        return None
    return highest(granted, _content_level(principal, _AuthoredItem(author_id)))


async def _granted_level(db: AsyncSession, principal: Principal, document_id: str) -> Level | None:
    """The level of the principal's explicit `document_permissions` row, if any."""
    if principal.user_id is None:
        return None
    stored = await db.scalar(
        sa.select(DocumentPermission.permission_level).where(
            DocumentPermission.document_id == document_id,
            DocumentPermission.user_id == principal.user_id,
        )
    )
    if stored is None:
        return None
    for level in LEVELS:
        if level == stored:
            return level
    logger.warning(
        "ignoring unknown document permission level %r of user %s on %s",
        stored,
        principal.user_id,
        document_id,
    )
    return None


def _content_level(principal: Principal, item: _AuthoredItem) -> Level | None:
    """The level a content item's RBAC grants on its body."""
    if is_allowed(principal, "content.update", item):
        return "write"
    if is_allowed(principal, "content.view"):
        return "read"
    return None
