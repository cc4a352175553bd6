"""Personal API tokens: named, scoped to a subset of the owner's permissions, revocable.

Scopes are permission names (held by the owner) and the token-only `documents.read` and
`documents.write`; together with `documents.admin` they cap the token's level on live
documents (`document_cap`), so a token made for one job cannot reach every document its
owner was granted.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from realtime_cms.audit import record
from realtime_cms.errors import Forbidden, Invalid, NotFound, Unauthorized
from realtime_cms.events import AccessChanged, emit
from realtime_cms.listing import ListQuery, Page
from realtime_cms.models.auth import ApiToken
from realtime_cms.models.base import utcnow
from realtime_cms.principal import Level, Principal
from realtime_cms.rbac.authorize import is_allowed
from realtime_cms.rbac.catalog import PERMISSIONS, TOKEN_SCOPES
from realtime_cms.rbac.service import require_not_outranked
from realtime_cms.security.tokens import API_TOKEN_PREFIX, hash_token, new_token

_SHOWN_PREFIX = len(API_TOKEN_PREFIX) + 8


def document_cap(scopes: Collection[str], permissions: frozenset[str]) -> Level | None:
    """The highest document level a token with `scopes` may use, its owner's `permissions`
    (already narrowed to the scopes) allowing; None: no document access at all."""
    if "documents.admin" in permissions:
        return "admin"
    if "documents.write" in scopes:
        return "write"
    if "documents.read" in scopes:
        return "read"
    return None


def _owner_id(principal: Principal) -> int:
    if principal.user_id is None:
        raise Unauthorized("Sign in to continue")
    return principal.user_id


async def create_token(
    db: AsyncSession,
    principal: Principal,
    *,
    name: str,
    scopes: Sequence[str],
    expires_at: datetime | None,
) -> tuple[ApiToken, str]:
    """A new token for the caller and its secret (shown once); scopes must be held by the caller."""
    owner = _owner_id(principal)
    if principal.token_id is not None:
        # Otherwise a leaked token could mint fresh, longer-lived ones.
        raise Forbidden("API tokens are created from a signed-in session", code="session_required")
    wanted = sorted(set(scopes))
    if not wanted:
        raise Invalid("A token needs at least one scope", code="invalid_scope")
    unknown = [scope for scope in wanted if scope not in PERMISSIONS and scope not in TOKEN_SCOPES]
    if unknown:
        raise Invalid(f"Unknown scopes: {', '.join(unknown)}", code="invalid_scope")
    missing = [scope for scope in wanted if scope in PERMISSIONS and not principal.can(scope)]
    if missing:
        raise Forbidden(f"You do not hold: {', '.join(missing)}", code="scope_not_held")
    if expires_at is not None and expires_at <= utcnow():
        raise Invalid("expires_at must be in the future", code="invalid_expiry")
    secret = new_token(API_TOKEN_PREFIX)
    token = ApiToken(
        user_id=owner,
        name=name,
        token_hash=hash_token(secret),
        prefix=secret[:_SHOWN_PREFIX],
        scopes=wanted,
        expires_at=expires_at,
    )
    db.add(token)
    await db.flush()
    await record(
        db, principal, "api_token.create", "api_token", token.id, {"name": name, "scopes": wanted}
    )
    return token, secret


async def list_tokens(db: AsyncSession, principal: Principal, query: ListQuery) -> Page[ApiToken]:
    """The caller's own tokens, revoked and expired ones included."""
    return await query.fetch(db, sa.select(ApiToken), ApiToken.user_id == _owner_id(principal))


async def revoke_token(db: AsyncSession, principal: Principal, token_id: int) -> None:
    """Revoke one's own token; holders of users.manage may revoke those of users holding
    no permission they lack. Live connections made with it end at once."""
    owner = _owner_id(principal)
    token = await db.get(ApiToken, token_id)
    if token is None or (token.user_id != owner and not is_allowed(principal, "users.manage")):
        raise NotFound("No such API token")
    if token.user_id != owner:
        await require_not_outranked(db, principal, token.user_id)
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        await db.flush()
        await record(
            db, principal, "api_token.revoke", "api_token", token.id, {"user_id": token.user_id}
        )
        emit(db, AccessChanged(user_id=token.user_id))
