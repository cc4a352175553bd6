"""Recurrence expansion: a table of expected UTC instants, worked out by hand from the offsets.

Europe/Berlin is CET (UTC+1) until 2026-03-29 02:00, CEST (UTC+2) until 2026-10-25 03:00.
America/New_York is EST (UTC-5) until 2026-03-08 02:00, EDT (UTC-4) until 2026-11-01 02:00.
Pacific/Apia went from UTC-10 straight to UTC+14 at the end of 2011-12-29, skipping 30 Dec.
2026-03-02, 2026-03-09 and 2026-03-16 are Mondays.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from types import SimpleNamespace
from typing import Any

import pytest

from realtime_cms.models.workflows import ScheduledContent
from realtime_cms.scheduling.recurrence import (
    InvalidRecurrence,
    Recurrence,
    check,
    next_after,
    occurrences,
    to_local,
    to_utc,
    zone,
)

DAILY = Recurrence("daily")


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def iso(moments: list[datetime]) -> list[str]:
    return [moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ") for moment in moments]


EXPANSIONS: list[Any] = [
    pytest.param(
        "Europe/Berlin",
        datetime(2026, 3, 27, 9, 0),
        DAILY,
        {"limit": 4},
        ["2026-03-27T08:00Z", "2026-03-28T08:00Z", "2026-03-29T07:00Z", "2026-03-30T07:00Z"],
        id="berlin daily 09:00 moves from 08:00Z to 07:00Z on spring forward",
    ),
    pytest.param(
        "Europe/Berlin",
        datetime(2026, 10, 23, 9, 0),
        DAILY,
        {"limit": 4},
        ["2026-10-23T07:00Z", "2026-10-24T07:00Z", "2026-10-25T08:00Z", "2026-10-26T08:00Z"],
        id="berlin daily 09:00 moves back to 08:00Z on fall back",
    ),
    pytest.param(
        "Europe/Berlin",
        datetime(2026, 3, 28, 2, 30),
        DAILY,
        {"limit": 3},
        ["2026-03-28T01:30Z", "2026-03-29T01:30Z", "2026-03-30T00:30Z"],
        id="berlin nonexistent 02:30 is published at 03:30 local",
    ),
    pytest.param(
        "Europe/Berlin",
        datetime(2026, 10, 24, 2, 30),
        DAILY,
        {"limit": 3},
        ["2026-10-24T00:30Z", "2026-10-25T00:30Z", "2026-10-26T01:30Z"],
        id="berlin ambiguous 02:30 is the first, daylight one",
    ),
    pytest.param(
        "America/New_York",
        datetime(2026, 3, 7, 2, 30),
        DAILY,
        {"limit": 3},
        ["2026-03-07T07:30Z", "2026-03-08T07:30Z", "2026-03-09T06:30Z"],
        id="new york nonexistent 02:30 is published at 03:30 EDT",
    ),
    pytest.param(
        "America/New_York",
        datetime(2026, 10, 31, 2, 30),
        DAILY,
        {"limit": 3},
        ["2026-10-31T06:30Z", "2026-11-01T07:30Z", "2026-11-02T07:30Z"],
        id="new york 02:30 on fall back day exists once, in EST",
    ),
    pytest.param(
        "America/New_York",
        datetime(2026, 10, 31, 1, 30),
        DAILY,
        {"limit": 3},
        ["2026-10-31T05:30Z", "2026-11-01T05:30Z", "2026-11-02T06:30Z"],
        id="new york ambiguous 01:30 is the first, EDT one",
    ),
    pytest.param(
        "America/New_York",
        datetime(2026, 3, 2, 9, 0),
        Recurrence("weekly", by_day=("WE", "MO")),
        {"limit": 4},
        ["2026-03-02T14:00Z", "2026-03-04T14:00Z", "2026-03-09T13:00Z", "2026-03-11T13:00Z"],
        id="new york weekly mon wed 09:00 across spring forward",
    ),
    pytest.param(
        "Pacific/Apia",
        datetime(2011, 12, 29, 9, 0),
        DAILY,
        {"limit": 3},
        ["2011-12-29T19:00Z", "2011-12-30T19:00Z", "2011-12-31T19:00Z"],
        id="apia skipped day lands on the next and is published once",
    ),
    pytest.param(
        "UTC",
        datetime(2026, 1, 31, 12, 0),
        Recurrence("monthly"),
        {"until": utc("2026-12-31T23:59Z")},
        [
            "2026-01-31T12:00Z",
            "2026-03-31T12:00Z",
            "2026-05-31T12:00Z",
            "2026-07-31T12:00Z",
            "2026-08-31T12:00Z",
            "2026-10-31T12:00Z",
            "2026-12-31T12:00Z",
        ],
        id="monthly on the 31st skips months without one",
    ),
    pytest.param(
        "Europe/Berlin",
        datetime(2026, 1, 31, 9, 0),
        Recurrence("monthly", by_month_day=31, until=date(2026, 12, 31)),
        {},
        [
            "2026-01-31T08:00Z",
            "2026-03-31T07:00Z",
            "2026-05-31T07:00Z",
            "2026-07-31T07:00Z",
            "2026-08-31T07:00Z",
            "2026-10-31T08:00Z",
            "2026-12-31T08:00Z",
        ],
        id="monthly by_month_day 31 in berlin follows the offset",
    ),
    pytest.param(
        "UTC",
        datetime(2026, 1, 31, 12, 0),
        Recurrence("monthly", by_month_day=-1),
        {"limit": 5},
        [
            "2026-01-31T12:00Z",
            "2026-02-28T12:00Z",
            "2026-03-31T12:00Z",
            "2026-04-30T12:00Z",
            "2026-05-31T12:00Z",
        ],
        id="monthly by_month_day -1 is the last day of every month",
    ),
    pytest.param(
        "UTC",
        datetime(2026, 1, 15, 12, 0),
        Recurrence("monthly", by_month_day=-1),
        {"limit": 3},
        ["2026-01-15T12:00Z", "2026-01-31T12:00Z", "2026-02-28T12:00Z"],
        id="first is an occurrence even when the rule would not pick it",
    ),
    pytest.param(
        "UTC",
        datetime(2028, 2, 29, 12, 0),
        Recurrence("yearly"),
        {"limit": 3},
        ["2028-02-29T12:00Z", "2032-02-29T12:00Z", "2036-02-29T12:00Z"],
        id="yearly from 29 february falls on leap years only",
    ),
    pytest.param(
        "UTC",
        datetime(2026, 2, 28, 12, 0),
        Recurrence("yearly", by_month_day=-1),
        {"limit": 3},
        ["2026-02-28T12:00Z", "2027-02-28T12:00Z", "2028-02-29T12:00Z"],
        id="yearly by_month_day -1 is the last day of first's month",
    ),
    pytest.param(
        "UTC",
        datetime(2026, 3, 2, 10, 0),
        Recurrence("weekly", interval=2),
        {"limit": 3},
        ["2026-03-02T10:00Z", "2026-03-16T10:00Z", "2026-03-30T10:00Z"],
        id="weekly with no by_day every other week repeats on first's weekday",
    ),
    pytest.param(
        "UTC",
        datetime(2026, 3, 2, 10, 0),
        Recurrence("weekly", interval=2, by_day=("MO", "FR")),
        {"limit": 4},
        ["2026-03-02T10:00Z", "2026-03-06T10:00Z", "2026-03-16T10:00Z", "2026-03-20T10:00Z"],
        id="weekly every other week on mon and fri",
    ),
    pytest.param(
        "Europe/Berlin",
        datetime(2026, 6, 1, 0, 30),
        Recurrence("daily", until=date(2026, 6, 3)),
        {},
        ["2026-05-31T22:30Z", "2026-06-01T22:30Z", "2026-06-02T22:30Z"],
        id="until is an inclusive local date",
    ),
    pytest.param(
        "UTC",
        datetime(2026, 6, 1, 9, 0),
        DAILY,
        {"after": utc("2026-06-02T09:00Z"), "until": utc("2026-06-05T09:00Z")},
        ["2026-06-03T09:00Z", "2026-06-04T09:00Z", "2026-06-05T09:00Z"],
        id="after is exclusive and until inclusive",
    ),
    pytest.param(
        "UTC",
        datetime(2026, 6, 1, 9, 0),
        DAILY,
        {"after": utc("2026-06-02T09:00Z"), "limit": 2},
        ["2026-06-03T09:00Z", "2026-06-04T09:00Z"],
        id="limit caps the count after filtering",
    ),
    pytest.param(
        "Europe/Berlin",
        datetime(2026, 3, 29, 2, 30),
        None,
        {},
        ["2026-03-29T01:30Z"],
        id="no rule is the first occurrence alone",
    ),
    pytest.param(
        "UTC",
        datetime(2026, 6, 1, 9, 0),
        None,
        {"after": utc("2026-06-01T09:00Z")},
        [],
        id="no rule is filtered like any other",
    ),
]


@pytest.mark.parametrize(("tz", "first", "rule", "bounds", "expected"), EXPANSIONS)
def test_occurrences_match_the_table(
    tz: str, first: datetime, rule: Recurrence | None, bounds: dict[str, Any], expected: list[str]
) -> None:
    assert iso(occurrences(first, zone(tz), rule, **bounds)) == expected


def test_occurrences_are_aware_utc_and_strictly_ascending() -> None:
    found = occurrences(datetime(2011, 12, 27, 9, 0), zone("Pacific/Apia"), DAILY, limit=10)
    assert all(moment.tzinfo is UTC for moment in found)
    assert all(earlier < later for earlier, later in zip(found, found[1:], strict=False))


def test_next_after_is_strictly_after_the_moment() -> None:
    berlin = zone("Europe/Berlin")
    first = datetime(2026, 3, 28, 9, 0)
    assert next_after(first, berlin, DAILY, utc("2026-03-28T08:00Z")) == utc("2026-03-29T07:00Z")
    assert next_after(first, berlin, DAILY, utc("2026-03-28T07:59Z")) == utc("2026-03-28T08:00Z")


def test_next_after_is_none_once_the_rule_has_ended() -> None:
    rule = Recurrence("daily", until=date(2026, 6, 3))
    ended = utc("2026-06-03T09:00Z")
    assert next_after(datetime(2026, 6, 1, 9, 0), zone("UTC"), rule, ended) is None


def test_to_utc_moves_a_nonexistent_time_forward_by_the_gap() -> None:
    berlin = zone("Europe/Berlin")
    moment = to_utc(datetime(2026, 3, 29, 2, 30), berlin)
    assert iso([moment]) == ["2026-03-29T01:30Z"]
    assert to_local(moment, berlin) == datetime(2026, 3, 29, 3, 30)


def test_to_utc_reads_an_ambiguous_time_as_the_first() -> None:
    assert iso([to_utc(datetime(2026, 10, 25, 2, 30), zone("Europe/Berlin"))]) == [
        "2026-10-25T00:30Z"
    ]


def test_to_local_reads_the_second_ambiguous_instant_as_the_same_wall_clock() -> None:
    second = utc("2026-10-25T01:30Z")
    assert to_local(second, zone("Europe/Berlin")) == datetime(2026, 10, 25, 2, 30)


def test_to_utc_refuses_an_aware_time() -> None:
    with pytest.raises(ValueError):
        to_utc(utc("2026-06-01T09:00Z"), zone("UTC"))


def test_to_local_refuses_a_naive_time() -> None:
    with pytest.raises(ValueError):
        to_local(datetime(2026, 6, 1, 9, 0), zone("UTC"))


REFUSALS: list[Any] = [
    pytest.param(Recurrence("daily", interval=0), "recurrence.interval", id="interval 0"),
    pytest.param(Recurrence("daily", interval=1001), "recurrence.interval", id="interval 1001"),
    pytest.param(Recurrence("weekly", by_day=("MO", "XX")), "recurrence.by_day", id="unknown day"),
    pytest.param(Recurrence("weekly", by_day=("MO", "MO")), "recurrence.by_day", id="day twice"),
    pytest.param(Recurrence("monthly", by_day=("MO",)), "recurrence.by_day", id="by_day monthly"),
    pytest.param(Recurrence("daily", by_day=("MO",)), "recurrence.by_day", id="by_day daily"),
    pytest.param(Recurrence("monthly", by_month_day=0), "recurrence.by_month_day", id="day 0"),
    pytest.param(Recurrence("monthly", by_month_day=32), "recurrence.by_month_day", id="day 32"),
    pytest.param(Recurrence("yearly", by_month_day=-32), "recurrence.by_month_day", id="day -32"),
    pytest.param(
        Recurrence("weekly", by_month_day=1), "recurrence.by_month_day", id="by_month_day weekly"
    ),
    pytest.param(
        Recurrence("daily", until=date(2026, 2, 9)), "recurrence.until", id="until before first"
    ),
    pytest.param(Recurrence("yearly", by_month_day=30), "recurrence", id="yearly on 30 february"),
    pytest.param(
        Recurrence("yearly", interval=4, by_month_day=29),
        "recurrence",
        id="every fourth year on 29 february from a year that is never leap",
    ),
    pytest.param(
        Recurrence("monthly", by_month_day=31, until=date(2026, 3, 30)),
        "recurrence",
        id="until excludes every occurrence",
    ),
    pytest.param(Recurrence("hourly"), "recurrence.pattern", id="unknown pattern"),  # type: ignore[arg-type]
]


@pytest.mark.parametrize(("rule", "field"), REFUSALS)
def test_check_refuses_with_the_field(rule: Recurrence, field: str) -> None:
    with pytest.raises(InvalidRecurrence) as refused:
        check(datetime(2026, 2, 10, 9, 0), zone("Europe/Berlin"), rule)
    assert refused.value.field == field


ACCEPTED: list[Any] = [
    pytest.param(datetime(2026, 1, 31, 9, 0), Recurrence("monthly"), id="monthly from the 31st"),
    pytest.param(
        datetime(2026, 1, 15, 9, 0), Recurrence("monthly", by_month_day=-1), id="last day"
    ),
    pytest.param(datetime(2028, 2, 29, 9, 0), Recurrence("yearly"), id="yearly from 29 february"),
    pytest.param(
        datetime(2026, 2, 10, 9, 0),
        Recurrence("yearly", interval=2, by_month_day=29),
        id="every other year on 29 february reaches 2028",
    ),
    pytest.param(
        datetime(2026, 2, 10, 9, 0),
        Recurrence("weekly", interval=1000, by_day=tuple("MO TU WE TH FR SA SU".split())),
        id="interval 1000 and every day",
    ),
    pytest.param(
        datetime(2026, 2, 10, 9, 0),
        Recurrence("daily", until=date(2026, 2, 10)),
        id="until on first's date",
    ),
]


@pytest.mark.parametrize(("first", "rule"), ACCEPTED)
def test_check_accepts(first: datetime, rule: Recurrence) -> None:
    check(first, zone("Europe/Berlin"), rule)


@pytest.mark.parametrize(
    "name", ["Mars/Olympus", "", "../etc/passwd", "/etc/localtime", "localtime", "Europe"]
)
def test_zone_refuses_what_is_not_an_iana_name(name: str) -> None:
    with pytest.raises(InvalidRecurrence) as refused:
        zone(name)
    assert refused.value.field == "timezone"


def test_zone_gives_the_named_zone() -> None:
    assert zone("America/New_York").key == "America/New_York"


def test_columns_round_trip_through_a_scheduled_content_row() -> None:
    rule = Recurrence("weekly", interval=2, by_day=("MO", "WE"), until=date(2026, 12, 31))
    row = ScheduledContent(**rule.columns())
    assert row.recurrence_byday == "MO,WE"
    assert row.is_recurring is True
    assert Recurrence.from_columns(row) == rule


def test_columns_round_trip_by_month_day() -> None:
    rule = Recurrence("monthly", by_month_day=-1)
    assert Recurrence.from_columns(SimpleNamespace(**rule.columns())) == rule


def test_from_columns_is_none_for_a_one_off_schedule() -> None:
    assert Recurrence.from_columns(ScheduledContent(recurrence_pattern=None)) is None


def test_from_columns_reads_a_missing_interval_as_one() -> None:
    row = SimpleNamespace(
        recurrence_pattern="daily",
        recurrence_interval=None,
        recurrence_byday=None,
        recurrence_bymonthday=None,
        recurrence_end_date=None,
    )
    assert Recurrence.from_columns(row) == Recurrence("daily")


def test_from_columns_refuses_an_unknown_pattern() -> None:
    row = SimpleNamespace(recurrence_pattern="hourly")
    with pytest.raises(InvalidRecurrence) as refused:
        Recurrence.from_columns(row)
    assert refused.value.field == "recurrence.pattern"
