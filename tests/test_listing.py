"""List query conventions: `filter[field][op]=v`, `sort=-a,b`, limit/offset and the SQL they run."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.pool import StaticPool

from realtime_cms.errors import Invalid
from realtime_cms.listing import MAX_IN_VALUES, MAX_LIMIT, Field, Listing, ListQuery, parse_listing

metadata = sa.MetaData()
things = sa.Table(
    "things",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(50), nullable=False),
    sa.Column("score", sa.Float, nullable=False),
    sa.Column("active", sa.Boolean, nullable=False),
    sa.Column("note", sa.String(50)),
)

LISTING = Listing(
    fields={
        "id": Field(things.c.id, int),
        "name": Field(things.c.name),
        "score": Field(things.c.score, float),
        "active": Field(things.c.active, bool),
        "note": Field(things.c.note, sortable=False, operators=("eq", "null")),
        "born": Field(sa.literal_column("born"), date),
        "seen": Field(sa.literal_column("seen"), datetime),
    },
    default_sort="-score,id",
    extra_params=frozenset({"q"}),
)

ROWS = [
    {"id": 1, "name": "Alpha", "score": 3.5, "active": True, "note": None},
    {"id": 2, "name": "50% off", "score": 1.0, "active": False, "note": "sale"},
    {"id": 3, "name": "50 percent", "score": 2.0, "active": True, "note": None},
    {"id": 4, "name": "a_b", "score": 5.0, "active": True, "note": "x"},
    {"id": 5, "name": "axb", "score": 4.0, "active": False, "note": None},
    {"id": 6, "name": "back\\slash", "score": 0.5, "active": True, "note": None},
]


def parse(query: str) -> ListQuery:
    pairs = [tuple(part.split("=", 1)) for part in query.split("&")] if query else []
    return parse_listing(LISTING, [(key, value) for key, value in pairs])


def refused(query: str) -> Invalid:
    with pytest.raises(Invalid) as caught:
        parse(query)
    return caught.value


def only_condition(query: str) -> tuple[str, str, object]:
    conditions = parse(query).conditions
    assert len(conditions) == 1
    return conditions[0].field, conditions[0].op, conditions[0].value


# Parsing: operators and value types


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("filter[id]=7", ("id", "eq", 7)),
        ("filter[id][eq]=7", ("id", "eq", 7)),
        ("filter[id][ne]=7", ("id", "ne", 7)),
        ("filter[score][lt]=2.5", ("score", "lt", 2.5)),
        ("filter[score][lte]=2", ("score", "lte", 2.0)),
        ("filter[id][gt]=-3", ("id", "gt", -3)),
        ("filter[id][gte]=0", ("id", "gte", 0)),
        ("filter[id][in]=1,2,3", ("id", "in", [1, 2, 3])),
        ("filter[name][contains]=50%", ("name", "contains", "50%")),
        ("filter[note][null]=true", ("note", "null", True)),
        ("filter[note][null]=0", ("note", "null", False)),
    ],
)
def test_every_operator_parses_into_a_condition_with_a_typed_value(
    query: str, expected: tuple[str, str, object]
) -> None:
    assert only_condition(query) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("true", True), ("YES", True), ("1", True), ("false", False), ("No", False), ("0", False)],
)
def test_boolean_filters_accept_the_usual_spellings(raw: str, expected: bool) -> None:
    assert only_condition(f"filter[active]={raw}") == ("active", "eq", expected)


def test_date_filters_are_parsed_as_dates() -> None:
    assert only_condition("filter[born][gte]=2024-02-29") == ("born", "gte", date(2024, 2, 29))


def test_datetime_filters_with_z_are_utc() -> None:
    assert only_condition("filter[seen][lt]=2024-01-02T03:04:05Z")[2] == datetime(
        2024, 1, 2, 3, 4, 5, tzinfo=UTC
    )


def test_naive_datetime_filters_are_taken_as_utc() -> None:
    assert only_condition("filter[seen]=2024-01-02T03:04:05")[2] == datetime(
        2024, 1, 2, 3, 4, 5, tzinfo=UTC
    )


def test_datetime_filters_keep_an_explicit_offset() -> None:
    value = only_condition("filter[seen]=2024-01-02T03:04:05+02:00")[2]
    assert value == datetime(2024, 1, 2, 1, 4, 5, tzinfo=UTC)
    assert isinstance(value, datetime) and value.utcoffset() == timedelta(hours=2)


def test_text_filters_keep_the_value_verbatim() -> None:
    assert only_condition("filter[name]= 007 ") == ("name", "eq", " 007 ")


@pytest.mark.parametrize(
    "query",
    [
        "filter[id]=seven",
        "filter[id]=1.5",
        "filter[score]=high",
        "filter[active]=maybe",
        "filter[born]=2024-02-30",
        "filter[seen]=yesterday",
        "filter[note][null]=perhaps",
        "filter[id][in]=1,two",
        "filter[score]=nan",
        "filter[score][lt]=inf",
        "filter[score]=1e400",
    ],
)
def test_values_of_the_wrong_type_are_invalid_filters(query: str) -> None:
    assert refused(query).code == "invalid_filter"


def test_integer_filters_accept_the_64_bit_range() -> None:
    assert only_condition(f"filter[id][in]={-(2**63)},{2**63 - 1}")[2] == [-(2**63), 2**63 - 1]


@pytest.mark.parametrize("raw", [str(2**63), str(-(2**63) - 1), "9" * 30])
def test_integer_filters_beyond_64_bits_are_invalid_not_passed_to_the_database(raw: str) -> None:
    assert refused(f"filter[id]={raw}").code == "invalid_filter"
    assert refused(f"filter[id][in]=1,{raw}").code == "invalid_filter"


def test_several_filters_combine() -> None:
    query = parse("filter[id][gt]=1&filter[name][contains]=a&filter[active]=true")
    assert [(c.field, c.op) for c in query.conditions] == [
        ("id", "gt"),
        ("name", "contains"),
        ("active", "eq"),
    ]


# Parsing: what is refused


def test_an_unknown_field_is_an_invalid_filter_naming_the_allowed_fields() -> None:
    error = refused("filter[secret]=1")
    assert error.code == "invalid_filter" and error.status == 400
    assert "secret" in error.message and "name" in error.message


def test_an_unknown_operator_is_an_invalid_filter() -> None:
    assert refused("filter[name][like]=a").code == "invalid_filter"


def test_an_operator_the_field_does_not_allow_is_an_invalid_filter() -> None:
    assert refused("filter[note][contains]=a").code == "invalid_filter"


def test_a_malformed_filter_key_is_an_unknown_parameter() -> None:
    assert refused("filter[name][eq][x]=a").code == "invalid_query"


def test_an_unknown_parameter_is_refused() -> None:
    assert refused("colour=red").code == "invalid_query"


def test_a_declared_extra_parameter_is_kept_aside() -> None:
    query = parse("q=hello")
    assert query.extra == {"q": "hello"} and query.conditions == []


@pytest.mark.parametrize("query", ["limit=5&limit=5", "filter[id]=1&filter[id]=2", "q=a&q=b"])
def test_a_parameter_given_twice_is_refused(query: str) -> None:
    assert refused(query).code == "invalid_query"


def test_contains_on_a_non_text_field_is_refused() -> None:
    assert refused("filter[id][contains]=1").code == "invalid_filter"


def test_in_drops_empty_items() -> None:
    assert only_condition("filter[name][in]=a,,b,") == ("name", "in", ["a", "b"])


@pytest.mark.parametrize("raw", ["", ",", ",,,"])
def test_in_needs_at_least_one_value(raw: str) -> None:
    assert refused(f"filter[id][in]={raw}").code == "invalid_filter"


def test_in_accepts_up_to_the_maximum_number_of_values() -> None:
    raw = ",".join(str(n) for n in range(MAX_IN_VALUES))
    assert only_condition(f"filter[id][in]={raw}")[2] == list(range(MAX_IN_VALUES))


def test_in_refuses_more_than_the_maximum_number_of_values() -> None:
    raw = ",".join(str(n) for n in range(MAX_IN_VALUES + 1))
    assert refused(f"filter[id][in]={raw}").code == "invalid_filter"


# Sorting


def test_without_sort_the_listing_default_applies() -> None:
    assert parse("").sort == [("score", True), ("id", False)]


def test_sort_takes_several_fields_and_a_minus_for_descending() -> None:
    assert parse("sort=-name,id,-active").sort == [("name", True), ("id", False), ("active", True)]


@pytest.mark.parametrize("raw", ["secret", "-secret", "note", "", "name,", "--name", "+name"])
def test_sorting_by_an_unknown_or_unsortable_field_is_refused(raw: str) -> None:
    assert refused(f"sort={raw}").code == "invalid_sort"


# Pagination


def test_pagination_defaults_to_the_first_fifty() -> None:
    query = parse("")
    assert (query.limit, query.offset) == (50, 0)


@pytest.mark.parametrize(("limit", "offset"), [("1", "0"), (str(MAX_LIMIT), "1000000000")])
def test_limit_and_offset_accept_their_bounds(limit: str, offset: str) -> None:
    query = parse(f"limit={limit}&offset={offset}")
    assert (query.limit, query.offset) == (int(limit), int(offset))


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        f"limit={MAX_LIMIT + 1}",
        "limit=ten",
        "limit=",
        "offset=-1",
        "offset=1000000001",
        "offset=1.0",
    ],
)
def test_limit_and_offset_outside_their_bounds_are_refused(query: str) -> None:
    assert refused(query).code == "invalid_pagination"


# Running a query against a real database


@pytest.fixture
async def session() -> AsyncIterator[AsyncSession]:
    engine = create_async_engine("sqlite+aiosqlite://", poolclass=StaticPool)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
            await conn.execute(things.insert(), ROWS)
        async with AsyncSession(engine) as db:
            yield db
    finally:
        await engine.dispose()


async def names(db: AsyncSession, query: str) -> tuple[list[str], int]:
    page = await parse(query).fetch(db, sa.select(things.c.name))
    return list(page.items), page.total


async def test_fetch_without_parameters_returns_everything_in_the_default_order(
    session: AsyncSession,
) -> None:
    assert await names(session, "") == (
        ["a_b", "axb", "Alpha", "50 percent", "50% off", "back\\slash"],
        6,
    )


async def test_fetch_filters_with_comparison_operators(session: AsyncSession) -> None:
    assert await names(session, "filter[score][gte]=2&filter[score][lt]=4&sort=id") == (
        ["Alpha", "50 percent"],
        2,
    )


async def test_fetch_filters_with_eq_ne_and_in(session: AsyncSession) -> None:
    assert await names(session, "filter[active]=false&sort=id") == (["50% off", "axb"], 2)
    assert await names(session, "filter[id][ne]=1&filter[id][in]=1,2,3&sort=id") == (
        ["50% off", "50 percent"],
        2,
    )


async def test_fetch_filters_on_null(session: AsyncSession) -> None:
    assert await names(session, "filter[note][null]=false&sort=id") == (["50% off", "a_b"], 2)
    assert (await names(session, "filter[note][null]=true"))[1] == 4


async def test_fetch_sorts_by_several_fields(session: AsyncSession) -> None:
    assert (await names(session, "sort=-active,name"))[0] == [
        "50 percent",
        "Alpha",
        "a_b",
        "back\\slash",
        "50% off",
        "axb",
    ]


async def test_fetch_paginates_but_counts_every_match(session: AsyncSession) -> None:
    assert await names(session, "sort=id&limit=2&offset=1") == (["50% off", "50 percent"], 6)
    assert await names(session, "sort=id&limit=2&offset=6") == ([], 6)


async def test_fetch_applies_extra_conditions_to_items_and_count(session: AsyncSession) -> None:
    page = await parse("sort=id&limit=1").fetch(
        session, sa.select(things.c.name), things.c.active.is_(True)
    )
    assert (list(page.items), page.total, page.limit, page.offset) == (["Alpha"], 4, 1, 0)


async def test_contains_ignores_case(session: AsyncSession) -> None:
    assert await names(session, "filter[name][contains]=ALPH") == (["Alpha"], 1)


async def test_contains_treats_percent_literally(session: AsyncSession) -> None:
    assert await names(session, "filter[name][contains]=50%") == (["50% off"], 1)


async def test_contains_treats_underscore_literally(session: AsyncSession) -> None:
    assert await names(session, "filter[name][contains]=a_") == (["a_b"], 1)


async def test_contains_treats_backslash_literally(session: AsyncSession) -> None:
    assert await names(session, "filter[name][contains]=k\\s") == (["back\\slash"], 1)
