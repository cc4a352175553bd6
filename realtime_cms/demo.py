"""Demo data for a first look: a site, an admin and an editor, content types and sample items,
and the default notification categories."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from realtime_cms.models.auth import User, UserRole
from realtime_cms.models.base import utcnow
from realtime_cms.models.content import ContentItem, ContentType
from realtime_cms.models.sites import Site, SiteUser
from realtime_cms.notifications.categories import ensure_default_categories
from realtime_cms.rbac.service import role_id_by_name, seed_defaults
from realtime_cms.security.passwords import Passwords

DEMO_DOMAIN = "localhost"
LOGINS_FILE = Path(".rcms-demo-logins")

_SAMPLES = (
    (
        "article",
        "Welcome to realtime_cms",
        "welcome",
        "published",
        "# Welcome\n\nThis item is a live document: open it in two browsers and type in both.\n",
    ),
    (
        "article",
        "Writing together",
        "writing-together",
        "draft",
        "Co-authors see each other's cursors and edits as they type.\n\n"
        "Mention @editor to notify them.\n",
    ),
    ("page", "About", "about", "published", "An example page of the demo site.\n"),
)


@dataclass(frozen=True, slots=True)
class DemoLogin:
    username: str
    password: str
    role: str


async def _user(
    db: AsyncSession, passwords: Passwords, site: Site, name: str, role: str
) -> DemoLogin:
    password = secrets.token_urlsafe(12)
    user = User(
        username=name,
        email=f"{name}@demo.localhost",
        password=await passwords.hash(password),
        first_name=name.capitalize(),
        site_id=site.id,
        email_verified_at=utcnow(),
    )
    db.add(user)
    await db.flush()
    db.add(UserRole(user_id=user.id, role_id=await role_id_by_name(db, role)))
    db.add(SiteUser(site_id=site.id, user_id=user.id))
    return DemoLogin(name, password, role)


async def _content(db: AsyncSession, site: Site, author_id: int) -> None:
    types = {
        "article": ContentType(name="Article", slug="article", description="Dated posts"),
        "page": ContentType(
            name="Page",
            slug="page",
            description="Standalone pages",
            is_hierarchical=True,
            has_tags=False,
            has_categories=False,
        ),
    }
    for content_type in types.values():
        existing = await db.scalar(
            sa.select(ContentType).where(ContentType.slug == content_type.slug)
        )
        if existing is None:
            db.add(content_type)
        else:
            types[content_type.slug] = existing
    await db.flush()
    for kind, title, slug, status, body in _SAMPLES:
        published = utcnow() - timedelta(days=1) if status == "published" else None
        db.add(
            ContentItem(
                site_id=site.id,
                content_type_id=types[kind].id,
                author_id=author_id,
                title=title,
                slug=slug,
                status=status,
                content_body=body,
                excerpt=body.splitlines()[0].lstrip("# "),
                published_at=published,
            )
        )


async def load_demo(db: AsyncSession, passwords: Passwords) -> list[DemoLogin] | None:
    """Create the demo data; None when it is already there (it is loaded once)."""
    await seed_defaults(db)
    if await db.scalar(sa.select(Site.id).where(Site.domain == DEMO_DOMAIN)) is not None:
        return None
    site = Site(name="Demo site", domain=DEMO_DOMAIN)
    db.add(site)
    await db.flush()
    logins = [
        await _user(db, passwords, site, "admin", "admin"),
        await _user(db, passwords, site, "editor", "editor"),
    ]
    await db.flush()
    admin_id = await db.scalar(sa.select(User.id).where(User.username == "admin"))
    assert admin_id is not None
    await _content(db, site, admin_id)
    await ensure_default_categories(db)
    await db.flush()
    return logins


def save_logins(logins: list[DemoLogin], path: Path = LOGINS_FILE) -> None:
    """Keep the generated demo passwords beside the demo database (owner-only file)."""
    path.write_text("".join(f"{x.role}\t{x.username}\t{x.password}\n" for x in logins))
    path.chmod(0o600)


def read_logins(path: Path = LOGINS_FILE) -> list[DemoLogin]:
    if not path.exists():
        return []
    rows = [line.split("\t") for line in path.read_text().splitlines() if line.count("\t") == 2]
    return [DemoLogin(username=u, password=p, role=r) for r, u, p in rows]
