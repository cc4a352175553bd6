"""The versions' background work: autosaves, and the retention of old autosaves, as jobs.

`versions.autosave` saves an item's current content (its live document's, wherever it is
loaded, else the stored document) as an autosave version unless it equals the latest one;
realtime_cms/versions/autosave.py queues it, one pending per item (`autosave:<id>`).

`versions.retention` runs every `RCMS_VERSION_RETENTION_INTERVAL_SECONDS` (exactly once
across processes): it fans out one `versions.prune` job per item that may have autosaves to
prune, `FAN_OUT` items per job (a next job carries on after the last id), so that every
transaction stays small and items are pruned in parallel by any worker. Each `versions.prune`
prunes one item as the settings' policy says, in the job's own transaction.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from realtime_cms.config import Settings
from realtime_cms.errors import NotFound
from realtime_cms.jobs.queue import enqueue
from realtime_cms.jobs.registry import JobContext, JobType
from realtime_cms.jobs.schedules import Schedule
from realtime_cms.models.auth import User
from realtime_cms.principal import system
from realtime_cms.rbac.catalog import PERMISSIONS
from realtime_cms.versions.retention import Policy, items_to_prune, prune_item
from realtime_cms.versions.service import record_version

# Items a `versions.retention` job queues prune jobs for (one INSERT each, one transaction).
FAN_OUT = 500

_SYSTEM = system(frozenset(PERMISSIONS))


def autosave_key(item_id: int) -> str:
    """The dedupe key of an item's pending autosave job."""
    return f"autosave:{item_id}"


def prune_key(item_id: int) -> str:
    return f"versions.prune:{item_id}"


class AutosavePayload(BaseModel):
    model_config = {"extra": "forbid"}

    item_id: int = Field(ge=1)
    # Who the autosave is attributed to: the last editor of the changes it saves.
    user_id: int | None = Field(default=None, ge=1)


class PrunePayload(BaseModel):
    model_config = {"extra": "forbid"}

    item_id: int = Field(ge=1)


class RetentionPayload(BaseModel):
    model_config = {"extra": "forbid"}

    # Items with a greater id are looked at (a fan-out carrying on after its last item).
    after_item_id: int = Field(default=0, ge=0)


async def _autosave(context: JobContext, payload: AutosavePayload) -> str:
    db = context.db
    try:
        state = await context.runtime.content.current(payload.item_id)
        user_id = payload.user_id
        if user_id is not None and await db.get(User, user_id) is None:
            user_id = None  # the editor's account was deleted since
        version = await record_version(
            db,
            _SYSTEM,
            item_id=payload.item_id,
            state=state,
            user_id=user_id,
            is_autosave=True,
            change_type="autosave",
            skip_unchanged=True,
        )
    except NotFound:
        return "the item no longer exists"
    if version is None:
        return "unchanged since the latest version"
    return f"saved version {version.version_number}"


async def _prune(context: JobContext, payload: PrunePayload) -> str:
    policy = Policy.of(context.runtime.settings)
    try:
        pruned = await prune_item(context.db, payload.item_id, policy, now=context.started_at)
    except NotFound:
        return "the item no longer exists"
    return f"pruned {pruned} autosaves"


async def _retention(context: JobContext, payload: RetentionPayload) -> str:
    db = context.db
    policy = Policy.of(context.runtime.settings)
    items = await items_to_prune(
        db, policy, now=context.started_at, after=payload.after_item_id, limit=FAN_OUT
    )
    queued = 0
    for item_id in items:
        job_id = await enqueue(
            db, PRUNE, PrunePayload(item_id=item_id), dedupe_key=prune_key(item_id)
        )
        queued += job_id is not None
    output = f"queued {queued} prune jobs"
    if len(items) == FAN_OUT:
        await enqueue(db, RETENTION, RetentionPayload(after_item_id=items[-1]))
        output += f"; carrying on after item {items[-1]}"
    return output


AUTOSAVE = JobType(
    "versions.autosave",
    AutosavePayload,
    _autosave,
    timeout_seconds=60.0,
    description="Save an autosave version of a content item's current content",
)
PRUNE = JobType(
    "versions.prune",
    PrunePayload,
    _prune,
    queue="maintenance",
    max_attempts=3,
    description="Prune one item's old autosaves (RCMS_VERSION_AUTOSAVE_KEEP, _MAX_AGE_DAYS)",
)
RETENTION = JobType(
    "versions.retention",
    RetentionPayload,
    _retention,
    queue="maintenance",
    max_attempts=3,
    operator=True,
    description="Queue a versions.prune job for every item that may have old autosaves",
)
JOB_TYPES = (AUTOSAVE, PRUNE, RETENTION)


def retention_schedule(settings: Settings) -> Schedule:
    return Schedule(
        RETENTION.name, RETENTION, every_seconds=settings.version_retention_interval_seconds
    )
