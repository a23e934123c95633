"""Small SQL helpers shared by the repositories."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Row, Table, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError

from callwhisper.domain.caps import CapKey
from callwhisper.store.tables import cap_usage

# PostgreSQL: serialization_failure, deadlock_detected.
_RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})


CAP_USAGE_KEY = tuple_(
    cap_usage.c.owner, cap_usage.c.metric, cap_usage.c.period, cap_usage.c.period_key
)
"""The columns of a ``cap_usage`` row that make its ``CapKey``, in the same order."""


def cap_key(row: Row[Any]) -> CapKey:
    """The ``CapKey`` of a ``cap_usage`` row."""
    return CapKey(str(row.owner), row.metric, row.period, str(row.period_key))


def upsert(dialect: str, table: Table) -> postgresql.Insert | sqlite.Insert:
    """An ``INSERT`` that can take ``ON CONFLICT`` clauses on either database."""
    if dialect == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def is_retryable(error: DBAPIError) -> bool:
    """Whether a transaction lost a race and may simply be run again."""
    state = getattr(error.orig, "sqlstate", None) or getattr(error.orig, "pgcode", None)
    if state in _RETRYABLE_SQLSTATES:
        return True
    return "database is locked" in str(error.orig)


def utcnow() -> datetime:
    """The wall clock, for bookkeeping columns such as ``updated_at``."""
    return datetime.now(UTC)
