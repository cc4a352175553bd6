"""What the matrix's calls act on, made once per module, and fresh things for calls that use
them up (a deleted user, a revoked grant), so every call reaches its permission check."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import pycrdt

from handlers import keys
from realtime_cms.db import transaction
from realtime_cms.models.auth import ApiToken, EmailVerificationToken, User, UserRole
from realtime_cms.models.base import Base, utcnow
from realtime_cms.models.notifications import Notification
from realtime_cms.models.realtime import DocumentPermission
from realtime_cms.models.sites import SiteUser
from realtime_cms.security.tokens import (
    API_TOKEN_PREFIX,
    ONE_TIME_PREFIX,
    hash_token,
    hash_token_short,
    new_token,
)
from tests.security.principals import Who, unique
from tests.support.harness import PASSWORD, Harness

Row = TypeVar("Row", bound=Base)

# Explicit document grants of the matrix's document, by principal. The token's owner holds
# admin there; the token itself has no document scope.
DOCUMENT_GRANTS = {"editor": "admin", "author": "write", "viewer": "read", "token": "admin"}


def an_update() -> bytes:
    """A Yjs update adding some text to the `body` root."""
    doc: pycrdt.Doc = pycrdt.Doc()
    doc.get("body", type=pycrdt.Text).insert(0, "matrix")
    return doc.get_update()


@dataclass
class World:
    """The shared fixtures; `new_*` methods make fresh ones."""

    harness: Harness
    who: dict[str, Who]
    site_id: int = 0
    members_site_id: int = 0
    type_id: int = 0
    field_id: int = 0
    category_id: int = 0
    tag_id: int = 0
    item_id: int = 0
    version_ids: tuple[int, int] = (0, 0)
    published: tuple[str, str] = ("", "")
    target_id: int = 0
    narrow_role_id: int = 0
    template_id: int = 0
    notification_category_id: int = 0
    document_id: str = ""
    grantee_id: int = 0
    login_name: str = ""

    async def as_role(self, role: str, method: str, path: str, json: Any = None) -> Any:
        """Call as a default role's user and answer `data`, which must be a success."""
        response = await self.harness.call(method, path, role=role, json=json)
        assert response.status < 300, (method, path, await response.text())
        return None if response.status == 204 else (await response.json())["data"]

    async def admin(self, method: str, path: str, json: Any = None) -> Any:
        return await self.as_role("admin", method, path, json)

    async def add(self, row: Row) -> Row:
        async with transaction(self.harness.app[keys.SESSIONS]) as db:
            db.add(row)
            await db.flush()
        return row

    def user_of(self, who: Who) -> User:
        """The user behind `who`; for anonymous calls (refused anyway), the admin."""
        return who.user or self.harness.users["admin"]

    # Fresh things, one per call that spends them

    async def new_user(self, *, active: bool = True, role_id: int | None = None) -> User:
        name = unique("target-")
        user = await self.add(
            User(username=name, email=f"{name}@example.com", password="-", is_active=active)
        )
        if role_id is not None:
            await self.add(UserRole(user_id=user.id, role_id=role_id))
        return user

    async def new_role(self) -> int:
        body = {"name": unique("matrix-role-"), "permissions": ["content.view"]}
        return int((await self.admin("POST", "/api/v1/roles", body))["id"])

    async def new_site(self) -> int:
        body = {"name": unique("Site "), "domain": f"{unique('s')}.example.com"}
        return int((await self.admin("POST", "/api/v1/sites", body))["id"])

    async def new_member(self) -> int:
        user = await self.new_user()
        await self.add(SiteUser(site_id=self.members_site_id, user_id=user.id))
        return user.id

    async def new_type(self) -> int:
        body = {"name": unique("Type "), "has_categories": True, "has_tags": True}
        return int((await self.admin("POST", "/api/v1/content-types", body))["id"])

    async def new_field(self) -> int:
        body = {"field_name": unique("f_"), "field_label": "Field", "field_type": "text"}
        path = f"/api/v1/content-types/{self.type_id}/fields"
        return int((await self.admin("POST", path, body))["id"])

    async def new_term(self, kind: str) -> int:
        return int((await self.admin("POST", f"/api/v1/{kind}", {"name": unique("T")}))["id"])

    async def new_item(self, *, role: str = "author", **fields: Any) -> dict[str, Any]:
        body = {"site_id": self.site_id, "content_type_id": self.type_id, "title": unique("I")}
        item: dict[str, Any] = await self.as_role(
            role, "POST", "/api/v1/content-items", {**body, **fields}
        )
        return item

    async def new_template(self) -> int:
        body = {"name": unique("tpl-"), "subject_template": "Hi", "body_template": "Hello"}
        return int((await self.admin("POST", "/api/v1/notification-templates", body))["id"])

    async def new_notification_category(self) -> int:
        body = {"name": unique("Category ")}
        return int((await self.admin("POST", "/api/v1/notification-categories", body))["id"])

    async def new_grant(self) -> int:
        user = await self.new_user()
        row = DocumentPermission(
            document_id=self.document_id, user_id=user.id, permission_level="read"
        )
        await self.add(row)
        return user.id

    async def new_api_token(self, who: Who) -> int:
        secret = new_token(API_TOKEN_PREFIX)
        row = ApiToken(
            user_id=self.user_of(who).id,
            name="spare",
            token_hash=hash_token(secret),
            prefix=secret[:12],
            scopes=["content.view"],
        )
        return (await self.add(row)).id

    async def new_notification(self, who: Who) -> int:
        row = Notification(user_id=self.user_of(who).id, title="Hello", message="A message")
        return (await self.add(row)).id

    async def new_remember_token(self) -> str:
        body = {"login": self.login_name, "password": PASSWORD, "remember": True}
        response = await self.harness.client.post("/api/v1/auth/login", json=body)
        assert response.status == 200, await response.text()
        return str((await response.json())["data"]["remember_token"])

    async def new_reset_token(self) -> str:
        token = new_token(ONE_TIME_PREFIX)
        user = await self.new_user()
        async with transaction(self.harness.app[keys.SESSIONS]) as db:
            stored = await db.get(User, user.id)
            assert stored is not None
            stored.password_reset_token = hash_token_short(token)
            stored.password_reset_expires = utcnow() + timedelta(hours=1)
        return token

    async def new_verification_token(self) -> str:
        token = new_token(ONE_TIME_PREFIX)
        user = await self.new_user()
        await self.add(
            EmailVerificationToken(
                user_id=user.id,
                email=user.email,
                token_hash=hash_token(token),
                expires_at=utcnow() + timedelta(hours=1),
            )
        )
        return token


async def build_world(harness: Harness, who: dict[str, Who]) -> World:
    """Create the shared fixtures through the API (as the admin) and the database."""
    world = World(harness, who)
    world.site_id = await world.new_site()
    world.members_site_id = await world.new_site()
    world.type_id = await world.new_type()
    world.field_id = await world.new_field()
    world.category_id = await world.new_term("categories")
    world.tag_id = await world.new_term("tags")
    world.item_id = int((await world.new_item())["id"])
    versions = f"/api/v1/content-items/{world.item_id}/versions"
    first = await world.admin("POST", versions, {"notes": "first"})
    await world.admin("PATCH", f"/api/v1/content-items/{world.item_id}", {"title": "Changed"})
    second = await world.admin("POST", versions, {"notes": "second"})
    world.version_ids = (int(first["id"]), int(second["id"]))
    slug = unique("published-")
    await world.new_item(role="admin", slug=slug, status="published")
    kind = await world.admin("GET", f"/api/v1/content-types/{world.type_id}")
    world.published = (str(kind["slug"]), slug)
    world.target_id = (await world.new_user()).id
    world.narrow_role_id = await world.new_role()
    world.template_id = await world.new_template()
    world.notification_category_id = await world.new_notification_category()
    world.document_id = f"notes:{unique('matrix-')}"
    for name, level in DOCUMENT_GRANTS.items():
        user = who[name].user
        assert user is not None
        await world.add(
            DocumentPermission(
                document_id=world.document_id, user_id=user.id, permission_level=level
            )
        )
    world.grantee_id = (await world.new_user()).id
    world.login_name = (await harness.add_user(unique("login-"))).username
    return world
