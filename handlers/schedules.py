"""REST for scheduled publishing: an item's schedules, one schedule, the calendar, previews."""

from __future__ import annotations

from handlers import keys
from handlers.api import Call, Routes
from realtime_cms.listing import Page
from realtime_cms.scheduling import calendar, service
from realtime_cms.scheduling.schemas import (
    CalendarOut,
    CalendarQuery,
    PreviewOut,
    PreviewRequest,
    ScheduleCreate,
    ScheduleOut,
    ScheduleUpdate,
)
from realtime_cms.scheduling.state import Movers, view

routes = Routes("schedules")

ITEM_SCHEDULES = "/api/v1/content-items/{item_id:\\d+}/schedules"
SCHEDULES = "/api/v1/schedules"
SCHEDULE = SCHEDULES + "/{schedule_id:\\d+}"


def _movers(call: Call) -> Movers:
    return Movers(call.app[keys.CONTENT], call.app[keys.PASSWORDS])


@routes.get(
    ITEM_SCHEDULES,
    "List an item's schedules",
    permission="content.view",
    response=ScheduleOut,
)
async def list_item_schedules(call: Call) -> Page[ScheduleOut]:
    """By publish time, every status (pending, done, failed, cancelled); one page."""
    rows = await service.list_schedules(call.db, call.principal, item_id=call.path_int("item_id"))
    return Page(items=[view(row) for row in rows], total=len(rows), limit=len(rows), offset=0)


@routes.post(
    ITEM_SCHEDULES,
    "Schedule an item's publish",
    permission="content.publish",
    body=ScheduleCreate,
    response=ScheduleOut,
    status=201,
)
async def create_schedule(call: Call) -> ScheduleOut:
    """`publish_at`/`expire_at` without an offset are wall-clock times in `timezone`; with
    one, that instant. Needs what a manual publish needs (`content.publish`, and
    `content.update` on the item or `.own` for its author); a draft becomes `scheduled`. The
    publish runs as the caller. 422 names the field: `publish_at` in the past, `expire_at`
    not after it, an unknown `timezone`, a `recurrence` that never fires."""
    row = await service.create_schedule(
        call.db, call.principal, _movers(call), item_id=call.path_int("item_id"), data=call.body
    )
    return view(row)


@routes.get(SCHEDULE, "Read a schedule", permission="content.view", response=ScheduleOut)
async def get_schedule(call: Call) -> ScheduleOut:
    return view(await service.get_schedule(call.db, call.principal, call.path_int("schedule_id")))


@routes.patch(
    SCHEDULE,
    "Change a pending schedule",
    permission="content.publish",
    body=ScheduleUpdate,
    response=ScheduleOut,
)
async def update_schedule(call: Call) -> ScheduleOut:
    """Times, zone, priority or recurrence of a `scheduled` schedule (409 otherwise)."""
    row = await service.update_schedule(
        call.db,
        call.principal,
        _movers(call),
        schedule_id=call.path_int("schedule_id"),
        data=call.body,
    )
    return view(row)


@routes.delete(SCHEDULE, "Cancel a pending schedule", permission="content.publish", status=204)
async def cancel_schedule(call: Call) -> None:
    """The schedule (with a recurring one's pending occurrence) becomes `cancelled`; a
    `scheduled` item waiting for no other schedule becomes a draft."""
    await service.cancel_schedule(
        call.db, call.principal, _movers(call), schedule_id=call.path_int("schedule_id")
    )


@routes.get(
    SCHEDULES,
    "The publishing calendar",
    permission="content.view",
    query=CalendarQuery,
    response=CalendarOut,
)
async def schedule_calendar(call: Call) -> CalendarOut:
    """Schedules publishing in [`from`, `to`) (aware times, at most 366 days apart), with the
    occurrences recurring schedules will add (`projected: true`)."""
    return await calendar.calendar(call.db, call.principal, call.params)


@routes.post(
    SCHEDULES + "/preview",
    "Preview a schedule's occurrences",
    permission="content.view",
    body=PreviewRequest,
    response=PreviewOut,
)
async def preview_schedule(call: Call) -> PreviewOut:
    """The next `count` occurrences of a proposed publish time, zone and recurrence, in UTC
    and local time; 422 names the bad field. Stores nothing."""
    return calendar.preview(call.body)
