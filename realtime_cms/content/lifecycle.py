"""The status lifecycle of a content item: allowed transitions and the timestamps they set.

draft -> scheduled | published; scheduled -> published | draft; published -> archived |
expired; archived -> draft; expired -> draft. Every status change (and moving the
`published_at` of a scheduled or published item) needs `content.publish`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from realtime_cms.errors import Conflict, Unprocessable
from realtime_cms.models.base import utcnow
from realtime_cms.principal import Principal
from realtime_cms.rbac.authorize import authorize

TRANSITIONS: dict[str, frozenset[str]] = {
    "draft": frozenset({"scheduled", "published"}),
    "scheduled": frozenset({"published", "draft"}),
    "published": frozenset({"archived", "expired"}),
    "archived": frozenset({"draft"}),
    "expired": frozenset({"draft"}),
}
# Statuses in which an item must have every required custom field.
NEEDS_REQUIRED_FIELDS = frozenset({"scheduled", "published"})


# Every backend stores these years (MySQL's DATETIME starts at 1000).
_YEARS = range(1970, 10_000)


def _utc(value: datetime) -> datetime:
    aware = value if value.tzinfo else value.replace(tzinfo=UTC)
    try:
        moment = aware.astimezone(UTC).replace(microsecond=0)
    except OverflowError:
        moment = None
    if moment is None or moment.year not in _YEARS:
        raise _refuse("invalid_published_at", "published_at must fall in the years 1970 to 9999")
    return moment


def _refuse(code: str, message: str) -> Unprocessable:
    return Unprocessable(
        message,
        code=code,
        errors=[{"loc": ["body", "published_at"], "message": message, "type": code}],
    )


def _stamps(status: str, published_at: datetime | None, now: datetime) -> dict[str, Any]:
    """The timestamp columns an item entering `status` gets."""
    if status == "draft":
        return {"published_at": None, "publish_date": None, "archived_at": None, "expired_at": None}
    if status == "archived":
        return {"archived_at": now}
    if status == "expired":
        return {"expired_at": now}
    if status == "scheduled":
        if published_at is None:
            raise _refuse("publish_date_required", "Scheduling needs a future published_at")
        if published_at <= now:
            raise _refuse("schedule_in_past", "A scheduled published_at must be in the future")
    when = published_at or now
    if status == "published" and when > now:
        raise _refuse("published_at_in_future", "Schedule the item to publish it later")
    return {
        "published_at": when,
        "publish_date": when.date(),
        "archived_at": None,
        "expired_at": None,
    }


def plan_status(
    principal: Principal, current: str, wanted: str | None, published_at: datetime | None
) -> dict[str, Any]:
    """The column changes for moving an item from `current` to `wanted` (None: unchanged).

    Raises Conflict(invalid_transition) for a move the lifecycle forbids, Forbidden without
    `content.publish`, Unprocessable for a missing, past or future `published_at`.
    """
    target = wanted or current
    moment = _utc(published_at) if published_at is not None else None
    if target == current and moment is None:
        return {}
    if target == current and current not in ("scheduled", "published"):
        raise _refuse(
            "published_at_not_applicable",
            "published_at applies only to scheduled and published items",
        )
    if target != current and target not in TRANSITIONS[current]:
        allowed = ", ".join(sorted(TRANSITIONS[current]))
        raise Conflict(
            f"A {current} item cannot become {target} (allowed: {allowed})",
            code="invalid_transition",
        )
    authorize(principal, "content.publish")
    return {"status": target, **_stamps(target, moment, utcnow())}
