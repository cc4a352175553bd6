"""Real SMTP peers for mail tests: an aiosmtpd inbox, a server that stalls, a port nobody serves."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiohttp import DummyCookieJar, web
from aiohttp.test_utils import TestClient, TestServer
from aiosmtpd.controller import Controller

from handlers.app import create_app
from realtime_cms import keys, mail
from tests.support.harness import Harness

# What the app under test waits for an SMTP answer (the SmtpMailSender default).
SMTP_TIMEOUT = 30.0


def free_port() -> int:
    """A loopback port nothing listens on (just now)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Received:
    """One accepted mail and what `on_data` saw when the DATA command arrived."""

    message: EmailMessage
    seen: Any = None


@dataclass
class Inbox:
    """The aiosmtpd handler: refuses the first `refuse_first` DATA commands with a 451."""

    on_data: Callable[[EmailMessage], Any] | None = None
    refuse_first: int = 0
    received: list[Received] = field(default_factory=list)
    refused: int = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        if self.refused < self.refuse_first:
            self.refused += 1
            return "451 4.3.0 Try again later"
        message = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        seen = self.on_data(message) if self.on_data else None
        self.received.append(Received(message, seen))
        return "250 OK"


@contextmanager
def smtp_inbox(inbox: Inbox) -> Iterator[int]:
    """A real SMTP server (aiosmtpd, in its own thread) delivering into `inbox`; its port."""
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield controller.port
    finally:
        controller.stop()


@asynccontextmanager
async def stalling_smtp() -> AsyncIterator[tuple[int, Callable[[], None]]]:
    """A server that accepts connections and never says a word; (port, release).

    `release()` closes the listener and every connection, so senders stop waiting.
    """
    writers: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = int(server.sockets[0].getsockname()[1])

    def release() -> None:
        server.close()
        for writer in writers:
            writer.close()

    try:
        yield port, release
    finally:
        release()
        await server.wait_closed()


@asynccontextmanager
async def app_mailing_to(harness: Harness, port: int) -> AsyncIterator[TestClient[Any, Any]]:
    """Another server on the harness's database whose mail goes over SMTP to `port`."""
    settings = harness.app[keys.SETTINGS].model_copy(
        update={"smtp_host": "127.0.0.1", "smtp_port": port, "smtp_starttls": False}
    )
    app: web.Application = create_app(settings)
    client: TestClient[Any, Any] = TestClient(TestServer(app), cookie_jar=DummyCookieJar())
    await client.start_server()
    try:
        yield client
    finally:
        # Mail still being composed uses this app's database engine: let it finish first.
        await mail.drain(grace=SMTP_TIMEOUT)
        await client.close()
