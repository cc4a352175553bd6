"""List queries shared by every collection: `filter[field][op]=v`, `sort=-a,b`, limit/offset.

A `Listing` declares which fields a collection exposes; `parse_listing` turns query
parameters into a validated `ListQuery` (unknown fields, operators or parameters are
errors, never ignored) and `ListQuery.fetch` runs it as SQL.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Generic, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from realtime_cms.errors import Invalid

T = TypeVar("T")

OPERATORS = ("eq", "ne", "lt", "lte", "gt", "gte", "in", "contains", "null")
_FILTER_KEY = re.compile(r"^filter\[([A-Za-z0-9_.]+)\](?:\[([a-z]+)\])?$")
_RESERVED = frozenset({"limit", "offset", "sort"})
MAX_LIMIT = 200
MAX_IN_VALUES = 100


def _parse_bool(raw: str) -> bool:
    lowered = raw.lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise ValueError("expected true or false")


def _parse_int64(raw: str) -> int:
    # Databases store at most signed 64-bit integers; a larger value must not reach the driver.
    value = int(raw)
    if not -(2**63) <= value < 2**63:
        raise ValueError("out of the 64-bit integer range")
    return value


def _parse_finite(raw: str) -> float:
    value = float(raw)
    if not math.isfinite(value):
        raise ValueError("expected a finite number")
    return value


def _parse_datetime(raw: str) -> datetime:
    value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


_PARSERS: dict[type, Callable[[str], Any]] = {
    int: _parse_int64,
    str: str,
    bool: _parse_bool,
    datetime: _parse_datetime,
    date: date.fromisoformat,
    float: _parse_finite,
}


@dataclass(frozen=True, slots=True)
class Field:
    """One filterable/sortable field of a collection, bound to a SQL expression."""

    column: Any
    type: type = str
    sortable: bool = True
    operators: tuple[str, ...] = OPERATORS

    def parse(self, name: str, raw: str) -> Any:
        try:
            return _PARSERS[self.type](raw)
        except (ValueError, OverflowError) as exc:
            raise Invalid(
                f"filter[{name}]: {raw!r} is not a valid {self.type.__name__}",
                code="invalid_filter",
            ) from exc


@dataclass(frozen=True, slots=True)
class Listing:
    """What a collection allows in list queries; `default_sort` like `-created_at,id`."""

    fields: dict[str, Field]
    default_sort: str = "id"
    # Extra plain query parameters a collection accepts besides the conventions (e.g. `q`).
    extra_params: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Condition:
    field: str
    op: str
    value: Any


@dataclass(slots=True)
class ListQuery:
    """A parsed, validated list request."""

    listing: Listing
    conditions: list[Condition] = field(default_factory=list)
    sort: list[tuple[str, bool]] = field(default_factory=list)
    limit: int = 50
    offset: int = 0
    extra: dict[str, str] = field(default_factory=dict)

    def where(self) -> list[sa.ColumnElement[bool]]:
        """The filter conditions as SQL clauses."""
        return [
            _clause(self.listing.fields[c.field].column, c.op, c.value) for c in self.conditions
        ]

    def order_by(self) -> list[sa.ColumnElement[Any]]:
        return [
            self.listing.fields[name].column.desc()
            if desc
            else self.listing.fields[name].column.asc()
            for name, desc in self.sort
        ]

    async def fetch(
        self, session: AsyncSession, stmt: sa.Select[Any], *extra_where: sa.ColumnElement[bool]
    ) -> Page[Any]:
        """Run `stmt` filtered, sorted and paginated; return the page and the total count."""
        stmt = stmt.where(*self.where(), *extra_where)
        total = await session.scalar(sa.select(sa.func.count()).select_from(stmt.subquery()))
        rows = await session.scalars(
            stmt.order_by(*self.order_by()).limit(self.limit).offset(self.offset)
        )
        return Page(
            items=list(rows.unique()), total=int(total or 0), limit=self.limit, offset=self.offset
        )


@dataclass(slots=True)
class Page(Generic[T]):
    """One page of a collection, with the total number of matching rows."""

    items: Sequence[T]
    total: int
    limit: int
    offset: int


def _escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _clause(column: Any, op: str, value: Any) -> sa.ColumnElement[bool]:
    match op:
        case "eq":
            return column == value
        case "ne":
            return column != value
        case "lt":
            return column < value
        case "lte":
            return column <= value
        case "gt":
            return column > value
        case "gte":
            return column >= value
        case "in":
            return column.in_(value)
        case "contains":
            return column.ilike(f"%{_escape_like(value)}%", escape="\\")
        case "null":
            return column.is_(None) if value else column.is_not(None)
    raise Invalid(f"Unknown operator {op!r}", code="invalid_filter")


def _parse_int(name: str, raw: str, low: int, high: int) -> int:
    try:
        value = int(raw)
    except ValueError as exc:
        raise Invalid(f"{name} must be an integer", code="invalid_pagination") from exc
    if not low <= value <= high:
        raise Invalid(f"{name} must be between {low} and {high}", code="invalid_pagination")
    return value


def _parse_condition(listing: Listing, name: str, op: str, raw: str) -> Condition:
    spec = listing.fields.get(name)
    if spec is None:
        allowed = ", ".join(sorted(listing.fields)) or "none"
        raise Invalid(f"Unknown filter field {name!r} (allowed: {allowed})", code="invalid_filter")
    if op not in OPERATORS or op not in spec.operators:
        raise Invalid(
            f"Unknown operator {op!r} for {name!r} (allowed: {', '.join(spec.operators)})",
            code="invalid_filter",
        )
    if op == "null":
        return Condition(name, op, Field(None, bool).parse(name, raw))
    if op == "in":
        parts = [part for part in raw.split(",") if part != ""]
        if not parts or len(parts) > MAX_IN_VALUES:
            raise Invalid(
                f"filter[{name}][in] takes 1 to {MAX_IN_VALUES} values", code="invalid_filter"
            )
        return Condition(name, op, [spec.parse(name, part) for part in parts])
    if op == "contains" and spec.type is not str:
        raise Invalid(f"contains applies to text fields only, not {name!r}", code="invalid_filter")
    return Condition(name, op, spec.parse(name, raw))


def _parse_sort(listing: Listing, raw: str) -> list[tuple[str, bool]]:
    result: list[tuple[str, bool]] = []
    for part in raw.split(","):
        desc = part.startswith("-")
        name = part[1:] if desc else part
        spec = listing.fields.get(name)
        if spec is None or not spec.sortable:
            raise Invalid(f"Cannot sort by {name!r}", code="invalid_sort")
        result.append((name, desc))
    return result


def parse_listing(listing: Listing, params: Iterable[tuple[str, str]]) -> ListQuery:
    """Validate query parameters against `listing`; anything unrecognised is an error."""
    query = ListQuery(listing=listing, sort=_parse_sort(listing, listing.default_sort))
    seen: set[str] = set()
    for key, raw in params:
        if key in seen:
            raise Invalid(f"Query parameter {key!r} given more than once", code="invalid_query")
        seen.add(key)
        if key == "limit":
            query.limit = _parse_int("limit", raw, 1, MAX_LIMIT)
        elif key == "offset":
            query.offset = _parse_int("offset", raw, 0, 10**9)
        elif key == "sort":
            query.sort = _parse_sort(listing, raw)
        elif key in listing.extra_params:
            query.extra[key] = raw
        elif match := _FILTER_KEY.match(key):
            query.conditions.append(_parse_condition(listing, match[1], match[2] or "eq", raw))
        else:
            raise Invalid(f"Unknown query parameter {key!r}", code="invalid_query")
    return query
