"""Outgoing mail behind one small interface: SMTP when configured, else the log.

Mail is sent by the job `mail.send` (`SEND`), enqueued in the transaction of the change that
causes it: nothing is sent for a change that rolls back, no request waits for (or fails with,
or takes longer because of) the mail server, and a mail server that refuses is retried with
backoff until it takes the message. The job's id is the message's Message-ID, so a retry
after a send whose outcome was lost carries the same id (receivers can deduplicate it).
"""

from __future__ import annotations

import logging
import socket
from collections import deque
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Protocol

import aiosmtplib
from pydantic import BaseModel, Field

from realtime_cms.config import Settings
from realtime_cms.jobs.registry import JobContext, JobType

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Message:
    to: str
    subject: str
    body: str
    # `<...>` Message-ID header; set from the sending job's id.
    message_id: str | None = None


class MailSender(Protocol):
    async def send(self, message: Message) -> None: ...


class MailPayload(BaseModel):
    """The payload of `mail.send`: one message to one recipient."""

    model_config = {"extra": "forbid"}
    # Not EmailStr: it refuses special-use domains (`.localhost`, `.test`) that accounts may
    # legitimately use; the address was validated where the account was created.
    to: str = Field(min_length=3, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")
    subject: str = Field(min_length=1, max_length=998)
    # Write-only: shown to nobody over REST (reset and verification links are secrets).
    body: str = Field(max_length=1_000_000, json_schema_extra={"writeOnly": True})

    @classmethod
    def of(cls, message: Message) -> MailPayload:
        return cls(to=message.to, subject=message.subject, body=message.body)


def message_id(job_id: str) -> str:
    return f"<{job_id}@{socket.getfqdn() or 'realtime-cms'}>"


async def _send(context: JobContext, payload: MailPayload) -> str:
    message = Message(
        to=str(payload.to),
        subject=payload.subject,
        body=payload.body,
        message_id=message_id(context.job_id),
    )
    await context.runtime.mailer.send(message)
    # Never the body: mailed links carry tokens.
    return f"sent to {payload.to}"


# Retries after about 2 s, 4 s, 8 s ... (jittered, capped at an hour): a mail server may be
# away for several hours and the mail still arrives.
SEND = JobType(
    "mail.send",
    MailPayload,
    _send,
    queue="mail",
    max_attempts=16,
    timeout_seconds=120,
    description="Send one mail (retried with backoff while the mail server refuses)",
)


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
        if message.message_id:
            mail["Message-ID"] = message.message_id
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
