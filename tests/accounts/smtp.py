"""A real SMTP peer for mail tests: an aiosmtpd server that can refuse, stall, stop and return."""

from __future__ import annotations

import asyncio
import re
import socket
import threading
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any
from urllib.parse import unquote

from aiosmtpd.controller import Controller

_TOKEN = re.compile(r"\?token=(\S+)")


def free_port() -> int:
    """A loopback port nothing listens on (just now)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Inbox:
    """The aiosmtpd handler. It refuses the first `refuse_first` DATA commands with a 451,
    and after `stall()` leaves each DATA command unanswered until `release()`."""

    refuse_first: int = 0
    # The mails refused so far.
    refused: list[EmailMessage] = field(default_factory=list)
    # DATA commands that were left waiting (counted when they start waiting).
    held: int = 0
    received: list[EmailMessage] = field(default_factory=list)
    _stalled: bool = False
    _released: threading.Event = field(default_factory=threading.Event)

    def stall(self) -> None:
        self._released.clear()
        self._stalled = True

    def release(self) -> None:
        self._stalled = False
        self._released.set()

    def reset(self) -> None:
        self.release()
        self.refuse_first = self.held = 0
        self.refused.clear()
        self.received.clear()

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.received if m["To"] == address]

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        if self._stalled:
            self.held += 1
            await asyncio.to_thread(self._released.wait)
        message = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        if len(self.refused) < self.refuse_first:
            self.refused.append(message)
            return "451 4.3.0 Try again later"
        self.received.append(message)
        return "250 OK"


class SmtpPeer:
    """An aiosmtpd server (in its own thread) on one fixed port, delivering into `inbox`;
    `stop()` makes the port refuse connections until `start()` serves it again."""

    def __init__(self) -> None:
        self.inbox = Inbox()
        self.port = free_port()
        self._controller: Controller | None = None

    def start(self) -> None:
        if self._controller is None:
            self._controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)
            self._controller.start()

    def stop(self) -> None:
        self.inbox.release()
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


def token_in(message: EmailMessage) -> str:
    """The token of the link in a received mail."""
    match = _TOKEN.search(str(message.get_content()))
    assert match is not None
    return unquote(match[1])
