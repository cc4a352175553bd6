"""Reset and verification mail over real SMTP (aiosmtpd): a refusing or absent mail server is
retried until it takes the mail, which arrives once with a working link; a stalled one holds
up neither the answer nor other writers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Iterator

import pytest

from handlers import keys
from realtime_cms.accounts import jobs, recovery
from realtime_cms.jobs import leases
from realtime_cms.models.workers import WorkerJob
from tests.accounts.smtp import Inbox, SmtpPeer, token_in
from tests.accounts.support import job_id_of, jobs_for, new_user, user_row
from tests.support.harness import Harness, make_settings, start_harness
from tests.support.jobs import settle_jobs

NEW_PASSWORD = "a brand new passphrase"
# A generous bound for the mail to get through, never a timing assertion.
WITHIN = 60.0


@pytest.fixture(scope="module")
def smtp() -> Iterator[SmtpPeer]:
    peer = SmtpPeer()
    peer.start()
    try:
        yield peer
    finally:
        peer.stop()


@pytest.fixture(scope="module")
async def harness(
    database_url: str, redis_url: str | None, smtp: SmtpPeer
) -> AsyncIterator[Harness]:
    """A server whose embedded worker mails over SMTP to `smtp`, polling often for retries."""
    settings = make_settings(
        database_url,
        redis_url,
        smtp_host="127.0.0.1",
        smtp_port=smtp.port,
        smtp_starttls=False,
        job_poll_seconds=0.05,
    )
    h = await start_harness(settings)
    try:
        yield h
    finally:
        await h.client.close()


@pytest.fixture
def inbox(smtp: SmtpPeer, monkeypatch: pytest.MonkeyPatch) -> Iterator[Inbox]:
    """The peer's inbox, empty and accepting; retries come after tens of milliseconds."""
    monkeypatch.setattr(leases, "BACKOFF_BASE_SECONDS", 0.02)
    smtp.inbox.reset()
    smtp.start()
    yield smtp.inbox
    smtp.inbox.release()
    smtp.start()


async def job_when(
    harness: Harness, email: str, check: Callable[[WorkerJob], bool], *, job: str
) -> WorkerJob:
    """Poll the job for `email` (of type `job`) until `check(job)` holds."""
    async with asyncio.timeout(WITHIN):
        while True:
            if job == jobs.RESET_MAIL.name:
                found = await jobs_for(harness, job, "address", [email])
            else:
                user = await user_row(harness, email)
                found = await jobs_for(harness, job, "user_id", [user.id])
            if found and check(found[0]):
                return found[0]
            await asyncio.sleep(0.02)


async def ended(harness: Harness, email: str, job: str = jobs.RESET_MAIL.name) -> WorkerJob:
    """The job for `email`, once it completed or failed for good."""
    await settle_jobs(harness.app[keys.SESSIONS], [job], seconds=WITHIN)
    return await job_when(harness, email, lambda j: j.status in ("completed", "failed"), job=job)


async def post_reset(harness: Harness, email: str) -> int:
    response = await harness.client.post("/api/v1/auth/password-reset", json={"email": email})
    assert await response.json() == {"data": {"message": recovery.RESET_ACCEPTED}}
    return response.status


async def confirm_reset(harness: Harness, token: str) -> int:
    response = await harness.client.post(
        "/api/v1/auth/password-reset/confirm", json={"token": token, "password": NEW_PASSWORD}
    )
    return response.status


async def test_a_refused_reset_mail_is_retried_and_only_the_delivered_link_works(
    harness: Harness, inbox: Inbox, caplog: pytest.LogCaptureFixture
) -> None:
    _, email = await new_user(harness)
    inbox.refuse_first = 2
    with caplog.at_level(logging.WARNING):
        assert await post_reset(harness, email) == 202
        job = await ended(harness, email)
    # The failed attempts are logged, never with the link.
    assert "attempt 1 failed" in caplog.text and "token=" not in caplog.text
    assert (job.status, job.attempts) == ("completed", 3)
    [arrived] = inbox.to(email)
    assert job_id_of(arrived["Message-ID"]) == job.id
    # Each attempt made its own token; the refused ones rolled back with their attempt.
    refused = [token_in(message) for message in inbox.refused]
    assert len(refused) == 2 and token_in(arrived) not in refused
    for token in refused:
        assert await confirm_reset(harness, token) == 400
    assert await confirm_reset(harness, token_in(arrived)) == 204


async def test_a_reset_mail_waits_for_a_stopped_mail_server_and_arrives_once(
    harness: Harness, smtp: SmtpPeer, inbox: Inbox
) -> None:
    _, email = await new_user(harness)
    smtp.stop()
    assert await post_reset(harness, email) == 202
    # Connections are refused: the job fails attempts and stays queued for the next one.
    waiting = await job_when(
        harness, email, lambda j: j.attempts >= 2 and j.status == "queued", job=jobs.RESET_MAIL.name
    )
    assert waiting.last_error and (await user_row(harness, email)).password_reset_token is None
    smtp.start()
    job = await ended(harness, email)
    assert job.status == "completed" and job.attempts > 2
    [arrived] = inbox.to(email)
    assert job_id_of(arrived["Message-ID"]) == job.id
    assert await confirm_reset(harness, token_in(arrived)) == 204


async def test_a_refused_verification_mail_is_retried_and_its_link_works(
    harness: Harness, inbox: Inbox
) -> None:
    name, email = await new_user(harness)
    inbox.refuse_first = 1
    session = await harness.login(name)
    response = await harness.call("POST", "/api/v1/auth/verify-email", token=session)
    assert response.status == 202
    job = await ended(harness, email, jobs.VERIFICATION_MAIL.name)
    assert (job.status, job.attempts) == ("completed", 2)
    [arrived] = inbox.to(email)
    refused = token_in(inbox.refused[0])
    confirm = "/api/v1/auth/verify-email/confirm"
    assert (await harness.client.post(confirm, json={"token": refused})).status == 400
    assert (await harness.client.post(confirm, json={"token": token_in(arrived)})).status == 204


async def test_a_stalled_mail_server_holds_up_neither_the_answer_nor_other_writers(
    harness: Harness, inbox: Inbox
) -> None:
    name, email = await new_user(harness)
    user = await user_row(harness, email)
    inbox.stall()
    assert await post_reset(harness, email) == 202
    await job_when(harness, email, lambda j: inbox.held == 1, job=jobs.RESET_MAIL.name)
    # The job is in the middle of its SMTP conversation; a write to the same account (a
    # row lock on MariaDB, the database's write lock on SQLite) goes through meanwhile.
    changed = await harness.call(
        "PATCH", f"/api/v1/users/{user.id}", role="admin", json={"first_name": "Stalled"}
    )
    assert changed.status == 200
    still = await job_when(harness, email, lambda j: True, job=jobs.RESET_MAIL.name)
    assert (still.status, still.attempts, inbox.held, inbox.received) == ("processing", 1, 1, [])
    inbox.release()
    job = await ended(harness, email)
    assert (job.status, job.attempts) == ("completed", 1)
    [arrived] = inbox.to(email)
    assert await confirm_reset(harness, token_in(arrived)) == 204
    assert (await user_row(harness, email)).first_name == "Stalled"
