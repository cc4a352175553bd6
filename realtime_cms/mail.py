"""Outgoing mail behind one small interface: SMTP when configured, else the log.

Mail a request causes is sent after its commit, in the background (`send_after_commit`),
so no answer waits for, fails with, or takes longer because of, the mail server.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Protocol

import aiosmtplib

from realtime_cms.config import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Message:
    to: str
    subject: str
    body: str


class MailSender(Protocol):
    async def send(self, message: Message) -> None: ...


# Builds the message when the background task runs (None: nothing to send).
Compose = Callable[[], Awaitable[Message | None]]
AfterCommit = Callable[[], Awaitable[None]]
# Pauses before the second and third attempt: rides out a mail server's restart, no more.
RETRY_DELAYS = (0.5, 2.0)
# The tasks started by `send_after_commit` (asyncio keeps only weak references to tasks).
_in_flight: set[asyncio.Task[None]] = set()


def send_after_commit(mailer: MailSender, mail: Message | Compose) -> AfterCommit:
    """An effect for the edge to await once its transaction has committed: it starts sending
    `mail` in a background task and returns at once.

    `mail` is a message, or a coroutine function composing one, which may look things up and
    write in a transaction of its own (the password reset does, so that the request's answer
    does not depend on whether an account exists). Failures are retried (`RETRY_DELAYS`), then
    logged by recipient and subject, never with the body, which carries links with tokens.
    This stands in for a job enqueued in the caller's transaction until `worker_jobs` has a
    job system; callers need not change when it takes over.
    """

    async def start() -> None:
        task = asyncio.create_task(_compose_and_send(mailer, mail), name="mail-after-commit")
        _in_flight.add(task)
        task.add_done_callback(_in_flight.discard)

    return start


async def drain(grace: float | None = None) -> None:
    """Wait for the mail `send_after_commit` started; after `grace` seconds, cancel what is
    left (tests wait for their mail; a shutdown must not wait for a stalled mail server)."""
    loop = asyncio.get_running_loop()
    deadline = None if grace is None else loop.time() + grace
    while pending := {task for task in _in_flight if task.get_loop() is loop}:
        left = None if deadline is None else max(0.0, deadline - loop.time())
        _, late = await asyncio.wait(pending, timeout=left)
        if late:
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
            return


async def _compose_and_send(mailer: MailSender, mail: Message | Compose) -> None:
    try:
        message = mail if isinstance(mail, Message) else await mail()
    except Exception:
        log.exception("composing a mail failed; nothing was sent")
        return
    if message is not None:
        await send_with_retry(mailer, message)


async def send_with_retry(
    mailer: MailSender, message: Message, delays: tuple[float, ...] = RETRY_DELAYS
) -> bool:
    """Send `message`, trying again after each of `delays`; whether it went (failures logged)."""
    attempts = len(delays) + 1
    reason = ""
    for attempt, delay in enumerate((*delays, None), start=1):
        try:
            await mailer.send(message)
            return True
        except Exception as exc:  # any failure of the mail server or the network
            reason = f"{type(exc).__name__}: {exc}"
        if delay is None:
            break
        log.warning(
            "mail to %s (%r) failed, attempt %d of %d; again in %.1f s: %s",
            message.to,
            message.subject,
            attempt,
            attempts,
            delay,
            reason,
        )
        await asyncio.sleep(delay)
    log.error(
        "mail to %s (%r) not sent after %d attempts: %s",
        message.to,
        message.subject,
        attempts,
        reason,
    )
    return False


class LogMailSender:
    """Logs every message and keeps the latest ones in `outbox` for operators and tests."""

    def __init__(self, keep: int = 100) -> None:
        self.outbox: deque[Message] = deque(maxlen=keep)

    async def send(self, message: Message) -> None:
        self.outbox.append(message)
        log.info("mail to=%s subject=%r\n%s", message.to, message.subject, message.body)


class SmtpMailSender:
    """Sends each message over SMTP (aiosmtplib), one connection per message."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        sender: str,
        username: str | None = None,
        password: str | None = None,
        starttls: bool = True,
        timeout: float = 30.0,
    ) -> None:
        self.host, self.port, self.sender = host, port, sender
        self._username, self._password = username, password
        self._starttls, self._timeout = starttls, timeout

    async def send(self, message: Message) -> None:
        mail = EmailMessage()
        mail["From"], mail["To"], mail["Subject"] = self.sender, message.to, message.subject
        mail.set_content(message.body)
        await aiosmtplib.send(
            mail,
            hostname=self.host,
            port=self.port,
            username=self._username,
            password=self._password,
            start_tls=self._starttls,
            timeout=self._timeout,
        )


def mail_sender_for(settings: Settings) -> MailSender:
    """SMTP when `RCMS_SMTP_HOST` is set, else the log sender."""
    if not settings.smtp_host:
        return LogMailSender()
    return SmtpMailSender(
        host=settings.smtp_host,
        port=settings.smtp_port,
        sender=settings.smtp_from,
        username=settings.smtp_username,
        password=settings.smtp_password,
        starttls=settings.smtp_starttls,
    )
