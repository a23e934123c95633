"""Column types that behave the same on PostgreSQL and SQLite.

SQLite has no exact decimal type and no time zones, so money is stored there
as an integer of ten-thousandths and timestamps as naive UTC; PostgreSQL gets
``NUMERIC(14, 4)`` and ``timestamptz``. Python always sees ``Decimal`` and
aware UTC ``datetime`` values.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, DateTime, Dialect, Numeric
from sqlalchemy.types import TypeDecorator, TypeEngine

_BindProcessor = Callable[[Any], Any]

MONEY_SCALE = 4
_QUANTUM = Decimal(1).scaleb(-MONEY_SCALE)
_FACTOR: int = 10**MONEY_SCALE


def plain(value: Decimal) -> Decimal:
    """``value`` without trailing zeros or exponent: ``60.2500`` is ``60.25``, ``1E+2`` ``100``."""
    reduced = value.normalize()
    return reduced.quantize(Decimal(1)) if reduced == reduced.to_integral() else reduced


def money(value: Decimal) -> Decimal:
    """``value`` as :class:`Money` stores it: rounded to four decimal places.

    Sums of such values are exact, so amounts added up before they are
    stored (``store.engine.add_deferred``) store what adding them in SQL would.
    """
    return Decimal(value).quantize(_QUANTUM)


class Money(TypeDecorator[Decimal]):
    """An exact amount with four decimal places: ``NUMERIC(14, 4)``, or scaled integers on SQLite.

    Values read back carry no trailing zeros (``plain``), as amounts written in
    a configuration do, so that reasons such as ``revenue cap 60.25/100`` read
    the same from the store as from the reference ledger.

    Scaled integers keep SQL arithmetic (``used + reserved + :n <= :limit``)
    exact on SQLite, where ``NUMERIC`` values would be floating point.
    """

    impl = Numeric(14, MONEY_SCALE)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(BigInteger())
        return dialect.type_descriptor(Numeric(14, MONEY_SCALE, asdecimal=True))

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        exact = money(value)
        if dialect.name == "sqlite":
            return int(exact * _FACTOR)
        return exact

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        if dialect.name == "sqlite":
            return plain(Decimal(int(value)) / _FACTOR)
        return plain(Decimal(str(value)))


class UtcDateTime(TypeDecorator[datetime]):
    """A point in time, stored in UTC; naive values are refused.

    SQLite stores it as text, ``2026-03-02 15:00:00.250000`` (SQLAlchemy's
    ``DATETIME`` format, microseconds always written).
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def bind_processor(self, dialect: Dialect) -> _BindProcessor | None:
        # SQLAlchemy would run process_bind_param, then format the naive value with
        # SQLite's DATETIME processor (a %-format of a dict); the call path binds tens
        # of times per call, so SQLite gets the same text in one step (tested to match).
        if dialect.name == "sqlite":
            return sqlite_text
        return super().bind_processor(dialect)

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        utc = _utc(value)
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def sqlite_text(value: datetime | None) -> str | None:
    """How SQLite stores a :class:`UtcDateTime`: naive UTC text with microseconds."""
    if value is None:
        return None
    # A call stores the same few instants many times over (an entry's time is also its
    # leg's and its call's), so the texts of the latest ones are kept: a lookup costs a
    # tenth of formatting. Equal times in other zones are equal keys, with the same text.
    text = _texts.get(value)
    if text is None:
        if len(_texts) >= _TEXTS_KEPT:
            _texts.clear()
        text = _texts[value] = _format(value)
    return text


def _format(value: datetime) -> str:
    if value.tzinfo is not UTC:
        value = _utc(value)
    # isoformat(" ", "microseconds") of the naive value, at half the cost (no copies, no
    # keyword arguments).
    return _SQLITE_TEXT % (
        value.year,
        value.month,
        value.day,
        value.hour,
        value.minute,
        value.second,
        value.microsecond,
    )


_SQLITE_TEXT = "%04d-%02d-%02d %02d:%02d:%02d.%06d"
_TEXTS_KEPT = 256
_texts: dict[datetime, str] = {}


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value.isoformat()} (give a time zone)")
    return value.astimezone(UTC)
