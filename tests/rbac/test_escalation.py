"""Nobody hands out, edits or takes away permissions they do not hold themselves."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from realtime_cms.models.auth import Role, User
from tests.support.harness import PASSWORD, Harness

ROLES = "/api/v1/roles"


@dataclass(frozen=True)
class Holder:
    """A signed-in user whose one custom role holds some permissions."""

    user: User
    token: str
    role_id: int


def unique(prefix: str = "r") -> str:
    return f"{prefix}{uuid.uuid4().hex[:12]}"


async def role_id(harness: Harness, name: str) -> int:
    return int(await harness.scalar(sa.select(Role.id).where(Role.name == name)))


async def new_role(harness: Harness, *permissions: str) -> tuple[int, str]:
    body = {"name": unique(), "permissions": list(permissions)}
    response = await harness.call("POST", ROLES, role="admin", json=body)
    assert response.status == 201, await response.text()
    return int((await response.json())["data"]["id"]), str(body["name"])


async def holder_of(harness: Harness, *permissions: str) -> Holder:
    role, name = await new_role(harness, *permissions)
    user = await harness.add_user(unique("u"), name)
    return Holder(user, await harness.login(user.username), role)


async def refused(response: Any, code: str) -> dict[str, Any]:
    body: dict[str, Any] = await response.json()
    assert response.status == 403 and body["code"] == code, body
    return body


async def roles_of(harness: Harness, user_id: int) -> list[str]:
    response = await harness.call("GET", f"/api/v1/users/{user_id}/roles", role="admin")
    return [role["name"] for role in (await response.json())["data"]]


async def permissions_of_role(harness: Harness, role: int) -> list[str]:
    response = await harness.call("GET", f"{ROLES}/{role}", role="admin")
    permissions: list[str] = (await response.json())["data"]["permissions"]
    return permissions


# Granting and revoking roles


async def test_a_role_manager_cannot_grant_themself_the_admin_role(harness: Harness) -> None:
    holder = await holder_of(harness, "roles.manage")
    path = f"/api/v1/users/{holder.user.id}/roles/{await role_id(harness, 'admin')}"
    response = await harness.call("PUT", path, token=holder.token)
    body = await refused(response, "permission_not_held")
    assert "users.manage" in body["detail"]
    assert "admin" not in await roles_of(harness, holder.user.id)


async def test_a_role_manager_cannot_grant_anyone_a_role_carrying_more_than_they_hold(
    harness: Harness,
) -> None:
    holder = await holder_of(harness, "roles.manage", "content.view")
    target = await harness.add_user(unique("u"))
    path = f"/api/v1/users/{target.id}/roles/{await role_id(harness, 'viewer')}"
    await refused(await harness.call("PUT", path, token=holder.token), "permission_not_held")
    assert await roles_of(harness, target.id) == []


async def test_a_role_manager_grants_and_revokes_roles_within_their_own_permissions(
    harness: Harness,
) -> None:
    holder = await holder_of(harness, "roles.manage", "content.view", "sites.view")
    target = await harness.add_user(unique("u"))
    narrow, _ = await new_role(harness, "content.view")
    path = f"/api/v1/users/{target.id}/roles/{narrow}"
    assert (await harness.call("PUT", path, token=holder.token)).status == 204
    assert (await harness.call("DELETE", path, token=holder.token)).status == 204


async def test_a_role_manager_cannot_revoke_a_role_from_someone_holding_more(
    harness: Harness,
) -> None:
    holder = await holder_of(harness, "roles.manage", "content.view")
    narrow, _ = await new_role(harness, "content.view")
    editor = await harness.add_user(unique("u"), "editor")
    granted = await harness.call("PUT", f"/api/v1/users/{editor.id}/roles/{narrow}", role="admin")
    assert granted.status == 204
    for role in (narrow, await role_id(harness, "editor")):
        path = f"/api/v1/users/{editor.id}/roles/{role}"
        await refused(await harness.call("DELETE", path, token=holder.token), "target_outranks_you")
    assert len(await roles_of(harness, editor.id)) == 2


async def test_creating_a_user_with_a_role_above_ones_own_creates_nothing(
    harness: Harness,
) -> None:
    holder = await holder_of(harness, "users.manage", "roles.manage")
    name = unique("u")
    body = {"username": name, "email": f"{name}@example.com", "password": PASSWORD}
    response = await harness.call(
        "POST", "/api/v1/users", token=holder.token, json={**body, "roles": ["admin"]}
    )
    await refused(response, "permission_not_held")
    assert await harness.scalar(sa.select(User.id).where(User.username == name)) is None


# Creating, editing and deleting roles


async def test_a_role_manager_cannot_create_a_role_with_permissions_they_lack(
    harness: Harness,
) -> None:
    holder = await holder_of(harness, "roles.manage")
    name = unique()
    response = await harness.call(
        "POST", ROLES, token=holder.token, json={"name": name, "permissions": ["users.manage"]}
    )
    await refused(response, "permission_not_held")
    assert await harness.scalar(sa.select(Role.id).where(Role.name == name)) is None


async def test_a_role_manager_cannot_add_permissions_they_lack_to_their_own_role(
    harness: Harness,
) -> None:
    holder = await holder_of(harness, "roles.manage")
    response = await harness.call(
        "PATCH",
        f"{ROLES}/{holder.role_id}",
        token=holder.token,
        json={"permissions": ["roles.manage", "users.manage"]},
    )
    await refused(response, "permission_not_held")
    assert await permissions_of_role(harness, holder.role_id) == ["roles.manage"]


async def test_a_role_manager_cannot_edit_or_delete_a_role_carrying_permissions_they_lack(
    harness: Harness,
) -> None:
    holder = await holder_of(harness, "roles.manage", "content.view")
    wider, _ = await new_role(harness, "content.view", "audit.view")
    path = f"{ROLES}/{wider}"
    for method, body in (
        ("PATCH", {"permissions": ["content.view"]}),
        ("PATCH", {"name": unique()}),
        ("DELETE", None),
    ):
        response = await harness.call(method, path, token=holder.token, json=body)
        await refused(response, "permission_not_held")
    assert await permissions_of_role(harness, wider) == ["audit.view", "content.view"]


async def test_a_role_manager_edits_roles_within_their_own_permissions(harness: Harness) -> None:
    holder = await holder_of(harness, "roles.manage", "content.view", "sites.view")
    narrow, _ = await new_role(harness, "content.view")
    path = f"{ROLES}/{narrow}"
    patched = await harness.call(
        "PATCH", path, token=holder.token, json={"permissions": ["sites.view"]}
    )
    assert patched.status == 200, await patched.text()
    assert (await harness.call("DELETE", path, token=holder.token)).status == 204
