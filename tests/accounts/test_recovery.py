"""Password reset and email verification by mailed, single-use, expiring tokens."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any
from urllib.parse import unquote

import sqlalchemy as sa

from handlers import keys
from realtime_cms.accounts import jobs
from realtime_cms.mail import LogMailSender, Message
from realtime_cms.models.auth import EmailVerificationToken, User
from realtime_cms.models.base import utcnow
from tests.accounts.support import (
    assert_all_revoked,
    execute,
    job_of,
    new_user,
    post_login,
    sign_in_everywhere,
    unique,
)
from tests.support.harness import PASSWORD, Harness
from tests.support.jobs import settle_jobs

NEW_PASSWORD = "a brand new passphrase"
_TOKEN = re.compile(r"\?token=(\S+)")


def outbox(harness: Harness) -> LogMailSender:
    mailer = harness.app[keys.MAILER]
    assert isinstance(mailer, LogMailSender)
    return mailer


def last_message_to(harness: Harness, address: str) -> Message:
    return [m for m in outbox(harness).outbox if m.to == address][-1]


def last_mail_to(harness: Harness, address: str) -> tuple[str, str]:
    """The link and token of the latest mail sent to `address`."""
    message = last_message_to(harness, address)
    match = _TOKEN.search(message.body)
    assert match is not None
    link = next(word for word in message.body.split() if "?token=" in word)
    return link, unquote(match[1])


async def settle(harness: Harness) -> None:
    """Wait for the server's own worker to run the mail jobs the answers do not wait for."""
    types = [job_type.name for job_type in jobs.JOB_TYPES]
    await settle_jobs(harness.app[keys.SESSIONS], types)


async def request_reset(harness: Harness, email: str, **kwargs: Any) -> Any:
    """Ask for a reset link, and wait for its job (and so its mail)."""
    response = await harness.client.post(
        "/api/v1/auth/password-reset", json={"email": email}, **kwargs
    )
    await settle(harness)
    return response


async def confirm_reset(harness: Harness, token: str, password: str = NEW_PASSWORD) -> Any:
    return await harness.client.post(
        "/api/v1/auth/password-reset/confirm", json={"token": token, "password": password}
    )


async def login_status(harness: Harness, name: str, password: str) -> int:
    return (await post_login(harness, name, password)).status


async def test_reset_requests_answer_the_same_for_known_and_unknown_emails(
    harness: Harness,
) -> None:
    _, email = await new_user(harness)
    sent_before = len(outbox(harness).outbox)
    known = await request_reset(harness, email)
    unknown = await request_reset(harness, f"{unique()}@example.com")
    assert known.status == unknown.status == 202
    assert await known.json() == await unknown.json()
    assert len(outbox(harness).outbox) == sent_before + 1
    assert outbox(harness).outbox[-1].to == email


async def test_an_inactive_account_gets_no_reset_mail(harness: Harness) -> None:
    _, email = await new_user(harness, is_active=False)
    assert (await request_reset(harness, email)).status == 202
    assert all(message.to != email for message in outbox(harness).outbox)


async def test_a_reset_token_sets_a_new_password_once(harness: Harness) -> None:
    name, email = await new_user(harness)
    await request_reset(harness, email)
    _, token = last_mail_to(harness, email)
    assert (await confirm_reset(harness, token)).status == 204
    again = await confirm_reset(harness, token, "yet another passphrase")
    assert again.status == 400 and (await again.json())["code"] == "invalid_token"
    assert await login_status(harness, name, NEW_PASSWORD) == 200
    assert await login_status(harness, name, PASSWORD) == 401


async def test_the_database_keeps_only_a_hash_of_the_reset_token(harness: Harness) -> None:
    _, email = await new_user(harness)
    await request_reset(harness, email)
    _, token = last_mail_to(harness, email)
    stored = await harness.scalar(sa.select(User.password_reset_token).where(User.email == email))
    assert stored and token not in stored and len(stored) == 43


async def test_an_expired_reset_token_is_invalid(harness: Harness) -> None:
    name, email = await new_user(harness)
    await request_reset(harness, email)
    _, token = last_mail_to(harness, email)
    await execute(
        harness,
        sa.update(User)
        .where(User.email == email)
        .values(password_reset_expires=utcnow() - timedelta(seconds=1)),
    )
    response = await confirm_reset(harness, token)
    assert response.status == 400 and (await response.json())["code"] == "invalid_token"
    assert await login_status(harness, name, PASSWORD) == 200


async def test_a_weak_new_password_is_refused_and_the_token_survives(harness: Harness) -> None:
    name, email = await new_user(harness)
    await request_reset(harness, email)
    _, token = last_mail_to(harness, email)
    for weak in ("short", name, email):
        response = await confirm_reset(harness, token, weak)
        assert response.status == 422 and (await response.json())["code"] == "weak_password"
    assert (await confirm_reset(harness, token)).status == 204


async def test_a_reset_revokes_sessions_remember_and_api_tokens(harness: Harness) -> None:
    name, email = await new_user(harness)
    tokens = await sign_in_everywhere(harness, name)
    await request_reset(harness, email)
    _, token = last_mail_to(harness, email)
    assert (await confirm_reset(harness, token)).status == 204
    await assert_all_revoked(harness, tokens)


async def test_reset_links_ignore_a_forged_host_header(harness: Harness) -> None:
    _, email = await new_user(harness)
    await request_reset(harness, email, headers={"Host": "evil.example"})
    link, _ = last_mail_to(harness, email)
    settings = harness.app[keys.SETTINGS]
    assert "evil.example" not in link
    assert link.startswith(settings.public_url or settings.allowed_origins[0])


async def test_reset_requests_are_rate_limited_per_email(harness: Harness) -> None:
    email = f"{unique()}@example.com"
    for _ in range(harness.app[keys.SETTINGS].reset_rate_limit):
        assert (await request_reset(harness, email)).status == 202
    refused = await request_reset(harness, email)
    assert refused.status == 429 and "Retry-After" in refused.headers


async def request_verification(harness: Harness, name: str, email: str) -> str:
    session = await harness.login(name)
    response = await harness.call("POST", "/api/v1/auth/verify-email", token=session)
    assert response.status == 202
    await settle(harness)
    return last_mail_to(harness, email)[1]


async def confirm_verification(harness: Harness, token: str) -> Any:
    return await harness.client.post("/api/v1/auth/verify-email/confirm", json={"token": token})


async def verified_at(harness: Harness, email: str) -> Any:
    return await harness.scalar(sa.select(User.email_verified_at).where(User.email == email))


async def test_a_verification_token_marks_the_email_verified_once(harness: Harness) -> None:
    name, email = await new_user(harness)
    token = await request_verification(harness, name, email)
    assert (await confirm_verification(harness, token)).status == 204
    assert await verified_at(harness, email) is not None
    again = await confirm_verification(harness, token)
    assert again.status == 400 and (await again.json())["code"] == "invalid_token"


async def test_an_expired_verification_token_is_invalid(harness: Harness) -> None:
    name, email = await new_user(harness)
    token = await request_verification(harness, name, email)
    await execute(
        harness,
        sa.update(EmailVerificationToken)
        .where(EmailVerificationToken.email == email)
        .values(expires_at=utcnow() - timedelta(seconds=1)),
    )
    assert (await confirm_verification(harness, token)).status == 400
    assert await verified_at(harness, email) is None


async def test_a_verified_address_cannot_ask_for_another_link(harness: Harness) -> None:
    name, email = await new_user(harness)
    await confirm_verification(harness, await request_verification(harness, name, email))
    session = await harness.login(name)
    response = await harness.call("POST", "/api/v1/auth/verify-email", token=session)
    assert response.status == 409 and (await response.json())["code"] == "already_verified"


async def change_email(harness: Harness, name: str) -> Any:
    user_id = await harness.scalar(sa.select(User.id).where(User.username == name))
    return await harness.call(
        "PATCH", f"/api/v1/users/{user_id}", role="admin", json={"email": f"{unique()}@example.com"}
    )


async def test_changing_the_email_clears_its_verification(harness: Harness) -> None:
    name, email = await new_user(harness)
    await confirm_verification(harness, await request_verification(harness, name, email))
    response = await change_email(harness, name)
    assert response.status == 200
    assert (await response.json())["data"]["email_verified_at"] is None


async def test_a_link_mailed_to_a_previous_address_is_void(harness: Harness) -> None:
    name, email = await new_user(harness)
    token = await request_verification(harness, name, email)
    assert (await change_email(harness, name)).status == 200
    response = await confirm_verification(harness, token)
    assert response.status == 400 and (await response.json())["code"] == "invalid_token"


async def test_the_mail_jobs_keep_no_token_in_their_payload_or_output(harness: Harness) -> None:
    name, email = await new_user(harness)
    await request_reset(harness, email)
    reset_mail, (_, reset_token) = last_message_to(harness, email), last_mail_to(harness, email)
    verify_token = await request_verification(harness, name, email)
    verify_mail = last_message_to(harness, email)
    for message, token, job_type, fields in (
        (reset_mail, reset_token, jobs.RESET_MAIL, {"address", "base_url", "ip", "user_agent"}),
        (verify_mail, verify_token, jobs.VERIFICATION_MAIL, {"user_id", "base_url"}),
    ):
        job = await job_of(harness, message.message_id)
        assert (job.type, job.status, job.queue) == (job_type.name, "completed", "mail")
        assert set(job.payload) == fields
        stored = json.dumps(job.payload) + (job.output or "") + (job.last_error or "")
        assert token not in stored and "token=" not in stored
