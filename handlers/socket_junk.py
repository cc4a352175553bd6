"""Malformed packets from Socket.IO clients: counted, logged once per connection, dropped.

A packet that python-engineio or python-socketio cannot take (an unknown packet type, a
payload that does not decode, a binary event whose attachments do not add up) would reach
their handlers and fail there, each failure an ERROR with a traceback. The transports
refuse such packets before that and report them here. A connection keeps going after a few
(a client may be a version ahead), and closes at the `JUNK_LIMIT`-th: a client that keeps
sending them is broken or probing. See docs/protocol.md, "Malformed packets".
"""

from __future__ import annotations

import logging
from collections.abc import Container
from typing import ClassVar

log = logging.getLogger(__name__)

# The malformed packet that closes its connection (the ones before it are dropped).
JUNK_LIMIT = 10


class JunkLedger:
    """The malformed packets of one Engine.IO server's connections, by Engine.IO sid.

    `total` counts those of every server in the process (exported on `/healthz`).
    """

    total: ClassVar[int] = 0

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}

    def note(self, sid: str, what: str) -> bool:
        """Count one malformed packet (`what` says which rule it broke, never its bytes);
        True once the connection has sent `JUNK_LIMIT` of them."""
        JunkLedger.total += 1
        count = self._counts.get(sid, 0) + 1
        self._counts[sid] = count
        if count == 1:
            log.warning(
                "%s: dropped a malformed packet (%s); the connection closes at %d of them",
                sid,
                what,
                JUNK_LIMIT,
            )
        return count >= JUNK_LIMIT

    def prune(self, live: Container[str]) -> None:
        """Forget the connections that are gone."""
        for sid in [sid for sid in self._counts if sid not in live]:
            del self._counts[sid]


def junk_packets() -> int:
    """Malformed Socket.IO and Engine.IO packets refused by this process since it started."""
    return JunkLedger.total
