"""SQLite's units of work on the event loop: slices, lock waits, checkpoints by the worker."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import pytest
from sqlalchemy import Connection

from callwhisper.errors import StoreError
from callwhisper.store import Store, create_store
from callwhisper.store import engine as store_engine

pytestmark = pytest.mark.integration

START = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = create_store(f"sqlite:///{tmp_path / 'callwhisper.db'}")
    await opened.migrate()
    try:
        yield opened
    finally:
        await opened.close()


def create_call(store: Store, call_id: str, connection: Connection) -> None:
    store.calls.create_call_in(call_id, connection, dialed="+18005550123", started_at=START)


def create_calls(store: Store, prefix: str, count: int, connection: Connection) -> None:
    for index in range(count):
        create_call(store, f"{prefix}-{index:03}", connection)


def file_only_calls(path: Path) -> list[str]:
    """The calls in the database file itself, ignoring what only its log holds."""
    with sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True) as reader:
        return [row[0] for row in reader.execute("SELECT id FROM calls ORDER BY id")]


class Ticker:
    """Counts the loop's turns while it runs."""

    def __init__(self) -> None:
        self.turns = 0
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            self.turns += 1
            await asyncio.sleep(0)

    def stop(self) -> None:
        self._task.cancel()


async def test_a_long_transaction_lets_the_loop_take_turns_between_its_slices(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_engine, "SLICE_SECONDS", 0.0)
    ticker = Ticker()
    seen: list[tuple[object, int]] = []

    def work(call_id: str, connection: Connection) -> None:
        seen.append((connection.get_transaction(), ticker.turns))
        create_call(store, call_id, connection)

    await asyncio.gather(*(store.submit(partial(work, f"c{index}")) for index in range(4)))
    ticker.stop()

    assert len({id(transaction) for transaction, _ in seen}) == 1
    turns = [turn for _, turn in seen]
    assert turns == sorted(turns)
    assert len(set(turns)) == 4, "the loop took a turn between every two units of work"
    assert sorted(call.id for call in await store.calls.list_calls()) == ["c0", "c1", "c2", "c3"]


async def test_a_write_waits_for_another_writer_without_stopping_the_loop(
    store: Store, tmp_path: Path
) -> None:
    other = sqlite3.connect(tmp_path / "callwhisper.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    ticker = Ticker()
    writing = asyncio.ensure_future(store.database.run_write(partial(create_call, store, "c1")))
    await asyncio.sleep(0.2)
    assert not writing.done()
    assert ticker.turns > 50, "the loop kept running while the write waited for the lock"

    other.execute("COMMIT")
    other.close()
    await asyncio.wait_for(writing, 5)
    ticker.stop()

    assert await store.calls.get_call("c1") is not None


async def test_a_lock_held_past_the_busy_timeout_is_a_store_error(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_engine, "SQLITE_BUSY_TIMEOUT_SECONDS", 0.1)
    other = sqlite3.connect(tmp_path / "callwhisper.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreError, match="database is locked"):
            await store.database.run_write(partial(create_call, store, "c1"))
    finally:
        other.execute("ROLLBACK")
        other.close()

    await store.database.run_write(partial(create_call, store, "c2"))
    assert [call.id for call in await store.calls.list_calls()] == ["c2"]


async def test_the_worker_checkpoints_the_log_after_a_commit(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_engine, "CHECKPOINT_DELAY", 0.01)
    await store.submit(partial(create_call, store, "c1"))

    for _ in range(500):
        if file_only_calls(tmp_path / "callwhisper.db") == ["c1"]:
            break
        await asyncio.sleep(0.01)
    assert file_only_calls(tmp_path / "callwhisper.db") == ["c1"]


async def test_the_loop_never_checkpoints_and_closing_leaves_everything_in_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_engine, "CHECKPOINT_DELAY", 3600.0)
    store = create_store(f"sqlite:///{tmp_path / 'callwhisper.db'}")
    await store.migrate()
    try:
        # More pages than SQLite's own automatic checkpoint (1,000) would let the log hold.
        for block in range(60):
            await store.database.run_write(partial(create_calls, store, f"c{block:02}", 200))
        assert file_only_calls(tmp_path / "callwhisper.db") == []
        assert (tmp_path / "callwhisper.db-wal").stat().st_size > 1000 * 4096
    finally:
        await store.close()

    assert len(file_only_calls(tmp_path / "callwhisper.db")) == 12000


def test_closing_on_uvloop_with_a_checkpoint_pending(tmp_path: Path) -> None:
    uvloop = pytest.importorskip("uvloop")

    async def main() -> list[str]:
        store = create_store(f"sqlite:///{tmp_path / 'callwhisper.db'}")
        await store.migrate()
        try:
            await store.submit(partial(create_call, store, "c1"))
        finally:
            await store.close()
        return file_only_calls(tmp_path / "callwhisper.db")

    assert uvloop.run(main()) == ["c1"]
