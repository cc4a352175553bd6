"""Declarative base, naming convention and column types shared by every model module."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal, overload

import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

_MYSQL = ("mysql", "mariadb")


def utcnow() -> datetime:
    """The current time as an aware UTC datetime, to the second (what DATETIME stores)."""
    return datetime.now(UTC).replace(microsecond=0)


class UTCDateTime(sa.TypeDecorator[datetime]):
    """DATETIME stored as naive UTC, returned as aware UTC.

    The seed mixes DATETIME and TIMESTAMP; both become DATETIME holding UTC, which avoids
    MySQL's 2038 limit and session time-zone conversion (see docs/schema.md).
    """

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is not None:
            value = value.astimezone(UTC)
        # DATETIME keeps whole seconds on MySQL; truncate everywhere so both backends agree.
        return value.replace(tzinfo=None, microsecond=0)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC)


class PreciseUTCDateTime(UTCDateTime):
    """UTCDateTime to the microsecond (DATETIME(6) on MySQL/MariaDB): heartbeats, whose age
    decides within a heartbeat or two whether a process is dead."""

    impl = sa.DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name in _MYSQL:
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(sa.DateTime())

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is not None:
            value = value.astimezone(UTC)
        return value.replace(tzinfo=None)


def _int_variant(base: sa.types.TypeEngine[int], mysql_type: Any) -> sa.types.TypeEngine[int]:
    return base.with_variant(mysql_type, *_MYSQL)


# Integer flavours. SQLite only auto-increments an INTEGER PRIMARY KEY, so big and unsigned
# keys are plain INTEGER there and their exact MySQL type on MySQL/MariaDB.
BigIntUnsigned = _int_variant(sa.BigInteger(), mysql.BIGINT(unsigned=True)).with_variant(
    sa.Integer(), "sqlite"
)
BigInt = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
IntUnsigned = _int_variant(sa.Integer(), mysql.INTEGER(unsigned=True))
SmallInt = sa.SmallInteger()
TinyInt = sa.SmallInteger().with_variant(mysql.TINYINT(), *_MYSQL)

# Text flavours sized like the seed on MySQL/MariaDB; plain TEXT elsewhere.
LongText = sa.Text().with_variant(mysql.LONGTEXT(), *_MYSQL)
MediumText = sa.Text().with_variant(mysql.MEDIUMTEXT(), *_MYSQL)

# The type of every `site_id` column: `sites.id` is BIGINT UNSIGNED (schema repair).
SiteId = BigIntUnsigned


def enum(*values: str, name: str) -> sa.Enum:
    """An ENUM with the seed's values: native on MySQL, a named CHECK on SQLite."""
    return sa.Enum(*values, name=name, native_enum=True, create_constraint=True, length=None)


@overload
def created_at_column() -> Mapped[datetime | None]: ...
@overload
def created_at_column(nullable: Literal[True]) -> Mapped[datetime | None]: ...
@overload
def created_at_column(nullable: Literal[False]) -> Mapped[datetime]: ...
def created_at_column(nullable: bool = True) -> Mapped[Any]:
    """`created_at DATETIME DEFAULT CURRENT_TIMESTAMP`, set by Python and the server alike."""
    return mapped_column(
        UTCDateTime(), nullable=nullable, default=utcnow, server_default=sa.func.current_timestamp()
    )


@overload
def updated_at_column() -> Mapped[datetime | None]: ...
@overload
def updated_at_column(nullable: Literal[True]) -> Mapped[datetime | None]: ...
@overload
def updated_at_column(nullable: Literal[False]) -> Mapped[datetime]: ...
def updated_at_column(nullable: bool = True) -> Mapped[Any]:
    """`updated_at ... ON UPDATE CURRENT_TIMESTAMP`, maintained by SQLAlchemy on every update."""
    return mapped_column(
        UTCDateTime(),
        nullable=nullable,
        default=utcnow,
        onupdate=utcnow,
        server_default=sa.func.current_timestamp(),
    )


class Base(DeclarativeBase):
    """Root of every model; one MetaData with stable constraint names across dialects."""

    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: sa.JSON(), list[Any]: sa.JSON()}


def use_sqlite_autoincrement(metadata: sa.MetaData) -> None:
    """Never reuse ids on SQLite (as MySQL never does): log cursors and audit ids rely on it."""
    for table in metadata.tables.values():
        keys = list(table.primary_key.columns)
        if len(keys) == 1 and keys[0].autoincrement is not False and _is_integer(keys[0]):
            table.dialect_options["sqlite"]["autoincrement"] = True


def _is_integer(column: sa.Column[Any]) -> bool:
    try:
        return column.type.python_type is int
    except NotImplementedError:
        return False
