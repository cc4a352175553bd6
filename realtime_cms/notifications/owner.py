"""The signed-in user whose own notifications and preferences a call reads or changes."""

from __future__ import annotations

from realtime_cms.errors import Unauthorized
from realtime_cms.principal import Principal


def require_user(principal: Principal) -> int:
    """The principal's user id: one's own notifications need no permission, only an account."""
    if principal.user_id is None:
        raise Unauthorized("Sign in to read your notifications")
    return principal.user_id
