"""Account guards shared by every flow: the password policy and attempt throttling."""

from __future__ import annotations

from realtime_cms.errors import RateLimited, Unprocessable
from realtime_cms.ratelimit import RateLimiter
from realtime_cms.security.tokens import hash_token

MIN_PASSWORD = 10
MAX_PASSWORD = 1024


def check_password(password: str, *, username: str, email: str) -> None:
    """Refuse passwords outside 10..1024 characters or equal to the account's username or email."""
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise Unprocessable(
            f"The password must be {MIN_PASSWORD} to {MAX_PASSWORD} characters long",
            code="weak_password",
        )
    if password.strip().lower() in (username.lower(), email.lower()):
        raise Unprocessable("The password must not be the username or email", code="weak_password")


def limit_key(kind: str, value: str) -> str:
    """A rate-limit key of bounded length that does not spell out logins or emails."""
    return f"{kind}:{hash_token(value)[:32]}"


def login_key(user_id: int | None, name: str) -> str:
    """The login budget an attempt counts against: the account's, whichever of its username
    or email was typed, else the typed name's (an unknown name is limited just the same)."""
    if user_id is not None:
        return limit_key("login:user", str(user_id))
    return limit_key("login:name", name)


async def throttle(
    limiter: RateLimiter, window: int, *limits: tuple[str, int], message: str
) -> None:
    """Count one attempt per (key, limit); raise RateLimited with Retry-After once one is spent."""
    for key, limit in limits:
        verdict = await limiter.hit(key, limit, window)
        if not verdict.allowed:
            raise RateLimited(message, headers={"Retry-After": str(verdict.retry_after)})
