"""Outgoing mail behind one small interface; the default sender writes messages to the log."""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass
from typing import Protocol

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
