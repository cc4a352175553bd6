"""Outgoing mail behind one small interface: SMTP when configured, else the log."""

from __future__ import annotations

import logging
from collections import deque
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
