"""Password reset and email verification: single-use, expiring tokens delivered by mail.

A reset request is answered before anything depends on the address: the request counts
against the rate limits and enqueues an `accounts.reset_mail` job in its transaction;
looking up the account, making its token and mailing the link happen in that job
(realtime_cms/accounts/jobs.py). So the answer, and how long it takes, are the same whether
or not an account uses the address, and whatever the mail server does. Verification mail is
a job too. Tokens are made by the jobs, never stored in a job's payload.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from realtime_cms.accounts import jobs
from realtime_cms.accounts.guards import check_password, limit_key, throttle
from realtime_cms.accounts.sessions import revoke_all, with_user
from realtime_cms.audit import record
from realtime_cms.config import Settings
from realtime_cms.errors import Conflict, Invalid, Unauthorized
from realtime_cms.jobs.queue import enqueue
from realtime_cms.models.auth import EmailVerificationToken, User
from realtime_cms.models.base import utcnow
from realtime_cms.principal import Principal
from realtime_cms.ratelimit import RateLimiter
from realtime_cms.security.passwords import Passwords
from realtime_cms.security.tokens import hash_token, hash_token_short, matches

RESET_ACCEPTED = "If an active account uses that email, a reset link has been sent to it"


def link_base(settings: Settings, origin: str) -> str:
    """Where mailed links point: `public_url`, else the request's origin if it is an allowed one.

    The Host header is the client's to choose, so an origin outside `allowed_origins`
    (a poisoned reset link) falls back to the first allowed origin.
    """
    if settings.public_url:
        return settings.public_url.rstrip("/")
    origin = origin.rstrip("/")
    return origin if origin in settings.allowed_origins else settings.allowed_origins[0]


async def request_reset(
    db: AsyncSession,
    limiter: RateLimiter,
    settings: Settings,
    principal: Principal,
    *,
    email: str,
    base_url: str,
) -> None:
    """Count the request against its limits and enqueue the job that does the rest."""
    address = email.strip().lower()
    await throttle(
        limiter,
        settings.rate_limit_window_seconds,
        (limit_key("reset:ip", principal.ip or "unknown"), settings.reset_ip_rate_limit),
        (limit_key("reset:email", address), settings.reset_rate_limit),
        message="Too many reset requests; try again later",
    )
    ip, agent = principal.ip, principal.user_agent
    payload = jobs.ResetMail(
        address=address,
        base_url=base_url,
        ip=ip[: jobs.IP_MAX] if ip else None,
        user_agent=agent[: jobs.USER_AGENT_MAX] if agent else None,
    )
    await enqueue(db, jobs.RESET_MAIL, payload)


async def confirm_reset(
    db: AsyncSession, passwords: Passwords, principal: Principal, *, token: str, new_password: str
) -> None:
    """Set a new password with a reset token (once); every session and token of the user ends."""
    invalid = Invalid("The reset link is invalid or has expired", code="invalid_token")
    digest = hash_token_short(token)
    user = await db.scalar(sa.select(User).where(User.password_reset_token == digest))
    expires = user.password_reset_expires if user else None
    if user is None or expires is None or expires <= utcnow() or not user.is_active:
        raise invalid
    if not matches(user.password_reset_token or "", digest):
        raise invalid
    check_password(new_password, username=user.username, email=user.email)
    hashed = await passwords.hash(new_password)
    # Conditional on the token still being there, so two racing confirmations can't both win.
    done = await db.execute(
        sa.update(User)
        .where(User.id == user.id, User.password_reset_token == digest)
        .values(password=hashed, password_reset_token=None, password_reset_expires=None)
    )
    if done.rowcount != 1:  # type: ignore[attr-defined]
        raise invalid
    await revoke_all(db, user.id)
    await record(db, principal, "auth.password_reset", "user", user.id, user_id=user.id)


async def request_verification(
    db: AsyncSession,
    limiter: RateLimiter,
    settings: Settings,
    principal: Principal,
    *,
    base_url: str,
) -> None:
    """Check that the signed-in user's address needs verifying and enqueue the job that
    makes the token and mails it (the answer does not wait for the mail)."""
    user = await db.get(User, principal.user_id) if principal.user_id is not None else None
    if user is None:
        raise Unauthorized("Sign in to continue")
    if user.email_verified_at is not None:
        raise Conflict("The email address is already verified", code="already_verified")
    await throttle(
        limiter,
        settings.rate_limit_window_seconds,
        (limit_key("verify:user", str(user.id)), settings.reset_rate_limit),
        message="Too many verification requests; try again later",
    )
    await record(db, principal, "auth.verify_email_request", "user", user.id)
    payload = jobs.VerificationMail(user_id=user.id, base_url=base_url)
    await enqueue(db, jobs.VERIFICATION_MAIL, payload)


async def confirm_verification(db: AsyncSession, principal: Principal, *, token: str) -> None:
    """Mark the email verified with a verification token (once, before it expires)."""
    invalid = Invalid("The verification link is invalid or has expired", code="invalid_token")
    digest = hash_token(token)
    found = await with_user(db, EmailVerificationToken, EmailVerificationToken.token_hash, digest)
    if found is None:
        raise invalid
    stored, user = found
    now = utcnow()
    # A token mailed to an address the account no longer uses proves nothing about the new one.
    if (
        stored.used_at is not None
        or stored.expires_at <= now
        or stored.email.lower() != user.email.lower()
    ):
        raise invalid
    used = await db.execute(
        sa.update(EmailVerificationToken)
        .where(EmailVerificationToken.id == stored.id, EmailVerificationToken.used_at.is_(None))
        .values(used_at=now)
    )
    if used.rowcount != 1:  # type: ignore[attr-defined]
        raise invalid
    user.email_verified_at = now
    await db.flush()
    await record(
        db, principal, "auth.verify_email", "user", user.id, {"email": user.email}, user_id=user.id
    )
