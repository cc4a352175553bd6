"""Roles over REST: CRUD, protected defaults, grants taking effect at once, and the audit trail."""

from __future__ import annotations

import json
import uuid
from typing import Any

import sqlalchemy as sa

from realtime_cms.models.auth import Role, User, UserRole
from realtime_cms.rbac.catalog import DEFAULT_ROLES, PERMISSIONS
from tests.support.harness import Harness

ROLES = "/api/v1/roles"


def unique(prefix: str = "r") -> str:
    return f"{prefix}{uuid.uuid4().hex[:12]}"


async def body_of(response: Any, status: int) -> Any:
    body = await response.json(content_type=None)
    assert response.status == status, body
    return body


async def create_role(harness: Harness, **fields: Any) -> dict[str, Any]:
    payload = {"name": unique(), "permissions": ["content.view"], **fields}
    created: dict[str, Any] = (
        await body_of(await harness.call("POST", ROLES, role="admin", json=payload), 201)
    )["data"]
    return created


async def role_id(harness: Harness, name: str) -> int:
    return int(await harness.scalar(sa.select(Role.id).where(Role.name == name)))


async def audit_entries(
    harness: Harness, action: str, entity_type: str, entity_id: int
) -> list[Any]:
    params = {
        "filter[action_type]": action,
        "filter[entity_type]": entity_type,
        "filter[entity_id]": str(entity_id),
    }
    response = await harness.call("GET", "/api/v1/audit-log", role="admin", params=params)
    body = await body_of(response, 200)
    entries: list[Any] = body["data"]
    assert all(entry["action_type"] == action for entry in entries)
    return entries


async def the_audit_entry(
    harness: Harness, action: str, entity_type: str, entity_id: int
) -> dict[str, Any]:
    """The newest matching entry (SQLite reuses deleted rows' ids, so older ones may match)."""
    entries = await audit_entries(harness, action, entity_type, entity_id)
    assert entries, (action, entity_type, entity_id)
    entry: dict[str, Any] = entries[0]
    assert entry["user_id"] == harness.users["admin"].id and entry["status"] == "success"
    return entry


async def signed_in_user(harness: Harness, *roles: str) -> tuple[User, str]:
    name = unique("u")
    user = await harness.add_user(name, *roles)
    return user, await harness.login(name)


async def me(harness: Harness, token: str) -> dict[str, Any]:
    data: dict[str, Any] = (
        await body_of(await harness.call("GET", "/api/v1/auth/me", token=token), 200)
    )["data"]
    return data


def grant_path(user_id: int, role: int) -> str:
    return f"/api/v1/users/{user_id}/roles/{role}"


# Create, read, list, change, delete


async def test_an_admin_creates_a_role_with_permissions(harness: Harness) -> None:
    name = unique()
    role = await create_role(
        harness, name=name, description="Reviews", permissions=["versions.view", "content.view"]
    )
    assert role["name"] == name and role["description"] == "Reviews"
    assert role["permissions"] == ["content.view", "versions.view"]
    assert isinstance(role["id"], int) and role["created_at"]


async def test_creating_a_role_is_audited(harness: Harness) -> None:
    role = await create_role(harness, permissions=["sites.view"])
    entry = await the_audit_entry(harness, "role.create", "role", role["id"])
    assert json.loads(entry["details"]) == {"name": role["name"], "permissions": ["sites.view"]}


async def test_a_created_role_can_be_read_back(harness: Harness) -> None:
    role = await create_role(harness, permissions=["analytics.view"])
    read = await body_of(await harness.call("GET", f"{ROLES}/{role['id']}", role="admin"), 200)
    assert read["data"] == role


async def test_reading_an_unknown_role_is_404(harness: Harness) -> None:
    body = await body_of(await harness.call("GET", f"{ROLES}/99999999", role="admin"), 404)
    assert body["code"] == "not_found"


async def test_roles_are_listed_with_their_permissions(harness: Harness) -> None:
    body = await body_of(
        await harness.call("GET", f"{ROLES}?filter[name][in]=admin,viewer", role="admin"), 200
    )
    listed = {role["name"]: role["permissions"] for role in body["data"]}
    assert listed == {"admin": sorted(PERMISSIONS), "viewer": sorted(DEFAULT_ROLES["viewer"][1])}
    assert body["meta"]["total"] == 2


async def test_roles_can_be_filtered_sorted_and_paginated(harness: Harness) -> None:
    prefix = unique("p")
    first = await create_role(harness, name=f"{prefix}-a")
    second = await create_role(harness, name=f"{prefix}-b")
    await create_role(harness, name=f"{prefix}-c")
    query = f"filter[name][contains]={prefix}&sort=-name&limit=2&offset=1"
    body = await body_of(await harness.call("GET", f"{ROLES}?{query}", role="admin"), 200)
    assert [role["name"] for role in body["data"]] == [second["name"], first["name"]]
    assert body["meta"] == {"total": 3, "limit": 2, "offset": 1}


async def test_patching_permissions_replaces_the_whole_set(harness: Harness) -> None:
    role = await create_role(harness, permissions=["content.view", "versions.view"])
    patched = await body_of(
        await harness.call(
            "PATCH",
            f"{ROLES}/{role['id']}",
            role="admin",
            json={"permissions": ["media.upload", "content.view"]},
        ),
        200,
    )
    assert patched["data"]["permissions"] == ["content.view", "media.upload"]
    assert patched["data"]["name"] == role["name"]


async def test_patching_to_no_permissions_empties_the_role(harness: Harness) -> None:
    role = await create_role(harness)
    patched = await body_of(
        await harness.call(
            "PATCH", f"{ROLES}/{role['id']}", role="admin", json={"permissions": []}
        ),
        200,
    )
    assert patched["data"]["permissions"] == []


async def test_a_custom_role_can_be_renamed_and_redescribed(harness: Harness) -> None:
    role = await create_role(harness)
    new_name = unique()
    patched = await body_of(
        await harness.call(
            "PATCH",
            f"{ROLES}/{role['id']}",
            role="admin",
            json={"name": new_name, "description": "Renamed"},
        ),
        200,
    )
    assert (patched["data"]["name"], patched["data"]["description"]) == (new_name, "Renamed")
    assert patched["data"]["permissions"] == role["permissions"]


async def test_changing_a_role_is_audited_with_what_changed(harness: Harness) -> None:
    role = await create_role(harness, permissions=["content.view"])
    new_name = unique()
    response = await harness.call(
        "PATCH",
        f"{ROLES}/{role['id']}",
        role="admin",
        json={"name": new_name, "permissions": ["sites.view"]},
    )
    await body_of(response, 200)
    entry = await the_audit_entry(harness, "role.update", "role", role["id"])
    assert json.loads(entry["details"]) == {
        "name": [role["name"], new_name],
        "permissions": ["sites.view"],
    }


async def test_an_admin_deletes_a_custom_role(harness: Harness) -> None:
    role = await create_role(harness)
    assert (await harness.call("DELETE", f"{ROLES}/{role['id']}", role="admin")).status == 204
    await body_of(await harness.call("GET", f"{ROLES}/{role['id']}", role="admin"), 404)


async def test_deleting_a_role_is_audited(harness: Harness) -> None:
    role = await create_role(harness)
    assert (await harness.call("DELETE", f"{ROLES}/{role['id']}", role="admin")).status == 204
    entry = await the_audit_entry(harness, "role.delete", "role", role["id"])
    assert json.loads(entry["details"]) == {"name": role["name"]}


async def test_deleting_a_granted_role_takes_its_permissions_from_the_holders(
    harness: Harness,
) -> None:
    role = await create_role(harness, permissions=["analytics.view"])
    user, token = await signed_in_user(harness, "viewer")
    assert (await harness.call("PUT", grant_path(user.id, role["id"]), role="admin")).status == 204
    assert "analytics.view" in (await me(harness, token))["permissions"]
    assert (await harness.call("DELETE", f"{ROLES}/{role['id']}", role="admin")).status == 204
    assert "analytics.view" not in (await me(harness, token))["permissions"]
    assert (
        await harness.scalar(
            sa.select(sa.func.count()).select_from(UserRole).where(UserRole.role_id == role["id"])
        )
        == 0
    )


# Refusals


async def test_an_unknown_permission_is_refused_and_no_role_is_created(harness: Harness) -> None:
    name = unique()
    response = await harness.call(
        "POST",
        ROLES,
        role="admin",
        json={"name": name, "permissions": ["content.view", "surely.not"]},
    )
    body = await body_of(response, 400)
    assert body["code"] == "unknown_permission" and "surely.not" in body["detail"]
    assert await harness.scalar(sa.select(Role.id).where(Role.name == name)) is None


async def test_patching_in_an_unknown_permission_is_refused_and_changes_nothing(
    harness: Harness,
) -> None:
    role = await create_role(harness, permissions=["content.view"])
    response = await harness.call(
        "PATCH", f"{ROLES}/{role['id']}", role="admin", json={"permissions": ["surely.not"]}
    )
    assert (await body_of(response, 400))["code"] == "unknown_permission"
    read = await body_of(await harness.call("GET", f"{ROLES}/{role['id']}", role="admin"), 200)
    assert read["data"]["permissions"] == ["content.view"]


async def test_a_malformed_role_name_fails_validation(harness: Harness) -> None:
    for name in ("Upper", "1digit", "has space", "x", "a" * 51):
        response = await harness.call("POST", ROLES, role="admin", json={"name": name})
        assert (await body_of(response, 422))["code"] == "validation_failed", name


async def test_a_duplicate_role_name_is_a_conflict(harness: Harness) -> None:
    role = await create_role(harness)
    response = await harness.call("POST", ROLES, role="admin", json={"name": role["name"]})
    assert (await body_of(response, 409))["code"] == "role_exists"


async def test_renaming_onto_an_existing_name_is_a_conflict(harness: Harness) -> None:
    first, second = await create_role(harness), await create_role(harness)
    response = await harness.call(
        "PATCH", f"{ROLES}/{second['id']}", role="admin", json={"name": first["name"]}
    )
    assert (await body_of(response, 409))["code"] == "role_exists"


async def test_default_roles_cannot_be_renamed(harness: Harness) -> None:
    for name in DEFAULT_ROLES:
        response = await harness.call(
            "PATCH",
            f"{ROLES}/{await role_id(harness, name)}",
            role="admin",
            json={"name": unique()},
        )
        assert (await body_of(response, 409))["code"] == "role_protected", name


async def test_default_roles_cannot_be_deleted(harness: Harness) -> None:
    for name in DEFAULT_ROLES:
        response = await harness.call(
            "DELETE", f"{ROLES}/{await role_id(harness, name)}", role="admin"
        )
        assert (await body_of(response, 409))["code"] == "role_protected", name
    assert (
        await harness.scalar(
            sa.select(sa.func.count()).select_from(Role).where(Role.name.in_(DEFAULT_ROLES))
        )
        == 4
    )


async def test_the_admin_roles_permissions_cannot_be_changed(harness: Harness) -> None:
    admin = await role_id(harness, "admin")
    response = await harness.call(
        "PATCH", f"{ROLES}/{admin}", role="admin", json={"permissions": ["content.view"]}
    )
    assert (await body_of(response, 409))["code"] == "role_protected"
    read = await body_of(await harness.call("GET", f"{ROLES}/{admin}", role="admin"), 200)
    assert read["data"]["permissions"] == sorted(PERMISSIONS)


async def test_a_default_roles_description_can_still_be_changed(harness: Harness) -> None:
    author = await role_id(harness, "author")
    description = f"Writes their own content ({unique()})"
    response = await harness.call(
        "PATCH", f"{ROLES}/{author}", role="admin", json={"description": description}
    )
    assert (await body_of(response, 200))["data"]["description"] == description


async def test_an_editor_cannot_manage_roles(harness: Harness) -> None:
    response = await harness.call("POST", ROLES, role="editor", json={"name": unique()})
    assert (await body_of(response, 403))["code"] == "permission_denied"


# Grants


async def test_a_granted_role_takes_effect_on_the_users_next_request(harness: Harness) -> None:
    user, token = await signed_in_user(harness, "viewer")
    assert "content.create" not in (await me(harness, token))["permissions"]
    editor = await role_id(harness, "editor")
    assert (await harness.call("PUT", grant_path(user.id, editor), role="admin")).status == 204
    after = await me(harness, token)
    assert after["roles"] == ["editor", "viewer"]
    assert set(DEFAULT_ROLES["editor"][1]) <= set(after["permissions"])


async def test_granting_a_role_is_audited_once_even_when_repeated(harness: Harness) -> None:
    user, _ = await signed_in_user(harness, "viewer")
    author = await role_id(harness, "author")
    for _ in range(2):
        assert (await harness.call("PUT", grant_path(user.id, author), role="admin")).status == 204
    entries = await audit_entries(harness, "role.grant", "user", user.id)
    assert [json.loads(entry["details"]) for entry in entries] == [{"role": "author"}]


async def test_a_revoked_role_stops_granting_on_the_users_next_request(harness: Harness) -> None:
    user, token = await signed_in_user(harness, "viewer", "editor")
    editor = await role_id(harness, "editor")
    assert (await harness.call("DELETE", grant_path(user.id, editor), role="admin")).status == 204
    after = await me(harness, token)
    assert after["roles"] == ["viewer"] and "content.create" not in after["permissions"]


async def test_revoking_a_role_is_audited(harness: Harness) -> None:
    user, _ = await signed_in_user(harness, "viewer", "author")
    assert (
        await harness.call(
            "DELETE", grant_path(user.id, await role_id(harness, "author")), role="admin"
        )
    ).status == 204
    entry = await the_audit_entry(harness, "role.revoke", "user", user.id)
    assert json.loads(entry["details"]) == {"role": "author"}


async def test_granting_to_an_unknown_user_or_role_is_404(harness: Harness) -> None:
    viewer = await role_id(harness, "viewer")
    await body_of(await harness.call("PUT", grant_path(99999999, viewer), role="admin"), 404)
    await body_of(
        await harness.call("PUT", grant_path(harness.users["viewer"].id, 99999999), role="admin"),
        404,
    )


async def test_revoking_a_role_the_user_does_not_hold_is_404(harness: Harness) -> None:
    user, _ = await signed_in_user(harness, "viewer")
    response = await harness.call(
        "DELETE", grant_path(user.id, await role_id(harness, "editor")), role="admin"
    )
    await body_of(response, 404)


async def test_an_admin_cannot_revoke_their_own_admin_role(harness: Harness) -> None:
    admin = harness.users["admin"]
    response = await harness.call(
        "DELETE", grant_path(admin.id, await role_id(harness, "admin")), role="admin"
    )
    assert (await body_of(response, 409))["code"] == "self_lockout"


async def test_revoking_the_last_admins_admin_role_is_refused(harness: Harness) -> None:
    admin_role = await role_id(harness, "admin")
    active_admins = await harness.scalar(
        sa.select(sa.func.count())
        .select_from(UserRole)
        .join(User, User.id == UserRole.user_id)
        .where(UserRole.role_id == admin_role, User.is_active.is_(True))
    )
    assert active_admins == 1
    # Every permission without the admin role: someone holding less may not touch an admin,
    # and the admin themself is refused by the self-lockout rule.
    manager = await create_role(harness, permissions=sorted(PERMISSIONS))
    user, token = await signed_in_user(harness)
    assert (
        await harness.call("PUT", grant_path(user.id, manager["id"]), role="admin")
    ).status == 204
    response = await harness.call(
        "DELETE", grant_path(harness.users["admin"].id, admin_role), token=token
    )
    assert (await body_of(response, 409))["code"] == "last_admin"
    assert "admin" in (await me(harness, harness.tokens["admin"]))["roles"]
