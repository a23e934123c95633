"""Choosing the database and setting up its connections."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import pytest
from sqlalchemy import Connection, bindparam, func, select, text, update

from callwhisper.store import Store, create_store, database_url, sqlite_file
from callwhisper.store import engine as store_engine
from callwhisper.store.tables import calls
from tests.logs import only_error

pytestmark = pytest.mark.integration

START = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


def test_postgresql_urls_get_the_asyncpg_driver() -> None:
    url = database_url("postgresql://cw:secret@db.example.com:5433/calls")
    assert url.drivername == "postgresql+asyncpg"
    assert (url.host, url.port, url.database) == ("db.example.com", 5433, "calls")
    assert database_url("postgres://db/calls").drivername == "postgresql+asyncpg"
    assert database_url("sqlite:///x.db").drivername == "sqlite+aiosqlite"


def test_other_databases_are_refused() -> None:
    with pytest.raises(ValueError, match="unsupported database 'mysql'"):
        database_url("mysql://db/calls")


def test_the_environment_chooses_the_database(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLWHISPER_DATABASE_URL", "postgresql://db/from-env")
    assert database_url().database == "from-env"


def test_default_is_a_sqlite_file_in_the_data_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("CALLWHISPER_DATABASE_URL", raising=False)
    monkeypatch.delenv("CALLWHISPER_DATA_DIR", raising=False)
    assert database_url().database == "var/callwhisper.db"
    assert database_url(data_dir=tmp_path).database == str(tmp_path / "callwhisper.db")
    monkeypatch.setenv("CALLWHISPER_DATA_DIR", str(tmp_path / "data"))
    assert database_url().database == str(tmp_path / "data" / "callwhisper.db")


def test_only_a_sqlite_url_on_disk_names_a_file() -> None:
    assert sqlite_file(database_url("sqlite:///var/calls.db")) == Path("var/calls.db")
    assert sqlite_file(database_url("sqlite:///:memory:")) is None
    assert sqlite_file(database_url("sqlite:///file:calls?mode=memory&uri=true")) is None
    assert sqlite_file(database_url("postgresql://db/calls")) is None


async def test_sqlite_runs_in_wal_mode_with_foreign_keys(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("CALLWHISPER_DATABASE_URL", raising=False)
    store = create_store(data_dir=tmp_path / "new")
    try:
        await store.migrate()
        async with store.database.read() as connection:
            assert await connection.scalar(text("PRAGMA journal_mode")) == "wal"
            assert await connection.scalar(text("PRAGMA foreign_keys")) == 1
            assert await connection.scalar(text("PRAGMA busy_timeout")) == 30000
    finally:
        await store.close()
    assert (tmp_path / "new" / "callwhisper.db").exists()


async def test_store_reports_its_dialect(store: Store, database_url: str) -> None:
    assert store.dialect == ("sqlite" if database_url.startswith("sqlite") else "postgresql")


async def test_submitted_writes_share_one_transaction_in_order(store: Store) -> None:
    """Units of work queued together run in the next transaction, in the order submitted."""
    transactions: list[object] = []

    def create(connection: Connection) -> None:
        transactions.append(connection.get_transaction())
        store.calls.create_call_in("c1", connection, dialed="+18005550123", started_at=START)

    def event(kind: str, connection: Connection) -> int:
        transactions.append(connection.get_transaction())
        return store.calls.append_event_in("c1", kind, START, {}, connection)

    seqs = await asyncio.gather(
        store.submit(create),
        store.submit(partial(event, "inbound")),
        store.submit(partial(event, "route")),
    )

    assert list(seqs) == [None, 1, 2]
    assert len(transactions) == 3
    assert transactions[0] is transactions[1] is transactions[2]
    call = await store.calls.get_call("c1")
    assert call is not None
    assert [(e.seq, e.kind) for e in call.events] == [(1, "inbound"), (2, "route")]


async def test_a_long_queue_is_committed_max_batch_units_of_work_at_a_time(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_engine, "MAX_BATCH", 2)

    def transaction(connection: Connection) -> object:
        return connection.get_transaction()

    ran = await asyncio.gather(*(store.submit(transaction) for _ in range(5)))

    assert ran[0] is ran[1]
    assert ran[2] is ran[3]
    assert len({id(each) for each in ran}) == 3


async def test_a_failing_submitted_write_gets_its_error_and_the_others_commit(store: Store) -> None:
    created = store.submit(
        partial(store.calls.create_call_in, "c1", dialed="+18005550123", started_at=START)
    )
    unknown = store.submit(partial(store.calls.update_call_in, "nope", {"state": "ended"}))
    appended = store.submit(partial(store.calls.append_event_in, "c1", "inbound", START, {}))

    outcomes = await asyncio.gather(created, unknown, appended, return_exceptions=True)

    assert outcomes[0] is None
    assert isinstance(outcomes[1], KeyError)
    assert outcomes[1].args == ("nope",)
    assert outcomes[2] == 1
    call = await store.calls.get_call("c1")
    assert call is not None
    assert [e.kind for e in call.events] == ["inbound"]


async def test_a_posted_write_has_no_future_its_failure_is_logged_and_later_ones_wait_for_it(
    store: Store, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_engine, "COMMIT_DELAY", 3600.0)
    ran: list[str] = []

    def noted(name: str, work: store_engine.Work[object], connection: Connection) -> object:
        ran.append(name)
        return work(connection)

    create = partial(store.calls.create_call_in, "c1", dialed="+18005550123", started_at=START)
    store.post(partial(noted, "create", create), what="call c1")
    unknown = partial(store.calls.update_call_in, "nope", {"state": "ended"})
    store.post(partial(noted, "unknown", unknown), what="call nope")
    append = partial(store.calls.append_event_in, "c1", "inbound", START, {})
    store.post(partial(noted, "append", append), what="call c1", urgent=True)
    with caplog.at_level(logging.ERROR, logger="callwhisper.store.engine"):
        last = await asyncio.wait_for(store.submit(partial(noted, "last", append)), 10)

    assert last == 2
    # The batch failed as a whole, then each ran alone, in order.
    assert ran[-4:] == ["create", "unknown", "append", "last"]
    assert only_error(caplog, KeyError) == "call nope: store write failed"
    call = await store.calls.get_call("c1")
    assert call is not None
    assert [(e.seq, e.kind) for e in call.events] == [(1, "inbound"), (2, "inbound")]


async def test_closing_the_store_commits_what_is_queued(database_url: str) -> None:
    store = create_store(database_url)
    await store.migrate()
    queued = store.submit(
        partial(store.calls.create_call_in, "c1", dialed="+18005550123", started_at=START)
    )
    await store.close()
    assert queued.done()
    assert queued.exception() is None
    reopened = create_store(database_url)
    try:
        assert await reopened.calls.get_call("c1") is not None
    finally:
        await reopened.close()


async def test_an_urgent_write_commits_at_once_with_those_queued_before_it(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the urgent one, these would wait an hour for company."""
    monkeypatch.setattr(store_engine, "COMMIT_DELAY", 3600.0)
    created = store.submit(
        partial(store.calls.create_call_in, "c1", dialed="+18005550123", started_at=START)
    )
    appended = store.submit(
        partial(store.calls.append_event_in, "c1", "inbound", START, {}), urgent=True
    )

    assert await asyncio.wait_for(appended, 10) == 1
    assert created.done()
    assert created.exception() is None


async def test_deferred_rows_run_at_the_end_and_a_keyed_one_only_with_its_last_parameters(
    store: Store,
) -> None:
    """A keyed row runs once, with the parameters it was last updated with; unkeyed rows all run."""
    add = (
        update(calls)
        .where(calls.c.id == bindparam("call_key"))
        .values(last_event_seq=calls.c.last_event_seq + bindparam("step"))
    )

    def create(connection: Connection) -> None:
        for call_id in ("c1", "c2"):
            store.calls.create_call_in(call_id, connection, dialed="+18005550123", started_at=START)

    def work(connection: Connection) -> None:
        store_engine.defer(connection, add, {"call_key": "c1", "step": 1}, key="c1")
        store_engine.defer(connection, add, {"call_key": "c2", "step": 10})
        assert store_engine.update_deferred(connection, add, "c1", {"step": 100})
        store_engine.defer(connection, add, {"call_key": "c2", "step": 1000})
        assert not store_engine.update_deferred(connection, add, "c2", {"step": 1})
        with pytest.raises(ValueError, match="'c1' is deferred already"):
            store_engine.defer(connection, add, {"call_key": "c1", "step": 1}, key="c1")
        # Nothing deferred has run yet.
        assert connection.scalar(select(func.sum(calls.c.last_event_seq))) == 0

    await store.database.run_write(create)
    await store.database.run_write(work)

    async with store.database.read() as connection:
        rows = await connection.execute(select(calls.c.id, calls.c.last_event_seq))
        assert sorted(tuple(row) for row in rows) == [("c1", 100), ("c2", 1010)]


async def test_rows_added_under_one_key_sum_what_they_count_and_keep_the_rest_last(
    store: Store,
) -> None:
    """add_deferred folds a key's rows into one; run_deferred without a key runs them all."""
    step = (
        update(calls)
        .where(calls.c.id == bindparam("call_key"))
        .values(last_event_seq=calls.c.last_event_seq + bindparam("step"), state=bindparam("to"))
    )

    def create(connection: Connection) -> None:
        for call_id in ("c1", "c2", "c3"):
            store.calls.create_call_in(call_id, connection, dialed="+18005550123", started_at=START)

    def work(connection: Connection) -> None:
        for call_id, count, state in (("c1", 1, "a"), ("c2", 10, "b"), ("c1", 100, "c")):
            params = {"call_key": call_id, "step": count, "to": state}
            store_engine.add_deferred(connection, step, params, key=call_id, sums=("step",))
        assert store_engine.deferred_row(connection, step, "c1") == {
            "call_key": "c1",
            "step": 101,
            "to": "c",
        }
        assert store_engine.deferred_row(connection, step, "c3") is None
        store_engine.run_deferred(connection, step)
        assert store_engine.deferred_row(connection, step, "c1") is None
        params = {"call_key": "c3", "step": 1000, "to": "d"}
        store_engine.add_deferred(connection, step, params, key="c3", sums=("step",))

    await store.database.run_write(create)
    await store.database.run_write(work)

    async with store.database.read() as connection:
        query = select(calls.c.id, calls.c.last_event_seq, calls.c.state)
        rows = await connection.execute(query)
        assert sorted(tuple(row) for row in rows) == [
            ("c1", 101, "c"),
            ("c2", 10, "b"),
            ("c3", 1000, "d"),
        ]
