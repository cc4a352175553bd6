"""Recurrence of a schedule: which UTC instants a repeating publish falls on.

Pure functions, no database. A schedule's first occurrence and its rule are kept in the
author's local wall-clock time (an IANA zone); occurrences are expanded with `dateutil.rrule`
in that wall-clock time and only then converted to UTC, so "daily at 09:00 Europe/Berlin"
stays at 09:00 for the reader in Berlin all year.

The DST rule:

- Recurrence is in wall-clock time: "daily at 09:00 Europe/Berlin" is 08:00 UTC in winter
  (CET, UTC+1) and 07:00 UTC in summer (CEST, UTC+2).
- A local time that does not exist (the clocks spring forward over it) is moved forward by
  the length of the gap: 02:30 in Europe/Berlin on 2026-03-29 is published at 03:30 local
  (01:30 UTC). This is what `zoneinfo` gives for `fold=0`.
- A local time that exists twice (the clocks fall back over it) is the first of the two, the
  earlier instant, still on daylight time (`fold=0`): 02:30 in Europe/Berlin on 2026-10-25 is
  00:30 UTC, not 01:30 UTC. Each occurrence is published once.
- No UTC instant is returned twice: where a zone skips a whole day (Pacific/Apia on
  2011-12-30) the moved-forward occurrence lands on the next day's and counts once.

The calendar rule (RFC 5545, as `dateutil.rrule` implements it):

- `first` is always the first occurrence, even when the rule would not pick it (monthly on
  the last day, starting on the 15th); the rule gives the ones after it.
- Monthly repeats on first's day of the month; a month without that day is skipped, not
  clamped: monthly from 31 January is Jan, Mar, May, Jul, Aug, Oct, Dec 31.
- `by_month_day` counts from the month's end when negative: -1 is the last day of every
  month (28/29 February, 30 April, 31 May).
- Yearly repeats on first's month and day; from 29 February it falls on leap years only
  (2028, 2032, 2036). With `by_month_day` it is that day of first's month.
- Weekly with no `by_day` repeats on first's weekday; `by_day` is only for weekly.
- `until` is the last local date an occurrence may fall on, inclusive.
"""

from __future__ import annotations

import calendar
import math
import zoneinfo
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import MAXYEAR, UTC, date, datetime, time
from functools import cache
from typing import Any, Literal, cast, get_args
from zoneinfo import ZoneInfo

from dateutil import rrule

Pattern = Literal["daily", "weekly", "monthly", "yearly"]

_PATTERNS: tuple[str, ...] = get_args(Pattern)
# rrule's YEARLY, MONTHLY, WEEKLY and DAILY, as narrow as its stubs want them.
_Frequency = Literal[0, 1, 2, 3]
_FREQUENCIES: dict[str, _Frequency] = {
    "daily": rrule.DAILY,
    "weekly": rrule.WEEKLY,
    "monthly": rrule.MONTHLY,
    "yearly": rrule.YEARLY,
}
_WEEKDAYS: dict[str, rrule.weekday] = {
    "MO": rrule.MO,
    "TU": rrule.TU,
    "WE": rrule.WE,
    "TH": rrule.TH,
    "FR": rrule.FR,
    "SA": rrule.SA,
    "SU": rrule.SU,
}
MAX_INTERVAL = 1000
# The Gregorian calendar repeats every 400 years: one cycle of visited months decides whether
# a day of the month ever occurs.
_CALENDAR_CYCLE_MONTHS = 400 * 12


class InvalidRecurrence(ValueError):
    """A schedule's timezone or recurrence that cannot be expanded; `field` names the input."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


@dataclass(frozen=True, slots=True)
class Recurrence:
    """How a schedule repeats, in its local wall-clock time; `check` says whether it may."""

    pattern: Pattern
    interval: int = 1
    by_day: tuple[str, ...] = ()
    by_month_day: int | None = None
    until: date | None = None

    @classmethod
    def from_columns(cls, row: Any) -> Recurrence | None:
        """The recurrence stored on a `ScheduledContent`-like row; None if it does not repeat."""
        pattern = row.recurrence_pattern
        if not pattern:
            return None
        if pattern not in _PATTERNS:
            raise InvalidRecurrence("recurrence.pattern", f"unknown pattern {pattern!r}")
        by_day = row.recurrence_byday or ""
        return cls(
            pattern=cast(Pattern, pattern),
            interval=1 if row.recurrence_interval is None else row.recurrence_interval,
            by_day=tuple(day.strip().upper() for day in by_day.split(",") if day.strip()),
            by_month_day=row.recurrence_bymonthday,
            until=row.recurrence_end_date,
        )

    def columns(self) -> dict[str, Any]:
        """The `ScheduledContent` column values that store this recurrence."""
        return {
            "recurrence_pattern": self.pattern,
            "recurrence_interval": self.interval,
            "recurrence_byday": ",".join(self.by_day) or None,
            "recurrence_bymonthday": self.by_month_day,
            "recurrence_end_date": self.until,
            "is_recurring": True,
        }


@cache
def _zone_names() -> frozenset[str]:
    # `localtime` is the server's own zone under another name, not an IANA one.
    return frozenset(zoneinfo.available_timezones() - {"localtime"})


def zone(name: str) -> ZoneInfo:
    """The IANA zone `name`; refuses anything else, including names that read as file paths.

    Checked against the installed zone list rather than left to `ZoneInfo`, which opens any
    relative path under its search path (directories, `posixrules`) and matches case-
    insensitively on some filesystems.
    """
    if name not in _zone_names():
        raise InvalidRecurrence("timezone", f"unknown timezone {name!r}")
    return ZoneInfo(name)


def to_utc(wall: datetime, tz: ZoneInfo) -> datetime:
    """A naive local wall-clock time as an aware UTC instant, by the module's DST rule."""
    if wall.tzinfo is not None:
        raise ValueError(f"expected a naive wall-clock time, got {wall!r}")
    return wall.replace(tzinfo=tz, fold=0).astimezone(UTC)


def to_local(moment: datetime, tz: ZoneInfo) -> datetime:
    """An aware instant as the naive wall-clock time it reads in `tz`."""
    _require_aware(moment)
    return moment.astimezone(tz).replace(tzinfo=None, fold=0)


def occurrences(
    first: datetime,
    tz: ZoneInfo,
    rule: Recurrence | None,
    *,
    after: datetime | None = None,
    until: datetime | None = None,
    limit: int = 100,
) -> list[datetime]:
    """The schedule's occurrences as aware UTC instants, ascending, each instant once.

    `first` is the first occurrence, naive local wall-clock time. Only instants strictly after
    `after` and at or before `until` (both aware) are returned, at most `limit` of them.
    The expansion walks from `first`, so its cost grows with the occurrences before `after`.
    """
    for bound in (after, until):
        if bound is not None:
            _require_aware(bound)
    found: list[datetime] = []
    for wall in _walls(first, rule):
        if len(found) >= limit:
            break
        moment = to_utc(wall, tz)
        if until is not None and moment > until:
            break
        # Instants are non-decreasing (one per local day at most); `found[-1]` drops the
        # repeat when a skipped day moves an occurrence onto the next one.
        if (after is None or moment > after) and (not found or moment > found[-1]):
            found.append(moment)
    return found


def next_after(
    first: datetime, tz: ZoneInfo, rule: Recurrence | None, moment: datetime
) -> datetime | None:
    """The first occurrence strictly after `moment`, or None when the schedule has ended."""
    upcoming = occurrences(first, tz, rule, after=moment, limit=1)
    return upcoming[0] if upcoming else None


def check(first: datetime, tz: ZoneInfo, rule: Recurrence) -> None:
    """Refuse a rule that cannot be stored or would never fire, naming the offending field.

    `tz` is taken so callers hand over the whole schedule; every check here is in wall-clock
    time and does not depend on it.
    """
    if rule.pattern not in _PATTERNS:
        raise InvalidRecurrence("recurrence.pattern", f"unknown pattern {rule.pattern!r}")
    if not 1 <= rule.interval <= MAX_INTERVAL:
        raise InvalidRecurrence(
            "recurrence.interval", f"interval must be between 1 and {MAX_INTERVAL}"
        )
    _check_by_day(rule)
    _check_by_month_day(rule)
    if rule.until is not None and rule.until < first.date():
        raise InvalidRecurrence("recurrence.until", "until is before the first occurrence")
    local = _local_rule(first, rule)
    if local is None or next(iter(local), None) is None:
        raise InvalidRecurrence("recurrence", "the rule has no occurrence")


def _check_by_day(rule: Recurrence) -> None:
    if not rule.by_day:
        return
    if rule.pattern != "weekly":
        raise InvalidRecurrence("recurrence.by_day", "by_day is only for a weekly pattern")
    unknown = [day for day in rule.by_day if day not in _WEEKDAYS]
    if unknown:
        raise InvalidRecurrence("recurrence.by_day", f"unknown days {unknown!r}; use MO..SU")
    if len(set(rule.by_day)) != len(rule.by_day):
        raise InvalidRecurrence("recurrence.by_day", "a day is listed twice")


def _check_by_month_day(rule: Recurrence) -> None:
    day = rule.by_month_day
    if day is None:
        return
    if rule.pattern not in ("monthly", "yearly"):
        raise InvalidRecurrence(
            "recurrence.by_month_day", "by_month_day is only for a monthly or yearly pattern"
        )
    if day == 0 or not -31 <= day <= 31:
        raise InvalidRecurrence(
            "recurrence.by_month_day", "by_month_day must be 1..31, or -31..-1 from the end"
        )


def _walls(first: datetime, rule: Recurrence | None) -> Iterator[datetime]:
    """Occurrences as naive local wall-clock times, ascending: `first`, then the rule's."""
    if rule is not None and rule.until is not None and first.date() > rule.until:
        return iter(())
    walls = rrule.rruleset()
    walls.rdate(first)
    local = None if rule is None else _local_rule(first, rule)
    if local is not None:
        walls.rrule(local)
    return iter(walls)


def _local_rule(first: datetime, rule: Recurrence) -> rrule.rrule | None:
    """The rule as a wall-clock `rrule` from `first`; None if its day of month never occurs.

    rrule would look for a 30 February in every year up to 9999 (half a second) before
    giving up, and its `until` does not stop a search that finds no candidate.
    """
    if not _month_day_occurs(first, rule):
        return None
    # Without `bymonth`, rrule reads yearly-with-bymonthday as every month's day.
    by_month = first.month if rule.pattern == "yearly" and rule.by_month_day else None
    return rrule.rrule(
        _FREQUENCIES[rule.pattern],
        dtstart=first,
        interval=rule.interval,
        byweekday=[_WEEKDAYS[day] for day in rule.by_day] or None,
        bymonthday=rule.by_month_day,
        bymonth=by_month,
        until=None if rule.until is None else datetime.combine(rule.until, time.max),
        cache=False,
    )


def _month_day_occurs(first: datetime, rule: Recurrence) -> bool:
    """Whether some month the rule visits has its `by_month_day` (31, or 29 February)."""
    if rule.by_month_day is None or abs(rule.by_month_day) <= 28:
        return True
    step = rule.interval * (12 if rule.pattern == "yearly" else 1)
    start = first.year * 12 + first.month - 1
    stop = min(start + math.lcm(step, _CALENDAR_CYCLE_MONTHS), (MAXYEAR + 1) * 12)
    return any(
        calendar.monthrange(*_year_month(index))[1] >= abs(rule.by_month_day)
        for index in range(start, stop, step)
    )


def _year_month(index: int) -> tuple[int, int]:
    year, month = divmod(index, 12)
    return year, month + 1


def _require_aware(moment: datetime) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"expected an aware datetime, got {moment!r}")
