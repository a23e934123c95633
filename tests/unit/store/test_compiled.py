"""Statements run on the driver's cursor store what SQLAlchemy's route stores."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import (
    Column,
    Connection,
    Integer,
    MetaData,
    String,
    Table,
    bindparam,
    create_engine,
    event,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError, InvalidRequestError

from callwhisper.store.compiled import execute, execute_many, first
from callwhisper.store.tables import call_events, calls, cap_usage, metadata

START = datetime(2026, 3, 2, 10, 0, 0, 250, tzinfo=timezone(timedelta(hours=-5)))
INSERT_CALL = calls.insert()
UPDATE_CALL = update(calls).where(calls.c.id == bindparam("call_key"))


@pytest.fixture
def connection() -> Iterator[Connection]:
    """A connection to an in-memory SQLite database with the store's tables."""
    engine = create_engine("sqlite://")
    metadata.create_all(engine)
    with engine.connect() as connection, connection.begin():
        yield connection
    engine.dispose()


@pytest.fixture
def statements(connection: Connection) -> list[str]:
    """The statements that went SQLAlchemy's route (its cursor events)."""
    seen: list[str] = []

    @event.listens_for(connection, "before_cursor_execute")
    def _seen(*args: Any) -> None:
        seen.append(args[2])

    return seen


def call_row(call_id: str) -> dict[str, Any]:
    return {
        "id": call_id,
        "campaign_id": "auto",
        "dialed": "+18005550123",
        "caller": None,
        "publisher_id": "ads",
        "state": "active",
        "started_at": START,
        "tags": {"source": "radio", "ivr": "2"},
        "routing": None,
        "revenue": Decimal("12.5"),
        "payout": Decimal("0.0001"),
        "cost": Decimal(0),
        "converted": True,
        "duplicate": False,
        "updated_at": START + timedelta(seconds=1),
    }


def stored(connection: Connection, table: str) -> list[tuple[Any, ...]]:
    """The rows as SQLite keeps them, without their first column (the id)."""
    return [tuple(row)[1:] for row in connection.exec_driver_sql(f"SELECT * FROM {table}")]


def test_an_insert_stores_what_sqlalchemy_stores(
    connection: Connection, statements: list[str]
) -> None:
    connection.execute(INSERT_CALL, call_row("by-sqlalchemy"))
    statements.clear()
    assert execute(connection, INSERT_CALL, call_row("by-cursor")) == 1
    assert statements == []
    by_sqlalchemy, by_cursor = stored(connection, "calls")
    assert by_cursor == by_sqlalchemy
    assert by_cursor[6:9] == ("2026-03-02 15:00:00.000250", None, None)
    assert by_cursor[9] == '{"source": "radio", "ivr": "2"}'
    assert by_cursor[11:14] == (125000, 1, 0)


def test_an_update_sets_the_columns_given_and_counts_the_rows(
    connection: Connection, statements: list[str]
) -> None:
    execute(connection, INSERT_CALL, call_row("c1"))
    connection.execute(INSERT_CALL, call_row("c2"))
    changes = {"state": "ended", "outcome": "connected", "ended_at": START, "cost": Decimal("1")}
    connection.execute(UPDATE_CALL, {**changes, "call_key": "c2"})
    statements.clear()

    assert execute(connection, UPDATE_CALL, {**changes, "call_key": "c1"}) == 1
    assert execute(connection, UPDATE_CALL, {**changes, "call_key": "nope"}) == 0
    assert statements == []
    first_call, second_call = stored(connection, "calls")
    assert first_call == second_call
    assert first_call[4:6] == ("ended", "connected")
    assert first_call[8] == "2026-03-02 15:00:00.000250"


def test_values_a_statement_carries_are_bound_too(connection: Connection) -> None:
    execute(connection, INSERT_CALL, call_row("c1"))
    bump = update(calls).where(calls.c.id == bindparam("call_key"))
    bump = bump.values(last_event_seq=calls.c.last_event_seq + 2)
    execute(connection, bump, {"call_key": "c1"})
    execute(connection, bump, {"call_key": "c1"})
    assert connection.scalar(select(calls.c.last_event_seq)) == 4


def test_many_rows_run_as_one_statement_in_order(
    connection: Connection, statements: list[str]
) -> None:
    execute(connection, INSERT_CALL, call_row("c1"))
    rows: list[dict[str, Any]] = [
        {"call_id": "c1", "seq": seq, "at": START, "kind": kind, "leg_id": None, "data": {}}
        for seq, kind in ((1, "arrived"), (2, "routing"), (3, "dial"))
    ]
    execute_many(connection, call_events.insert(), rows)
    execute_many(connection, call_events.insert(), [])
    assert statements == []
    assert [
        tuple(row) for row in connection.execute(select(call_events.c.seq, call_events.c.kind))
    ] == [
        (1, "arrived"),
        (2, "routing"),
        (3, "dial"),
    ]


def test_a_query_row_is_converted_as_sqlalchemy_converts_it(
    connection: Connection, statements: list[str]
) -> None:
    execute(connection, INSERT_CALL, call_row("c1"))
    query = select(calls.c.started_at, calls.c.tags, calls.c.revenue, calls.c.answered_at).where(
        calls.c.id == bindparam("call_key")
    )
    row = connection.execute(query, {"call_key": "c1"}).one()
    statements.clear()

    assert first(connection, query, {"call_key": "c1"}) == tuple(row)
    assert first(connection, query, {"call_key": "nope"}) is None
    assert statements == []
    assert tuple(row) == (
        datetime(2026, 3, 2, 15, 0, 0, 250, tzinfo=UTC),
        {"source": "radio", "ivr": "2"},
        Decimal("12.5"),
        None,
    )


def test_driver_errors_are_raised_as_sqlalchemys(connection: Connection) -> None:
    execute(connection, INSERT_CALL, call_row("c1"))
    with pytest.raises(IntegrityError) as raised:
        execute(connection, INSERT_CALL, call_row("c1"))
    assert isinstance(raised.value.orig, sqlite3.IntegrityError)
    assert "UNIQUE constraint failed: calls.id" in str(raised.value.orig)


def test_a_missing_parameter_is_named(connection: Connection) -> None:
    with pytest.raises(
        InvalidRequestError, match="a value is required for bind parameter 'call_key'"
    ):
        execute(connection, UPDATE_CALL, {"state": "ended"})


def test_statements_the_cursor_cannot_run_go_sqlalchemys_route(
    connection: Connection, statements: list[str]
) -> None:
    execute_many(connection, INSERT_CALL, [call_row("c1"), call_row("c2"), call_row("c3")])
    statements.clear()
    by_ids = update(calls).where(calls.c.id.in_(bindparam("ids", expanding=True)))
    assert execute(connection, by_ids, {"ids": ["c1", "c3"], "state": "ended"}) == 2
    assert first(connection, select(calls.c.id).where(calls.c.id.in_(["c2"])), {}) == ("c2",)
    assert len(statements) == 2
    assert [row.state for row in connection.execute(select(calls.c.state))] == [
        "ended",
        "active",
        "ended",
    ]


def test_defaults_computed_in_python_and_callable_values_go_sqlalchemys_route(
    connection: Connection, statements: list[str]
) -> None:
    """Column defaults and callable values are SQLAlchemy's to compute."""
    notes = Table(
        "notes",
        MetaData(),
        Column("id", Integer, primary_key=True),
        Column("text", String),
        Column("made", Integer, default=7),
        Column("edits", Integer, default=0, onupdate=lambda: 1),
    )
    notes.create(connection)
    statements.clear()
    edit = update(notes).where(notes.c.id == bindparam("note"))
    by_callable = select(notes.c.text).where(notes.c.id == bindparam("note", callable_=lambda: 1))

    assert execute(connection, notes.insert(), {"id": 1, "text": "a"}) == 1
    assert execute(connection, edit, {"note": 1, "text": "b"}) == 1
    assert first(connection, by_callable, {}) == ("b",)
    assert len(statements) == 3
    assert stored(connection, "notes") == [("b", 7, 1)]


def test_money_arithmetic_in_sql_stays_exact(connection: Connection) -> None:
    key = {"owner": "buyer:acme", "metric": "revenue", "period": "day", "period_key": "2026-03-02"}
    execute(connection, cap_usage.insert(), {**key, "used": Decimal(0), "reserved": Decimal("0.1")})
    add = (
        update(cap_usage)
        .where(cap_usage.c.owner == bindparam("key_owner"))
        .values(used=cap_usage.c.used + bindparam("amount", type_=cap_usage.c.used.type))
    )
    for _ in range(3):
        execute(connection, add, {"key_owner": "buyer:acme", "amount": Decimal("0.1")})
    assert connection.execute(select(cap_usage.c.used, cap_usage.c.reserved)).one() == (
        Decimal("0.3"),
        Decimal("0.1"),
    )
