"""Who is acting: the authenticated user (or anonymous/system) and what they may do."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

# A level on a live document, lowest first (`realtime_cms.collab.access` applies them).
Level = Literal["read", "write", "admin"]


@dataclass(frozen=True, slots=True)
class Principal:
    """The actor of a request, socket event or task, with its effective permissions."""

    user_id: int | None
    username: str
    permissions: frozenset[str] = frozenset()
    roles: frozenset[str] = frozenset()
    # SHA-256 hex of the login session token, when authenticated by a session.
    session_id: str | None = None
    # Id of the API token, when authenticated by one.
    token_id: int | None = None
    # The highest level this credential may use on any live document, whatever grants and
    # roles give: sessions are not capped ("admin"); an API token is capped by its scopes,
    # None (no document scope) meaning no document access at all.
    document_cap: Level | None = "admin"
    ip: str | None = None
    user_agent: str | None = field(default=None, repr=False)
    # The name other people see (first and last name, else the username): what the server
    # stamps on this caller's presence.
    full_name: str = ""

    @property
    def display_name(self) -> str:
        return self.full_name or self.username

    @property
    def is_authenticated(self) -> bool:
        return self.user_id is not None

    @property
    def is_system(self) -> bool:
        return self.user_id is None and self.username == "system"

    def can(self, permission: str) -> bool:
        return permission in self.permissions


def anonymous(ip: str | None = None, user_agent: str | None = None) -> Principal:
    """The principal of an unauthenticated request."""
    return Principal(user_id=None, username="anonymous", ip=ip, user_agent=user_agent)


def system(permissions: frozenset[str]) -> Principal:
    """The principal of background tasks and CLI commands: every permission, no user."""
    return Principal(user_id=None, username="system", permissions=permissions)
