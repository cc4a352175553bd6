"""The principals of the authorization matrix: who calls, and what the matrix expects of them.

Their permissions are written down here from the catalog (`DEFAULT_ROLES`), not read back
from the server, so a server that resolved a principal to more than its roles give would
be caught rather than believed.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from realtime_cms.models.auth import User
from realtime_cms.rbac.catalog import DEFAULT_ROLES
from tests.support.harness import Harness

# A custom role managing users and roles without being admin: the shape of the findings.
CUSTOM_PERMISSIONS = frozenset({"users.manage", "roles.manage", "content.view"})
# An editor's API token for a read-only integration: no document scope.
TOKEN_OWNER_ROLE = "editor"
TOKEN_SCOPES = ("content.view", "users.view")
PRINCIPALS = ("anonymous", "admin", "editor", "author", "viewer", "norole", "custom", "token")


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


@dataclass
class Who:
    """One principal: its user (None when anonymous), bearer and effective permissions."""

    name: str
    permissions: frozenset[str]
    user: User | None = None
    bearer: str | None = None
    # The role names a clone of this principal gets (see `clone_bearer`).
    roles: tuple[str, ...] = ()
    # Set for the principal authenticated by an API token: the token's scopes.
    token_scopes: tuple[str, ...] | None = None

    @property
    def anonymous(self) -> bool:
        return self.user is None

    @property
    def is_token(self) -> bool:
        return self.token_scopes is not None


async def api_token(harness: Harness, session: str, scopes: tuple[str, ...]) -> str:
    response = await harness.call(
        "POST", "/api/v1/auth/tokens", token=session, json={"name": "matrix", "scopes": scopes}
    )
    body = await response.json()
    assert response.status == 201, body
    return str(body["data"]["token"])


async def custom_role(harness: Harness) -> str:
    name = unique("matrix-custom-")
    body = {"name": name, "permissions": sorted(CUSTOM_PERMISSIONS)}
    response = await harness.call("POST", "/api/v1/roles", role="admin", json=body)
    assert response.status == 201, await response.text()
    return name


async def principals(harness: Harness) -> dict[str, Who]:
    """Every principal of the matrix, signed in."""
    found = {"anonymous": Who("anonymous", frozenset())}
    for role in ("admin", "editor", "author", "viewer"):
        found[role] = Who(
            role,
            DEFAULT_ROLES[role][1],
            harness.users[role],
            harness.tokens[role],
            roles=(role,),
        )
    for name, roles, permissions in (
        ("norole", (), frozenset[str]()),
        ("custom", (await custom_role(harness),), CUSTOM_PERMISSIONS),
    ):
        user = await harness.add_user(unique(f"matrix-{name}-"), *roles)
        found[name] = Who(name, permissions, user, await harness.login(user.username), roles)
    owner = await harness.add_user(unique("matrix-owner-"), TOKEN_OWNER_ROLE)
    found["token"] = Who(
        "token",
        DEFAULT_ROLES[TOKEN_OWNER_ROLE][1] & frozenset(TOKEN_SCOPES),
        owner,
        await api_token(harness, await harness.login(owner.username), TOKEN_SCOPES),
        roles=(TOKEN_OWNER_ROLE,),
        token_scopes=TOKEN_SCOPES,
    )
    return found


async def clone_bearer(harness: Harness, who: Who) -> str:
    """A credential of a new user with the same roles (and token scopes) as `who`.

    For the calls that end or change the caller's own credentials (logging out, changing
    one's password), which must not spend the principal the rest of the matrix uses.
    """
    user = await harness.add_user(unique(f"matrix-{who.name}-"), *who.roles)
    session = await harness.login(user.username)
    if who.token_scopes is None:
        return session
    return await api_token(harness, session, who.token_scopes)
