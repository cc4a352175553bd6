"""Who reacts to whose events inside the transaction: the one place domains are wired together.

Content, documents, versions and scheduling publish events and know nothing of their consumers; this
module subscribes the consumers (`realtime_cms.events.subscribe_in_transaction`). The
subscriptions are process-wide rather than per Runtime: they are rules of the data (a status
change notifies the author iff it commits), true for every session whoever built it, so
service tests get them as the server does. `install` is idempotent; the Runtime calls it, and
so does the test suite's conftest. After-commit reactions need a process' live parts and
subscribe to the Runtime's `EventBus` instead (see the Runtime).
"""

from __future__ import annotations

from realtime_cms.content.events import ContentStatusChanged, Mentioned
from realtime_cms.documents.events import DocumentGranted
from realtime_cms.events import subscribe_in_transaction
from realtime_cms.notifications import subscribers as notifications
from realtime_cms.scheduling.events import ScheduleChanged


def install() -> None:
    """Subscribe every in-transaction consumer (again: no effect)."""
    subscribe_in_transaction(ContentStatusChanged, notifications.status_changed)
    subscribe_in_transaction(Mentioned, notifications.mentioned)
    subscribe_in_transaction(DocumentGranted, notifications.document_granted)
    subscribe_in_transaction(ScheduleChanged, notifications.schedule_changed)
