"""Request and response shapes for schedules, the publishing calendar and previews.

The time contract: `publish_at` and `expire_at` without an offset are wall-clock times in
`timezone` (the author's IANA zone); with an offset (or `Z`) they are that instant, shown in
`timezone`. Times are stored and answered in UTC, each with its `*_local` reading.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, WithJsonSchema

Status = Literal["scheduled", "published", "expired", "failed", "cancelled"]
# A wall-clock reading in the schedule's zone: ISO 8601 without an offset, which is not an
# RFC 3339 `date-time`, so documented as a pattern.
LocalTime = Annotated[
    datetime,
    PlainSerializer(lambda value: value.isoformat(), return_type=str),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}$",
            "description": "wall-clock time in the schedule's timezone, without offset",
        }
    ),
]
Weekday = Literal["MO", "TU", "WE", "TH", "FR", "SA", "SU"]
# Occurrences answered per recurring schedule, and at most by a preview.
NEXT_OCCURRENCES = 5
PREVIEW_MAX = 50


class RecurrenceIn(BaseModel):
    """How a schedule repeats, in its local wall-clock time (RFC 5545 semantics)."""

    model_config = ConfigDict(extra="forbid")

    pattern: Literal["daily", "weekly", "monthly", "yearly"]
    interval: int = Field(default=1, ge=1, le=1000)
    by_day: list[Weekday] = Field(default_factory=list, max_length=7)
    by_month_day: int | None = Field(default=None, ge=-31, le=31)
    # The last local date an occurrence may fall on, inclusive.
    until: date | None = None


class ScheduleCreate(BaseModel):
    """A publish (and optional expire) of the item; see the module's time contract."""

    model_config = ConfigDict(extra="forbid")

    publish_at: datetime
    expire_at: datetime | None = None
    timezone: str = Field(default="UTC", min_length=1, max_length=64)
    priority: int = Field(default=0, ge=0, le=10)
    recurrence: RecurrenceIn | None = None


class ScheduleUpdate(BaseModel):
    """Changes to a pending schedule; `expire_at` or `recurrence` null removes it. A new
    `timezone` alone keeps the instants and reads them in the new zone."""

    model_config = ConfigDict(extra="forbid")

    publish_at: datetime | None = None
    expire_at: datetime | None = None
    timezone: str | None = Field(default=None, min_length=1, max_length=64)
    priority: int | None = Field(default=None, ge=0, le=10)
    recurrence: RecurrenceIn | None = None


class RecurrenceOut(BaseModel):
    pattern: str
    interval: int
    by_day: list[str]
    by_month_day: int | None
    until: date | None


class ScheduleOut(BaseModel):
    """One schedule: its times in UTC and in its zone, and what happened to it."""

    id: int
    content_id: int
    site_id: int | None
    status: Status
    publish_at: datetime
    publish_at_local: LocalTime
    timezone: str
    expire_at: datetime | None
    expire_at_local: LocalTime | None
    priority: int
    recurrence: RecurrenceOut | None
    # The recurring schedule this occurrence belongs to.
    parent_id: int | None
    created_by: int | None
    published_at: datetime | None
    expired_at: datetime | None
    lateness_seconds: float | None
    last_error: str | None
    # A pending recurring schedule's next occurrences (UTC), this one first.
    next_occurrences: list[datetime]
    created_at: datetime | None
    updated_at: datetime | None


class CalendarQuery(BaseModel):
    """The window (`from` inclusive, `to` exclusive; at most 366 days), optionally one
    site's or one status's schedules."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    from_: datetime = Field(alias="from")
    to: datetime
    site_id: int | None = Field(default=None, ge=1, le=2**63 - 1)
    status: Status | None = None


class CalendarEntry(BaseModel):
    """A publish in the window: a schedule row, or (`projected`) an occurrence a recurring
    schedule will create when its previous one publishes."""

    schedule_id: int
    content_id: int
    site_id: int | None
    status: Status
    publish_at: datetime
    publish_at_local: LocalTime
    timezone: str
    expire_at: datetime | None
    priority: int
    projected: bool


class CalendarOut(BaseModel):
    entries: list[CalendarEntry]
    # Projections stopped at the cap (per rule or in all): ask for a narrower window.
    truncated: bool


class PreviewRequest(BaseModel):
    """A proposed schedule whose occurrences to show (the time contract as for a create)."""

    model_config = ConfigDict(extra="forbid")

    publish_at: datetime
    timezone: str = Field(default="UTC", min_length=1, max_length=64)
    recurrence: RecurrenceIn | None = None
    count: int = Field(default=10, ge=1, le=PREVIEW_MAX)


class Occurrence(BaseModel):
    at: datetime
    local: LocalTime


class PreviewOut(BaseModel):
    timezone: str
    occurrences: list[Occurrence]
