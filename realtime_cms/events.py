"""Domain events: services emit them on the session, subscribers run once it commits.

A service calls `emit(db, SomeEvent(...))` where the change is made; nothing happens until
the transaction commits (a rollback forgets the events), so no subscriber ever reacts to a
change that did not happen. The bus travels with the sessions (`attach(factory, bus)`), so
services need no reference to it. After-commit subscribers must not block: they schedule
work (a task, a publish) and return.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import event as sa_event
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

logger = logging.getLogger(__name__)

_BUS = "rcms_event_bus"
_PENDING = "rcms_pending_events"


@dataclass(frozen=True, slots=True)
class Event:
    """Base of every domain event."""


E = TypeVar("E", bound=Event)


@dataclass(frozen=True, slots=True)
class AccessChanged(Event):
    """A user's credentials or permissions changed: their live connections must be judged
    again at once (deactivated, deleted, logged out, sessions revoked, password set, roles
    changed). The connections concerned are those of `user_id` (None: any user) and, when
    given, of the login session `session_id` only (a logout); both None means every
    connection (a role's permissions changed)."""

    user_id: int | None
    session_id: str | None = None


class EventBus:
    """Subscribers by event type; `dispatch` runs them in subscription order."""

    def __init__(self) -> None:
        self._subscribers: defaultdict[type[Event], list[Callable[[Any], None]]] = defaultdict(list)

    def subscribe(self, kind: type[E], callback: Callable[[E], None]) -> Callable[[], None]:
        """Call `callback` with every committed event of `kind`; returns the unsubscribe."""
        self._subscribers[kind].append(callback)
        return lambda: self._subscribers[kind].remove(callback)

    def dispatch(self, events: list[Event]) -> None:
        """Hand committed events to their subscribers; one failing does not stop the rest."""
        for item in events:
            for callback in list(self._subscribers.get(type(item), ())):
                try:
                    callback(item)
                except Exception:
                    logger.exception("a subscriber of %s failed", type(item).__name__)


def attach(factory: async_sessionmaker[AsyncSession], bus: EventBus) -> None:
    """Every session of `factory` hands its committed events to `bus`."""
    factory.configure(info={**factory.kw.get("info", {}), _BUS: bus})


def emit(db: AsyncSession, item: Event) -> None:
    """Record an event of this transaction; subscribers get it once the transaction commits."""
    db.info.setdefault(_PENDING, []).append(item)


@sa_event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    pending: list[Event] = session.info.pop(_PENDING, [])
    bus: EventBus | None = session.info.get(_BUS)
    if pending and bus is not None:
        bus.dispatch(pending)


@sa_event.listens_for(Session, "after_rollback")
def _after_rollback(session: Session) -> None:
    session.info.pop(_PENDING, None)
