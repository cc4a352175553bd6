"""The one permission check every service calls: `authorize(principal, action, resource)`."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from realtime_cms.errors import Forbidden, Unauthorized
from realtime_cms.principal import Principal


@runtime_checkable
class Owned(Protocol):
    """A resource with an owner; `<action>.own` grants the action on one's own resources."""

    @property
    def owner_id(self) -> int | None: ...


def is_allowed(principal: Principal, action: str, resource: object | None = None) -> bool:
    """Whether `principal` may perform `action` (on `resource`, if it has an owner)."""
    if principal.can(action):
        return True
    if isinstance(resource, Owned) and principal.user_id is not None:
        owner = resource.owner_id
        return owner == principal.user_id and principal.can(f"{action}.own")
    return False


def authorize(principal: Principal, action: str, resource: object | None = None) -> None:
    """Raise Unauthorized for anonymous principals, Forbidden when the action is not granted."""
    if not principal.is_authenticated and not principal.is_system:
        raise Unauthorized("Sign in to continue")
    if not is_allowed(principal, action, resource):
        raise Forbidden(f"Missing permission: {action}", code="permission_denied")
