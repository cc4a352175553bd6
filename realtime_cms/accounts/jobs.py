"""The accounts' background work: password-reset and email-verification mail.

Each job makes its token itself, so no secret is ever kept in a job's payload (payloads are
plain text at rest), and only the token's hash is stored. The link is mailed first and the
hash written after, in the job's transaction, which commits with the job's completion:

- a send that fails fails the attempt with nothing written; the retry mails a fresh token;
- a token works only once its write committed (a mail whose job then lost its lease or
  failed to commit carries a dead link, and the retry mails another): at-least-once mail;
- no write lock is held while the mail server answers (on SQLite that lock would stop every
  writer of the database for as long as the server stalls).
"""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import quote

import sqlalchemy as sa
from pydantic import BaseModel, Field

from realtime_cms.audit import record
from realtime_cms.jobs.registry import JobContext, JobType
from realtime_cms.mail import Message, message_id
from realtime_cms.models.auth import EmailVerificationToken, User
from realtime_cms.models.base import utcnow
from realtime_cms.principal import anonymous
from realtime_cms.security.tokens import ONE_TIME_PREFIX, hash_token, hash_token_short, new_token

# What the audit trail keeps of a client (realtime_cms/audit.py).
IP_MAX = 45
USER_AGENT_MAX = 2000


class ResetMail(BaseModel):
    """A reset request: the normalized address, where links point, and who asked (audit)."""

    model_config = {"extra": "forbid"}
    address: str = Field(min_length=1, max_length=320)
    base_url: str = Field(min_length=1, max_length=2048)
    ip: str | None = Field(default=None, max_length=IP_MAX)
    user_agent: str | None = Field(default=None, max_length=USER_AGENT_MAX)


class VerificationMail(BaseModel):
    model_config = {"extra": "forbid"}
    user_id: int
    base_url: str = Field(min_length=1, max_length=2048)


async def _send(context: JobContext, to: str, subject: str, body: str) -> None:
    """Hand the mail to the mail server; raising fails the attempt (and rolls back)."""
    message = Message(to, subject, body, message_id=message_id(context.job_id))
    await context.runtime.mailer.send(message)


async def _reset(context: JobContext, payload: ResetMail) -> str:
    db, settings = context.db, context.runtime.settings
    user = await db.scalar(sa.select(User).where(sa.func.lower(User.email) == payload.address))
    if user is None or not user.is_active:
        return "no active account uses the address"
    token = new_token(ONE_TIME_PREFIX)
    minutes = settings.reset_token_ttl_seconds // 60
    body = (
        f"Someone asked to reset the password of {user.username}.\n"
        f"To choose a new password, open {payload.base_url}/reset?token={quote(token)}\n"
        f"The link works once, for {minutes} minutes. If it wasn't you, ignore this mail."
    )
    await _send(context, user.email, "Reset your password", body)
    user.password_reset_token = hash_token_short(token)
    user.password_reset_expires = utcnow() + timedelta(seconds=settings.reset_token_ttl_seconds)
    await db.flush()
    requester = anonymous(payload.ip, payload.user_agent)
    await record(db, requester, "auth.password_reset_request", "user", user.id, user_id=user.id)
    # Never the link: it carries the token.
    return f"sent to user {user.id}"


async def _verification(context: JobContext, payload: VerificationMail) -> str:
    db, settings = context.db, context.runtime.settings
    user = await db.get(User, payload.user_id)
    if user is None or not user.is_active or user.email_verified_at is not None:
        return "nothing to verify"
    token = new_token(ONE_TIME_PREFIX)
    body = (
        f"To confirm that {user.email} belongs to {user.username}, open "
        f"{payload.base_url}/verify-email?token={quote(token)}\n"
        "If it wasn't you, ignore this mail."
    )
    await _send(context, user.email, "Verify your email address", body)
    expires = utcnow() + timedelta(seconds=settings.verify_token_ttl_seconds)
    db.add(
        EmailVerificationToken(
            user_id=user.id, email=user.email, token_hash=hash_token(token), expires_at=expires
        )
    )
    await db.flush()
    return f"sent to user {user.id}"


# Backoff doubles from 2 s: 10 attempts keep trying for 9 to 17 minutes, about as long as
# someone waits for a reset link before asking again (each attempt makes a fresh token with
# its full lifetime, so a late mail still works).
RESET_MAIL = JobType(
    "accounts.reset_mail",
    ResetMail,
    _reset,
    queue="mail",
    max_attempts=10,
    timeout_seconds=120,
    description="Make a password-reset token for the address' active account and mail the link",
)
# Nobody waits for a verification link: retried for hours, like other mail (`mail.send`).
VERIFICATION_MAIL = JobType(
    "accounts.verification_mail",
    VerificationMail,
    _verification,
    queue="mail",
    max_attempts=16,
    timeout_seconds=120,
    description="Make an email-verification token for the user and mail the link",
)
JOB_TYPES = (RESET_MAIL, VERIFICATION_MAIL)
