"""The role service checks `roles.manage` itself, so every way in (not only REST) is guarded."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from handlers import keys
from handlers.roles import PERMISSION_LISTING, ROLE_LISTING
from realtime_cms.db import transaction
from realtime_cms.errors import Forbidden
from realtime_cms.listing import parse_listing
from realtime_cms.principal import Principal
from realtime_cms.rbac import service
from realtime_cms.rbac.catalog import DEFAULT_ROLES
from tests.support.harness import Harness

Read = Callable[[AsyncSession, Principal], Awaitable[object]]
READS: dict[str, Read] = {
    "list_roles": lambda db, who: service.list_roles(db, who, parse_listing(ROLE_LISTING, [])),
    "read_role": lambda db, who: service.read_role(db, who, 1),
    "list_permissions": lambda db, who: service.list_permissions(
        db, who, parse_listing(PERMISSION_LISTING, [])
    ),
}


def editor(harness: Harness) -> Principal:
    user = harness.users["editor"]
    return Principal(user.id, user.username, DEFAULT_ROLES["editor"][1], frozenset({"editor"}))


@pytest.mark.parametrize("read", sorted(READS))
async def test_reading_roles_needs_roles_manage_in_the_service(harness: Harness, read: str) -> None:
    async with transaction(harness.app[keys.SESSIONS]) as db:
        with pytest.raises(Forbidden) as refused:
            await READS[read](db, editor(harness))
    assert refused.value.code == "permission_denied"


@pytest.mark.parametrize("read", sorted(READS))
async def test_a_role_manager_reads_roles_through_the_service(harness: Harness, read: str) -> None:
    admin = harness.users["admin"]
    principal = Principal(admin.id, admin.username, DEFAULT_ROLES["admin"][1])
    async with transaction(harness.app[keys.SESSIONS]) as db:
        assert await READS[read](db, principal) is not None
