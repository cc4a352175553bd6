"""Domain events: services emit them on the session; subscribers run in it or after its commit.

Two kinds of subscriber, for two kinds of reaction:

- In the transaction (`subscribe_in_transaction`, run by `await publish(db, event)`): what
  must commit or roll back with the change itself, such as a notification row or a history
  entry. They are process-wide, wired once in `realtime_cms.subscriptions` and in force for
  every session, whoever built it (the Runtime, a CLI command, a service test): a rule of the
  data, like a foreign key, is not something a caller may forget to switch on. A failing one
  fails the change.
- After the commit (`EventBus.subscribe`): side effects (live pushes, wake-ups) that need a
  process' live parts. The bus travels with the sessions (`attach(factory, bus)`), so
  services need no reference to it; a rollback forgets the events, so no subscriber ever
  reacts to a change that did not happen. They must not block: they schedule work (a task,
  a queue, a publish) and return.

`emit(db, event)` records an event for the after-commit subscribers only; `publish` does
that and awaits the in-transaction subscribers.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
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


_IN_TRANSACTION: defaultdict[type[Event], list[Callable[[AsyncSession, Any], Awaitable[None]]]] = (
    defaultdict(list)
)


def subscribe_in_transaction(
    kind: type[E], handler: Callable[[AsyncSession, E], Awaitable[None]]
) -> Callable[[], None]:
    """Await `handler(db, event)` inside every transaction that publishes an event of `kind`
    (once, however often it is subscribed); returns the unsubscribe."""
    handlers = _IN_TRANSACTION[kind]
    if handler not in handlers:
        handlers.append(handler)

    def unsubscribe() -> None:
        if handler in handlers:
            handlers.remove(handler)

    return unsubscribe


def attach(factory: async_sessionmaker[AsyncSession], bus: EventBus) -> None:
    """Every session of `factory` hands its committed events to `bus`."""
    factory.configure(info={**factory.kw.get("info", {}), _BUS: bus})


def emit(db: AsyncSession, item: Event) -> None:
    """Record an event of this transaction; subscribers get it once the transaction commits."""
    db.info.setdefault(_PENDING, []).append(item)


async def publish(db: AsyncSession, item: Event) -> None:
    """Emit `item`, then await its in-transaction subscribers in subscription order; what
    one of them raises propagates, so the caller's transaction fails with it."""
    emit(db, item)
    for handler in list(_IN_TRANSACTION.get(type(item), ())):
        await handler(db, item)


def withdraw(db: AsyncSession, kind: type[E]) -> list[E]:
    """Take back this transaction's pending events of `kind`: after-commit subscribers will
    not get them (for a caller that handles them itself)."""
    pending: list[Event] = db.info.get(_PENDING, [])
    taken = [item for item in pending if isinstance(item, kind)]
    if taken:
        pending[:] = [item for item in pending if not isinstance(item, kind)]
    return taken


@sa_event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    pending: list[Event] = session.info.pop(_PENDING, [])
    bus: EventBus | None = session.info.get(_BUS)
    if pending and bus is not None:
        bus.dispatch(pending)


@sa_event.listens_for(Session, "after_rollback")
def _after_rollback(session: Session) -> None:
    session.info.pop(_PENDING, None)
