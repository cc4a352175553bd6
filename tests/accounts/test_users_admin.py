"""Administering users: creation with roles, changes, (de)activation, passwords, the last admin."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from realtime_cms.models.analytics import AuditLog
from realtime_cms.models.auth import User
from realtime_cms.rbac.catalog import PERMISSIONS
from tests.accounts.support import assert_all_revoked, new_api_token, sign_in_everywhere, unique
from tests.support.harness import PASSWORD, Harness

NEW_PASSWORD = "a brand new passphrase"


async def create(harness: Harness, role: str = "admin", **fields: Any) -> Any:
    name = fields.pop("username", unique())
    body = {"username": name, "email": f"{name}@example.com", "password": PASSWORD, **fields}
    return await harness.call("POST", "/api/v1/users", role=role, json=body)


async def created_user(harness: Harness, **fields: Any) -> dict[str, Any]:
    """A new user (a viewer unless `roles` says otherwise), created through the API."""
    response = await create(harness, **{"roles": ["viewer"], **fields})
    assert response.status == 201, await response.text()
    user: dict[str, Any] = (await response.json())["data"]
    return user


async def role_id(harness: Harness, name: str) -> int:
    response = await harness.call("GET", f"/api/v1/roles?filter[name]={name}", role="admin")
    return int((await response.json())["data"][0]["id"])


async def test_an_admin_creates_a_user_with_a_role_and_the_grant_is_audited(
    harness: Harness,
) -> None:
    user = await created_user(harness, roles=["editor"], first_name="Ada")
    assert user["first_name"] == "Ada" and user["is_active"] is True
    assert not {"password", "password_reset_token"} & set(user)
    roles = await harness.call("GET", f"/api/v1/users/{user['id']}/roles", role="admin")
    assert [role["name"] for role in (await roles.json())["data"]] == ["editor"]
    grant = await harness.scalar(
        sa.select(AuditLog).where(
            AuditLog.action_type == "role.grant", AuditLog.entity_id == user["id"]
        )
    )
    assert grant is not None and grant.user_id == harness.users["admin"].id
    assert (await harness.login(user["username"])).startswith("rcs_")


async def test_granting_and_revoking_a_role_by_id(harness: Harness) -> None:
    user = await created_user(harness, roles=[])
    path = f"/api/v1/users/{user['id']}/roles/{await role_id(harness, 'author')}"
    assert (await harness.call("PUT", path, role="admin")).status == 204
    me = await harness.call("GET", "/api/v1/auth/me", token=await harness.login(user["username"]))
    assert (await me.json())["data"]["roles"] == ["author"]
    assert (await harness.call("DELETE", path, role="admin")).status == 204
    assert (await harness.call("DELETE", path, role="admin")).status == 404
    assert (await harness.call("PUT", path, role="editor")).status == 403


async def test_viewing_needs_users_view_and_changing_needs_users_manage(harness: Harness) -> None:
    assert (await harness.call("GET", "/api/v1/users", role="editor")).status == 200
    assert (await harness.call("GET", "/api/v1/users", role="author")).status == 403
    assert (await create(harness, role="editor")).status == 403


async def test_users_can_be_filtered_and_sorted(harness: Harness) -> None:
    user = await created_user(harness)
    response = await harness.call(
        "GET",
        f"/api/v1/users?filter[username]={user['username']}&filter[is_active]=true&sort=-id",
        role="admin",
    )
    body = await response.json()
    assert body["meta"]["total"] == 1 and body["data"][0]["id"] == user["id"]
    bad = await harness.call("GET", "/api/v1/users?filter[password]=x", role="admin")
    assert bad.status == 400


async def test_usernames_and_emails_are_unique_regardless_of_case(harness: Harness) -> None:
    user = await created_user(harness)
    same_name = await create(harness, username=user["username"].upper())
    same_email = await create(harness, email=user["email"].upper())
    assert same_name.status == same_email.status == 409
    assert (await same_name.json())["code"] == "username_taken"
    assert (await same_email.json())["code"] == "email_taken"


async def test_creation_enforces_the_password_policy_and_a_strict_body(harness: Harness) -> None:
    name = unique()
    assert (await create(harness, username=name, password="too short")).status == 422
    assert (await create(harness, username=name, password=name)).status == 422
    assert (await create(harness, is_admin=True)).status == 422
    assert (await create(harness, is_active="yes")).status == 422
    assert (await create(harness, email="not-an-email")).status == 422


async def test_patch_changes_only_the_fields_sent(harness: Harness) -> None:
    user = await created_user(harness, first_name="Ada", last_name="Lovelace")
    response = await harness.call(
        "PATCH", f"/api/v1/users/{user['id']}", role="admin", json={"first_name": None}
    )
    body = (await response.json())["data"]
    assert response.status == 200
    assert body["first_name"] is None and body["last_name"] == "Lovelace"


async def test_deactivation_invalidates_every_credential(harness: Harness) -> None:
    user = await created_user(harness)
    tokens = await sign_in_everywhere(harness, user["username"])
    path = f"/api/v1/users/{user['id']}"
    response = await harness.call("POST", f"{path}/deactivate", role="admin")
    assert response.status == 200 and (await response.json())["data"]["is_active"] is False
    await assert_all_revoked(harness, tokens)
    assert (await harness.call("POST", f"{path}/activate", role="admin")).status == 200
    await assert_all_revoked(harness, tokens)
    assert (await harness.login(user["username"])).startswith("rcs_")


async def test_deactivating_through_patch_also_revokes(harness: Harness) -> None:
    user = await created_user(harness)
    tokens = await sign_in_everywhere(harness, user["username"])
    response = await harness.call(
        "PATCH", f"/api/v1/users/{user['id']}", role="admin", json={"is_active": False}
    )
    assert response.status == 200
    await assert_all_revoked(harness, tokens)


async def test_an_admin_password_reset_invalidates_the_users_credentials(
    harness: Harness,
) -> None:
    user = await created_user(harness)
    tokens = await sign_in_everywhere(harness, user["username"])
    response = await harness.call(
        "POST",
        f"/api/v1/users/{user['id']}/password",
        role="admin",
        json={"password": NEW_PASSWORD},
    )
    assert response.status == 204
    await assert_all_revoked(harness, tokens)
    assert (await harness.login(user["username"], NEW_PASSWORD)).startswith("rcs_")


async def test_changing_ones_own_password_keeps_only_the_current_session(harness: Harness) -> None:
    user = await created_user(harness)
    current = await harness.login(user["username"])
    others = await sign_in_everywhere(harness, user["username"])
    response = await harness.call(
        "POST",
        "/api/v1/auth/password",
        token=current,
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
    )
    assert response.status == 204
    assert (await harness.call("GET", "/api/v1/auth/me", token=current)).status == 200
    await assert_all_revoked(harness, others)


async def test_changing_ones_own_password_needs_the_current_one(harness: Harness) -> None:
    user = await created_user(harness)
    session = await harness.login(user["username"])
    response = await harness.call(
        "POST",
        "/api/v1/auth/password",
        token=session,
        json={"current_password": "not my password", "new_password": NEW_PASSWORD},
    )
    assert response.status == 403 and (await response.json())["code"] == "wrong_password"
    assert (await harness.login(user["username"])).startswith("rcs_")


async def test_admins_cannot_lock_themselves_out(harness: Harness) -> None:
    own = f"/api/v1/users/{harness.users['admin'].id}"
    for method, path in (("POST", f"{own}/deactivate"), ("DELETE", own)):
        response = await harness.call(method, path, role="admin")
        assert response.status == 409 and (await response.json())["code"] == "self_lockout"


async def signed_in_manager(harness: Harness, *permissions: str) -> str:
    """A session of a new user whose one custom role holds `permissions`."""
    role = unique()
    created = await harness.call(
        "POST", "/api/v1/roles", role="admin", json={"name": role, "permissions": permissions}
    )
    assert created.status == 201, await created.text()
    manager = unique()
    await harness.add_user(manager, role)
    return await harness.login(manager)


async def test_the_last_active_admin_cannot_be_deactivated_or_deleted(harness: Harness) -> None:
    # Someone holding every permission without the admin role: nobody else may act on an admin.
    token = await signed_in_manager(harness, *PERMISSIONS)
    admin = f"/api/v1/users/{harness.users['admin'].id}"
    for method, path, body in (
        ("POST", f"{admin}/deactivate", None),
        ("PATCH", admin, {"is_active": False}),
        ("DELETE", admin, None),
    ):
        response = await harness.call(method, path, token=token, json=body)
        assert response.status == 409 and (await response.json())["code"] == "last_admin"
    assert (await harness.call("GET", "/api/v1/auth/me", role="admin")).status == 200


async def test_deleting_a_user_is_audited(harness: Harness) -> None:
    user = await created_user(harness)
    path = f"/api/v1/users/{user['id']}"
    assert (await harness.call("DELETE", path, role="admin")).status == 204
    assert (await harness.call("GET", path, role="admin")).status == 404
    entry = await harness.scalar(
        sa.select(AuditLog).where(
            AuditLog.action_type == "user.delete", AuditLog.entity_id == user["id"]
        )
    )
    assert entry is not None and user["username"] in (entry.details or "")


# Nobody changes an account holding permissions they lack


async def assert_outranked(response: Any) -> None:
    body = await response.json()
    assert response.status == 403 and body["code"] == "target_outranks_you", body


async def test_a_user_manager_cannot_set_an_admins_password(harness: Harness) -> None:
    token = await signed_in_manager(harness, "users.view", "users.manage")
    admin = await harness.add_user(unique(), "admin")
    response = await harness.call(
        "POST", f"/api/v1/users/{admin.id}/password", token=token, json={"password": NEW_PASSWORD}
    )
    await assert_outranked(response)
    assert (await harness.login(admin.username)).startswith("rcs_")


async def test_a_user_manager_cannot_change_an_admins_email_or_name(harness: Harness) -> None:
    token = await signed_in_manager(harness, "users.view", "users.manage")
    admin = await harness.add_user(unique(), "admin")
    for change in ({"email": f"{unique()}@example.com"}, {"username": unique()}):
        response = await harness.call(
            "PATCH", f"/api/v1/users/{admin.id}", token=token, json=change
        )
        await assert_outranked(response)
    stored = await harness.scalar(sa.select(User).where(User.id == admin.id))
    assert (stored.email, stored.username) == (admin.email, admin.username)


async def test_a_user_manager_cannot_deactivate_or_delete_someone_holding_more(
    harness: Harness,
) -> None:
    token = await signed_in_manager(harness, "users.view", "users.manage")
    editor = await harness.add_user(unique(), "editor")
    path = f"/api/v1/users/{editor.id}"
    for method, suffix, body in (
        ("POST", "/deactivate", None),
        ("PATCH", "", {"is_active": False}),
        ("DELETE", "", None),
    ):
        await assert_outranked(await harness.call(method, path + suffix, token=token, json=body))
    assert (await harness.login(editor.username)).startswith("rcs_")


async def test_a_user_manager_cannot_reactivate_someone_holding_more(harness: Harness) -> None:
    token = await signed_in_manager(harness, "users.view", "users.manage")
    admin = await harness.add_user(unique(), "admin", is_active=False)
    response = await harness.call("POST", f"/api/v1/users/{admin.id}/activate", token=token)
    await assert_outranked(response)
    assert await harness.scalar(sa.select(User.is_active).where(User.id == admin.id)) is False


async def test_a_user_manager_still_manages_users_holding_nothing_more(harness: Harness) -> None:
    token = await signed_in_manager(harness, "users.view", "users.manage", "sites.view")
    peer = await harness.add_user(unique())
    path = f"/api/v1/users/{peer.id}"
    patched = await harness.call("PATCH", path, token=token, json={"first_name": "Grace"})
    assert patched.status == 200, await patched.text()
    password = await harness.call(
        "POST", f"{path}/password", token=token, json={"password": NEW_PASSWORD}
    )
    assert password.status == 204
    assert (await harness.call("POST", f"{path}/deactivate", token=token)).status == 200
    assert (await harness.call("DELETE", path, token=token)).status == 204


async def test_an_admins_api_token_acts_with_its_scopes_not_the_admins_permissions(
    harness: Harness,
) -> None:
    created = await new_api_token(harness, harness.tokens["admin"], ["users.view", "users.manage"])
    assert created.status == 201
    token = (await created.json())["data"]["token"]
    editor = await harness.add_user(unique(), "editor")
    response = await harness.call(
        "POST", f"/api/v1/users/{editor.id}/password", token=token, json={"password": NEW_PASSWORD}
    )
    await assert_outranked(response)
