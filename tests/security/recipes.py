"""How to call every REST operation so that it reaches its permission check, and who may.

A recipe answers the path parameters and body of a call that succeeds for a principal the
operation allows: the shared fixtures for reads and idempotent changes, fresh ones for
calls that use them up. Operations declaring a permission are judged by it alone; the
others (self-service, ownership, document levels) have an explicit rule in `RULES`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from realtime_cms.collab.access import Level
from tests.security.principals import Who, unique
from tests.security.world import DOCUMENT_GRANTS, World, an_update
from tests.support.harness import PASSWORD

NEW_PASSWORD = "another correct horse battery"
LEVELS: tuple[Level, ...] = ("read", "write", "admin")


@dataclass(frozen=True)
class Request:
    """One call's inputs; `as_clone` sends it with a clone's credential (`clone_bearer`)."""

    params: Mapping[str, object] = field(default_factory=dict)
    json: Any = None
    data: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    query: Mapping[str, str] = field(default_factory=dict)
    as_clone: bool = False


Recipe = Callable[[World, Who], Awaitable[Request]]
Rule = Callable[[World, Who], bool]
RECIPES: dict[str, Recipe] = {}


def recipe(*operation_ids: str) -> Callable[[Recipe], Recipe]:
    def register(make: Recipe) -> Recipe:
        for operation_id in operation_ids:
            assert operation_id not in RECIPES, operation_id
            RECIPES[operation_id] = make
        return make

    return register


@recipe(
    "me",
    "request_verification",
    "list_tokens",
    "list_users",
    "list_roles",
    "list_permissions",
    "list_sites",
    "list_audit_log",
    "list_content_types",
    "list_categories",
    "category_tree",
    "list_tags",
    "list_content_items",
    "list_history",
    "list_notifications",
    "get_unread_counts",
    "mark_all_notifications_read",
    "get_notification_preferences",
    "list_notification_templates",
    "list_notification_categories",
    "list_worker_notifications",
)
async def no_inputs(world: World, who: Who) -> Request:
    return Request()


# Signing in and one's own account


@recipe("login")
async def login(world: World, who: Who) -> Request:
    return Request(json={"login": world.login_name, "password": PASSWORD})


@recipe("logout", "logout_everywhere")
async def logout(world: World, who: Who) -> Request:
    return Request(as_clone=True)


@recipe("resume")
async def resume(world: World, who: Who) -> Request:
    return Request(json={"token": await world.new_remember_token()})


@recipe("change_password")
async def change_password(world: World, who: Who) -> Request:
    body = {"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    return Request(json=body, as_clone=True)


@recipe("request_reset")
async def request_reset(world: World, who: Who) -> Request:
    return Request(json={"email": f"{unique('nobody-')}@example.com"})


@recipe("confirm_reset")
async def confirm_reset(world: World, who: Who) -> Request:
    return Request(json={"token": await world.new_reset_token(), "password": NEW_PASSWORD})


@recipe("confirm_verification")
async def confirm_verification(world: World, who: Who) -> Request:
    return Request(json={"token": await world.new_verification_token()})


@recipe("create_token")
async def create_token(world: World, who: Who) -> Request:
    return Request(json={"name": "matrix", "scopes": ["documents.read"]})


@recipe("revoke_token")
async def revoke_token(world: World, who: Who) -> Request:
    return Request({"token_id": await world.new_api_token(who)})


# Users and roles


@recipe("create_user")
async def create_user(world: World, who: Who) -> Request:
    name = unique("created-")
    return Request(json={"username": name, "email": f"{name}@example.com", "password": PASSWORD})


@recipe("get_user", "list_user_roles")
async def target_user(world: World, who: Who) -> Request:
    return Request({"user_id": world.target_id})


@recipe("update_user")
async def update_user(world: World, who: Who) -> Request:
    return Request({"user_id": world.target_id}, json={"first_name": "Ada"})


@recipe("delete_user", "deactivate_user")
async def fresh_user(world: World, who: Who) -> Request:
    return Request({"user_id": (await world.new_user()).id})


@recipe("activate_user")
async def inactive_user(world: World, who: Who) -> Request:
    return Request({"user_id": (await world.new_user(active=False)).id})


@recipe("set_password")
async def set_password(world: World, who: Who) -> Request:
    return Request({"user_id": (await world.new_user()).id}, json={"password": NEW_PASSWORD})


@recipe("grant_role")
async def grant_role(world: World, who: Who) -> Request:
    return Request({"user_id": (await world.new_user()).id, "role_id": world.narrow_role_id})


@recipe("revoke_role")
async def revoke_role(world: World, who: Who) -> Request:
    holder = await world.new_user(role_id=world.narrow_role_id)
    return Request({"user_id": holder.id, "role_id": world.narrow_role_id})


@recipe("create_role")
async def create_role(world: World, who: Who) -> Request:
    return Request(json={"name": unique("created-role-"), "permissions": ["content.view"]})


@recipe("get_role")
async def narrow_role(world: World, who: Who) -> Request:
    return Request({"role_id": world.narrow_role_id})


@recipe("update_role")
async def update_role(world: World, who: Who) -> Request:
    return Request({"role_id": world.narrow_role_id}, json={"description": "Reads content"})


@recipe("delete_role")
async def delete_role(world: World, who: Who) -> Request:
    return Request({"role_id": await world.new_role()})


# Sites and the audit log


@recipe("create_site")
async def create_site(world: World, who: Who) -> Request:
    return Request(json={"name": unique("Site "), "domain": f"{unique('c')}.example.com"})


@recipe("get_site", "list_members")
async def content_site(world: World, who: Who) -> Request:
    return Request({"site_id": world.site_id})


@recipe("update_site")
async def update_site(world: World, who: Who) -> Request:
    return Request({"site_id": world.members_site_id}, json={"name": unique("Renamed ")})


@recipe("delete_site")
async def delete_site(world: World, who: Who) -> Request:
    return Request({"site_id": await world.new_site()})


@recipe("add_member")
async def add_member(world: World, who: Who) -> Request:
    return Request({"site_id": world.members_site_id, "user_id": world.target_id})


@recipe("remove_member")
async def remove_member(world: World, who: Who) -> Request:
    return Request({"site_id": world.members_site_id, "user_id": await world.new_member()})


# Documents


@recipe(
    "get_document",
    "get_document_state",
    "list_document_permissions",
    "get_document_presence",
    "post_ws_ticket",
)
async def document(world: World, who: Who) -> Request:
    return Request({"document_id": world.document_id})


@recipe("post_document_update")
async def post_document_update(world: World, who: Who) -> Request:
    return Request(
        {"document_id": world.document_id},
        data=an_update(),
        headers={"Content-Type": "application/octet-stream"},
    )


@recipe("put_document_permission")
async def put_document_permission(world: World, who: Who) -> Request:
    params = {"document_id": world.document_id, "user_id": world.grantee_id}
    return Request(params, json={"level": "read"})


@recipe("delete_document_permission")
async def delete_document_permission(world: World, who: Who) -> Request:
    return Request({"document_id": world.document_id, "user_id": await world.new_grant()})


# Notifications


@recipe("get_notification")
async def own_notification(world: World, who: Who) -> Request:
    return Request({"notification_id": await world.new_notification(who)})


@recipe("mark_notifications_read")
async def mark_read(world: World, who: Who) -> Request:
    return Request(json={"ids": [await world.new_notification(who)]})


@recipe("put_notification_preferences")
async def preferences(world: World, who: Who) -> Request:
    default = {"category_id": None, "channels": ["in_app"], "frequency": "immediate"}
    return Request(json={"preferences": [default]})


@recipe("send_notification")
async def send_notification(world: World, who: Who) -> Request:
    body = {"title": "Hello", "message": "From the matrix", "user_ids": [world.target_id]}
    return Request(json=body)


@recipe("create_notification_template")
async def create_template(world: World, who: Who) -> Request:
    body = {"name": unique("tpl-"), "subject_template": "Hi", "body_template": "Hello"}
    return Request(json=body)


@recipe("get_notification_template")
async def template(world: World, who: Who) -> Request:
    return Request({"template_id": world.template_id})


@recipe("update_notification_template")
async def update_template(world: World, who: Who) -> Request:
    return Request({"template_id": world.template_id}, json={"description": "Greets"})


@recipe("delete_notification_template")
async def delete_template(world: World, who: Who) -> Request:
    return Request({"template_id": await world.new_template()})


@recipe("create_notification_category")
async def create_notification_category(world: World, who: Who) -> Request:
    return Request(json={"name": unique("Category ")})


@recipe("get_notification_category")
async def notification_category(world: World, who: Who) -> Request:
    return Request({"category_id": world.notification_category_id})


@recipe("update_notification_category")
async def update_notification_category(world: World, who: Who) -> Request:
    params = {"category_id": world.notification_category_id}
    return Request(params, json={"description": "Matrix news"})


@recipe("delete_notification_category")
async def delete_notification_category(world: World, who: Who) -> Request:
    return Request({"category_id": await world.new_notification_category()})


# Who may call the operations that declare no permission


def signed_in(world: World, who: Who) -> bool:
    """Self-service: every signed-in principal may, on its own things."""
    return True


def from_a_session(world: World, who: Who) -> bool:
    return not who.is_token


def _on_own_item(world: World, who: Who, action: str) -> bool:
    """`action` on any item, or `action.own` on the item the author wrote."""
    own = who.user is not None and who.user.id == world.harness.users["author"].id
    return action in who.permissions or (own and f"{action}.own" in who.permissions)


def may_update_item(world: World, who: Who) -> bool:
    return _on_own_item(world, who, "content.update")


def may_delete_item(world: World, who: Who) -> bool:
    return _on_own_item(world, who, "content.delete")


def document_level(who: Who) -> Level | None:
    """The level the matrix expects on its document: an API token without a document scope
    reaches no document, whatever its owner holds; otherwise `documents.admin` or a grant."""
    if who.is_token:
        return None
    if "documents.admin" in who.permissions:
        return "admin"
    level = DOCUMENT_GRANTS.get(who.name)
    return next((known for known in LEVELS if known == level), None)


def level_at_least(minimum: Level) -> Rule:
    def rule(world: World, who: Who) -> bool:
        level = document_level(who)
        return level is not None and LEVELS.index(level) >= LEVELS.index(minimum)

    return rule


RULES: dict[str, Rule] = {
    **dict.fromkeys(
        (
            "logout",
            "logout_everywhere",
            "me",
            "change_password",
            "request_verification",
            "list_tokens",
            "revoke_token",
            "list_notifications",
            "get_unread_counts",
            "get_notification",
            "mark_notifications_read",
            "mark_all_notifications_read",
            "get_notification_preferences",
            "put_notification_preferences",
        ),
        signed_in,
    ),
    "create_token": from_a_session,
    **dict.fromkeys(
        (
            "update_content_item",
            "put_content_item_fields",
            "put_content_item_categories",
            "put_content_item_tags",
            "create_version",
        ),
        may_update_item,
    ),
    "delete_content_item": may_delete_item,
    **dict.fromkeys(
        ("get_document", "get_document_state", "get_document_presence", "post_ws_ticket"),
        level_at_least("read"),
    ),
    "post_document_update": level_at_least("write"),
    **dict.fromkeys(
        ("list_document_permissions", "put_document_permission", "delete_document_permission"),
        level_at_least("admin"),
    ),
}
