"""Reset and verification requests only queue a job: with no worker running, nothing is looked
up, stored or mailed; a worker started afterwards does it, and a rolled-back request leaves
neither a job nor a mail."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import unquote

import pytest
import sqlalchemy as sa

from handlers import keys
from realtime_cms.accounts import jobs, recovery
from realtime_cms.db import transaction
from realtime_cms.mail import LogMailSender, Message
from realtime_cms.models.analytics import AuditLog
from realtime_cms.models.auth import EmailVerificationToken, User
from realtime_cms.models.base import utcnow
from realtime_cms.principal import Principal, anonymous
from realtime_cms.runtime import Runtime, worker_options
from tests.accounts.support import job_id_of, jobs_for, new_user, unique, user_row
from tests.support.harness import Harness, make_settings, start_harness
from tests.support.jobs import settle_jobs


@pytest.fixture(scope="module")
async def harness(database_url: str, redis_url: str | None) -> AsyncIterator[Harness]:
    """A web server without its embedded worker: queued jobs wait for `worker()`."""
    h = await start_harness(make_settings(database_url, redis_url, worker_embedded=False))
    try:
        yield h
    finally:
        await h.client.close()


@asynccontextmanager
async def worker(harness: Harness) -> AsyncIterator[list[Message]]:
    """Run a worker process's core (as `realtime-cms worker --queues mail` does) until every
    accounts mail job is done; the mail it sent (to its log)."""
    settings = harness.app[keys.SETTINGS]
    options = worker_options(settings, ["mail"])
    async with Runtime(settings, worker=options) as runtime:
        await settle_jobs(runtime.sessions, [t.name for t in jobs.JOB_TYPES])
        assert isinstance(runtime.mailer, LogMailSender)
        yield list(runtime.mailer.outbox)


async def audit_entries(harness: Harness, action: str, user_id: int) -> int:
    count = sa.func.count()
    query = sa.select(count).where(AuditLog.action_type == action, AuditLog.user_id == user_id)
    return int(await harness.scalar(query))


async def post_reset(harness: Harness, email: str) -> tuple[int, Any]:
    response = await harness.client.post("/api/v1/auth/password-reset", json={"email": email})
    return response.status, await response.json()


def token_of(message: Message) -> str:
    link = next(word for word in message.body.split() if "?token=" in word)
    return unquote(link.split("?token=", 1)[1])


async def test_a_reset_request_answers_the_same_either_way_and_only_queues_a_job(
    harness: Harness,
) -> None:
    _, known = await new_user(harness)
    unknown = f"{unique()}@example.com"
    known_answer = await post_reset(harness, known)
    unknown_answer = await post_reset(harness, unknown)
    assert known_answer == unknown_answer == (202, {"data": {"message": recovery.RESET_ACCEPTED}})

    # Each request committed one job, and did nothing else: the account was not touched
    # (no token, no audit entry) and nothing was mailed.
    queued = await jobs_for(harness, jobs.RESET_MAIL.name, "address", [known, unknown])
    assert [(j.payload["address"], j.status, j.attempts) for j in queued] == [
        (known, "queued", 0),
        (unknown, "queued", 0),
    ]
    user = await user_row(harness, known)
    assert user.password_reset_token is None and user.password_reset_expires is None
    assert await audit_entries(harness, "auth.password_reset_request", user.id) == 0
    web_mailer = harness.app[keys.MAILER]
    assert isinstance(web_mailer, LogMailSender) and not web_mailer.outbox

    async with worker(harness) as sent:
        assert [m.to for m in sent] == [known]
    [mail] = sent
    assert job_id_of(mail.message_id) == queued[0].id
    assert await audit_entries(harness, "auth.password_reset_request", user.id) == 1
    confirmed = await harness.client.post(
        "/api/v1/auth/password-reset/confirm",
        json={"token": token_of(mail), "password": "a brand new passphrase"},
    )
    assert confirmed.status == 204
    done = await jobs_for(harness, jobs.RESET_MAIL.name, "address", [known, unknown])
    assert [j.status for j in done] == ["completed", "completed"]


async def test_a_verification_request_queues_a_job_that_makes_the_token(harness: Harness) -> None:
    name, email = await new_user(harness)
    user = await user_row(harness, email)
    response = await harness.call(
        "POST", "/api/v1/auth/verify-email", token=await harness.login(name)
    )
    assert response.status == 202
    [queued] = await jobs_for(harness, jobs.VERIFICATION_MAIL.name, "user_id", [user.id])
    assert queued.status == "queued" and set(queued.payload) == {"user_id", "base_url"}
    tokens = sa.select(sa.func.count()).where(EmailVerificationToken.user_id == user.id)
    assert await harness.scalar(tokens) == 0

    async with worker(harness) as sent:
        assert [m.to for m in sent] == [email]
    assert await harness.scalar(tokens) == 1
    confirmed = await harness.client.post(
        "/api/v1/auth/verify-email/confirm", json={"token": token_of(sent[0])}
    )
    assert confirmed.status == 204


async def test_a_verification_job_for_an_address_verified_meanwhile_mails_nothing(
    harness: Harness,
) -> None:
    name, email = await new_user(harness)
    user = await user_row(harness, email)
    response = await harness.call(
        "POST", "/api/v1/auth/verify-email", token=await harness.login(name)
    )
    assert response.status == 202
    async with transaction(harness.app[keys.SESSIONS]) as db:
        await db.execute(
            sa.update(User).where(User.id == user.id).values(email_verified_at=utcnow())
        )
    async with worker(harness) as sent:
        assert sent == []
    [done] = await jobs_for(harness, jobs.VERIFICATION_MAIL.name, "user_id", [user.id])
    assert done.status == "completed"


async def test_nothing_is_queued_or_mailed_for_a_rolled_back_transaction(harness: Harness) -> None:
    app = harness.app
    settings, limiter, sessions = app[keys.SETTINGS], app[keys.RATE_LIMITER], app[keys.SESSIONS]
    base_url = settings.allowed_origins[0]
    _, kept = await new_user(harness)
    name, dropped = await new_user(harness)
    dropped_user = await user_row(harness, dropped)
    signed_in = Principal(user_id=dropped_user.id, username=name)

    with pytest.raises(RuntimeError, match="the change failed"):
        async with transaction(sessions) as db:
            await recovery.request_reset(
                db, limiter, settings, anonymous(), email=dropped, base_url=base_url
            )
            await recovery.request_verification(db, limiter, settings, signed_in, base_url=base_url)
            raise RuntimeError("the change failed")
    # A request that commits, so the worker below demonstrably runs what was committed.
    async with transaction(sessions) as db:
        await recovery.request_reset(
            db, limiter, settings, anonymous(), email=kept, base_url=base_url
        )

    resets = await jobs_for(harness, jobs.RESET_MAIL.name, "address", [kept, dropped])
    assert [j.payload["address"] for j in resets] == [kept]
    assert await jobs_for(harness, jobs.VERIFICATION_MAIL.name, "user_id", [dropped_user.id]) == []
    async with worker(harness) as sent:
        assert [m.to for m in sent] == [kept]
    assert (await user_row(harness, dropped)).password_reset_token is None
