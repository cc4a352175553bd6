"""The awareness states of one room (cursors, names), and which local peer owns each client id.

A room records a peer's entries here after checking them: a client id another user's peer
holds is refused, as are more client ids per peer than allowed, and every state is stamped
with the sender's identity. Entries another node relays free their client ids from local
peers (the client moved there), so a local peer leaving does not remove them. Stale entries
(an older clock, or the same clock without a removal) are dropped, as y-protocols does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from realtime_cms.collab.protocol import AwarenessEntry, encode_awareness_update
from realtime_cms.errors import Forbidden, Invalid
from realtime_cms.principal import Principal

State = dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class _Owner:
    peer_id: str
    user_id: int | None


def stamped(entry: AwarenessEntry, principal: Principal) -> AwarenessEntry:
    """The entry with the sender's identity in `state.user` (id and display name), whatever
    the client claimed: nobody appears in the presence bar as someone else."""
    if entry.state is None:
        return entry
    claimed = entry.state.get("user")
    user = dict(claimed) if isinstance(claimed, dict) else {}
    user.update(id=principal.user_id, name=principal.display_name)
    return AwarenessEntry(entry.client_id, entry.clock, {**entry.state, "user": user})


class AwarenessBook:
    """Every client id's latest (clock, state) in one room, and its local owner if any."""

    def __init__(self, max_clients_per_peer: int) -> None:
        self._max_clients = max_clients_per_peer
        self._states: dict[int, tuple[int, State]] = {}
        self._owners: dict[int, _Owner] = {}
        self._claims: dict[str, set[int]] = {}

    def record_local(
        self, peer_id: str, principal: Principal, entries: Sequence[AwarenessEntry]
    ) -> list[AwarenessEntry]:
        """Check, stamp and record a local peer's entries; returns those not stale.

        The whole update is refused if it touches a client id another user's peer holds
        (a peer of the same user may take one over: a reconnecting tab keeps its id while
        the server may not have noticed that its old connection died)."""
        user_id = principal.user_id
        for entry in entries:
            owner = self._owners.get(entry.client_id)
            if owner is None or owner.peer_id == peer_id:
                continue
            if user_id is None or owner.user_id != user_id:
                raise Forbidden("Awareness client id of another peer", code="awareness_not_owned")
        claims = self._claims.get(peer_id, set())
        if len(claims | {entry.client_id for entry in entries}) > self._max_clients:
            raise Invalid("Too many awareness client ids", code="too_many_awareness_clients")
        accepted = []
        for entry in entries:
            entry = stamped(entry, principal)
            if self._is_stale(entry):
                continue
            self._release(entry.client_id)
            self._states[entry.client_id] = (entry.clock, entry.state)
            self._owners[entry.client_id] = _Owner(peer_id, user_id)
            self._claims.setdefault(peer_id, set()).add(entry.client_id)
            accepted.append(entry)
        return accepted

    def record_remote(self, entries: Sequence[AwarenessEntry]) -> list[AwarenessEntry]:
        """Record entries another node relayed; returns those not stale."""
        accepted = []
        for entry in entries:
            if self._is_stale(entry):
                continue
            self._release(entry.client_id)
            self._states[entry.client_id] = (entry.clock, entry.state)
            accepted.append(entry)
        return accepted

    def forget_peer(self, peer_id: str) -> list[AwarenessEntry]:
        """Drop a leaving peer's client ids; returns the removals to send the others."""
        removed = []
        for client_id in self._claims.pop(peer_id, set()):
            clock, state = self._states.pop(client_id)
            del self._owners[client_id]
            if state is not None:
                removed.append(AwarenessEntry(client_id, clock + 1, None))
        return removed

    def state_of(self, client_id: int) -> tuple[int, State] | None:
        """The clock and state recorded for a client id, if any."""
        return self._states.get(client_id)

    def snapshot(self) -> bytes:
        """Every present client's state as one awareness update, for a peer that joins."""
        return encode_awareness_update(
            [
                AwarenessEntry(client_id, clock, state)
                for client_id, (clock, state) in self._states.items()
                if state is not None
            ]
        )

    def _release(self, client_id: int) -> None:
        """Free a client id from its local owner (it is being recorded anew)."""
        owner = self._owners.pop(client_id, None)
        if owner is not None:
            self._claims[owner.peer_id].discard(client_id)

    def _is_stale(self, entry: AwarenessEntry) -> bool:
        current = self._states.get(entry.client_id)
        if current is None:
            return False
        clock, state = current
        removes = entry.state is None and state is not None
        return entry.clock < clock or (entry.clock == clock and not removes)
