"""What a room deals with: the `Peer` each transport implements, and the `RoomLimits` that
bound what peers may send. Apart from the room itself, so that hooks, the manager and the
transports can name them without importing the room."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from realtime_cms.collab.access import Level
from realtime_cms.principal import Principal


class Peer(Protocol):
    """One connection's view of a room, implemented by each transport.

    The `send_*` methods must not wait on the network: queue the message and return (drop
    a connection that cannot keep up), because rooms call them while holding their lock.
    `send_level(document_id, None)` means access was revoked; the room has already
    dropped the peer, and the transport stops serving that document to it.
    """

    @property
    def id(self) -> str: ...

    @property
    def principal(self) -> Principal: ...

    async def send_update(self, document_id: str, update: bytes) -> None: ...

    async def send_awareness(self, document_id: str, awareness_update: bytes) -> None: ...

    async def send_level(self, document_id: str, level: Level | None) -> None: ...

    async def send_sync_request(self, document_id: str, state_vector: bytes) -> None:
        """Ask the peer for what the room lacks: everything it holds beyond `state_vector`
        (Yjs sync step 1); it answers with an update."""
        ...

    async def send_notice(self, document_id: str, notice: Mapping[str, Any]) -> None:
        """Tell the peer something about the document's item (JSON values: its schedule
        changed, ...). A transport without a message for it (the Yjs protocols) drops it."""
        ...


@dataclass(frozen=True, slots=True)
class RoomLimits:
    """Bounds on what peers may send, when idle rooms are unloaded and compacted, and when
    quiet ones drop their shadow copy."""

    max_update_bytes: int = 256 * 1024
    max_awareness_bytes: int = 64 * 1024
    # Updates one peer may have held for missing dependencies, and their bytes.
    max_pending: int = 100
    max_pending_bytes: int = 2 * 1024 * 1024
    # An update's ack comes within this long: "saved", or a code that says "send it again".
    ack_deadline_seconds: float = 10.0
    idle_unload_seconds: float = 30.0
    # A room that took no update for this long drops its shadow copy, half of what it holds;
    # the next update rebuilds it from the live document (a few ms: docs/benchmarks.md).
    shadow_idle_seconds: float = 10.0
    compact_min_rows: int = 500
    compact_min_bytes: int = 1_000_000
    # Awareness client ids one peer may hold (a browser tab uses one per document).
    max_awareness_clients: int = 16
    # Seats one user may hold in a process, across rooms and transports.
    max_seats_per_user: int = 128
