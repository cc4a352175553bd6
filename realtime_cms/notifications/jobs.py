"""What the notifications domain runs in the background: digests and worker-notification batches.

`notifications.digests` runs every `RCMS_NOTIFICATION_DIGEST_INTERVAL_SECONDS`, once per slot
however many workers tick (`schedules`). It only looks for due digests and enqueues one
`notifications.digest` job per user and frequency (pending at most once: a dedupe key), which
claims and builds that digest in its own transaction (digests.py). So one user's digest that
keeps failing (an address the mail job refuses, a deadlock) is retried on its own and never
holds back anyone else's, and the claims of many users are not one long transaction.
`notifications.worker_batch` lives with worker notifications (workers.py).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from realtime_cms.config import Settings
from realtime_cms.jobs.queue import enqueue
from realtime_cms.jobs.registry import JobContext, JobType, NoPayload
from realtime_cms.jobs.schedules import Schedule
from realtime_cms.notifications import digests, workers
from realtime_cms.notifications.service import schedule_push


class DigestPayload(BaseModel):
    """The payload of `notifications.digest`: whose digest of which frequency."""

    model_config = {"extra": "forbid"}
    user_id: int = Field(ge=1)
    frequency: Literal["hourly", "daily"]


async def _find_due(context: JobContext, payload: NoPayload) -> str:
    groups = await digests.due_groups(context.db, context.started_at.replace(microsecond=0))
    queued = 0
    for group in groups:
        job_id = await enqueue(
            context.db,
            DIGEST,
            {"user_id": group.user_id, "frequency": group.frequency},
            dedupe_key=f"notifications.digest:{group.user_id}:{group.frequency}",
        )
        queued += job_id is not None
    return f"due: {len(groups)}, queued: {queued}"


async def _deliver(context: JobContext, payload: DigestPayload) -> str:
    group = digests.Group(payload.user_id, payload.frequency)
    result = await digests.claim(context.db, group, context.started_at.replace(microsecond=0))
    if result is None:
        return "nothing due: already delivered"
    schedule_push(context.db, context.runtime.notifier, context.after_commit)
    return f"{payload.frequency} digest for user {payload.user_id}: {result.emails} mails"


DIGESTS = JobType(
    "notifications.digests",
    NoPayload,
    _find_due,
    max_attempts=3,
    description="Find due hourly/daily digests and queue one job per user and frequency",
)
DIGEST = JobType(
    "notifications.digest",
    DigestPayload,
    _deliver,
    description="Claim and deliver one user's due digest (in-app summary and mail)",
)
JOB_TYPES: tuple[JobType[Any], ...] = (DIGESTS, DIGEST, workers.WORKER_BATCH)


def schedules(settings: Settings) -> list[Schedule]:
    """The digest scan, every `notification_digest_interval_seconds` (at least 1 s)."""
    every = max(1.0, settings.notification_digest_interval_seconds)
    return [Schedule("notifications.digests", DIGESTS, every_seconds=every)]
