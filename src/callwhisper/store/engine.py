"""Engines, transactions and the ``Store`` facade.

``create_store()`` picks the database: an explicit URL, else
``CALLWHISPER_DATABASE_URL``, else a SQLite file in the data directory
(``CALLWHISPER_DATA_DIR``, default ``./var``). SQLite runs in WAL mode with
foreign keys on and a busy timeout; write transactions there start with
``BEGIN IMMEDIATE`` so that writers queue instead of failing half-way.

The call path runs its work as plain synchronous SQLAlchemy, one unit of
work per transaction (:meth:`Database.run_write`, :meth:`Database.run_read`):
on SQLite on the event loop's own thread with the standard driver, on one
connection kept open; on PostgreSQL through ``run_sync`` on an asyncpg
connection. Its writes go through ``store.compiled``, which on SQLite runs
each statement compiled once on the driver's cursor instead of SQLAlchemy's
per-statement machinery.

Why SQLite runs on the loop's thread: a statement costs SQLite a few
microseconds, and the driver lets go of the GIL around each one. With the
work in a thread of its own, every statement handed the GIL to the loop and
back (a futex wake and a context switch each way): at 150 calls a second the
server spent about a tenth more CPU per call that way than with the same
work on the loop (the SIP benchmark's whole flow, ``docs/benchmarks.md``).
On the loop the work runs in slices of at most :data:`SLICE_SECONDS`, each
followed by a turn of the loop, so that an arriving call waits for one slice
at most; nothing there waits for the disk: commits in WAL mode with
``synchronous=NORMAL`` only write to the log, and that connection never
checkpoints. A worker thread does, with a connection of its own, at most
:data:`CHECKPOINT_DELAY` after a commit (a passive checkpoint, which neither
waits for nor stops the writer); it is then that the log is synced to disk.
When another connection (the API's, another process) holds the write lock,
the loop's ``BEGIN IMMEDIATE`` does not wait in SQLite's busy handler, which
would stop the loop: it tries again after a pause, for as long as the busy
timeout.

Writes that nobody needs to wait for one by one (a call's timeline, its
records, its cap commits) are better still handed to :meth:`Database.submit`:
the units of work queued within ``COMMIT_DELAY`` go into one transaction, in
the order submitted, so a busy server commits many calls' writes at once; an
urgent one (a cap reservation a caller waits for) is committed at once, with
whatever was queued before it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import time
from _json import encode_basestring_ascii, make_encoder
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Collection,
    Hashable,
    Iterator,
    Mapping,
    Sequence,
)
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import date, datetime
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any, Final, TypeVar, cast

from sqlalchemy import create_engine, event, make_url, text
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool
from sqlalchemy.sql.expression import Executable

from callwhisper.errors import StoreError
from callwhisper.store.compiled import execute, execute_many
from callwhisper.store.sql import is_retryable

DATABASE_URL_ENV = "CALLWHISPER_DATABASE_URL"
DATA_DIR_ENV = "CALLWHISPER_DATA_DIR"
DEFAULT_DATA_DIR = "var"
DATABASE_FILE = "callwhisper.db"
SQLITE_BUSY_TIMEOUT_SECONDS = 30.0
MAX_ATTEMPTS = 20
"""Runs of a transaction that keeps losing races (PostgreSQL) before giving up."""
MAX_BATCH = 500
"""Units of work committed together by :meth:`Database.submit` at most."""
COMMIT_DELAY = 0.05
"""Seconds a submitted unit of work may wait for others to share its transaction.

Each transaction costs its BEGIN and COMMIT and writes every page it
changed to the log once, however many calls changed it: replaying the
benchmark's calls at 75 a second, 50 ms instead of 10 cut the store's CPU
per call by about a third (100 ms gained nothing more; measured when the
store had a thread of its own). A crash loses what is queued: about this much of the writes
nobody waits for.
"""

SLICE_SECONDS = 0.0005
"""Longest stretch of SQLite work on the event loop before other work gets a turn."""
DEFERRED_CHUNK = 64
"""Deferred rows run per ``executemany`` between two turns of the loop."""
CHECKPOINT_DELAY = 1.0
"""Seconds after a commit by which the worker thread checkpoints the log (and syncs it)."""

log = logging.getLogger(__name__)

_BEGIN_OPTION = "callwhisper_begin"
_BEGIN = {mode: text(f"BEGIN {mode}") for mode in ("DEFERRED", "IMMEDIATE")}
_BEGUN = "begun"
"""The begin mode of a transaction whose BEGIN was already run (:meth:`Database._begin`)."""

_T = TypeVar("_T")
Work = Callable[[Connection], _T]
"""A unit of work: synchronous SQLAlchemy on a connection inside a transaction."""


def database_url(url: str | None = None, data_dir: str | os.PathLike[str] | None = None) -> URL:
    """The SQLAlchemy URL to use, with an async driver.

    ``postgresql://`` and ``postgres://`` are rewritten to ``postgresql+asyncpg://``
    and ``sqlite://`` to ``sqlite+aiosqlite://``.
    """
    text = url or os.environ.get(DATABASE_URL_ENV)
    if not text:
        directory = Path(data_dir or os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR)
        text = f"sqlite+aiosqlite:///{directory / DATABASE_FILE}"
    parsed = make_url(text)
    backend = parsed.get_backend_name()
    if backend in ("postgresql", "postgres"):
        return parsed.set(drivername="postgresql+asyncpg")
    if backend == "sqlite":
        return parsed.set(drivername="sqlite+aiosqlite")
    raise ValueError(f"unsupported database {backend!r} (use postgresql:// or sqlite://)")


def sqlite_file(url: URL) -> Path | None:
    """The database file of a SQLite URL; ``None`` for in-memory, ``file:`` URIs and servers."""
    database = url.database
    if url.get_backend_name() != "sqlite" or not database:
        return None
    if database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def json_default(value: object) -> object:
    """JSON for the values our records carry besides plain JSON: money, times and dates."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


_encode_json = make_encoder(
    None, json_default, encode_basestring_ascii, None, ":", ",", False, False, True
)
"""The C encoder ``json.dumps`` builds for every value, built once (no check for circular
references: the store's values are trees)."""


def _json_dumps(value: object) -> str:
    """``json.dumps(value, default=json_default, separators=(",", ":"))``, a few times cheaper."""
    return "".join(_encode_json(value, 0))


def make_engine(url: URL, *, pool_size: int = 10, null_pool: bool = False) -> AsyncEngine:
    """An async engine for ``url`` set up for the store (SQLite pragmas, JSON, pooling)."""
    options: dict[str, Any] = {"json_serializer": _json_dumps}
    if null_pool:
        options["poolclass"] = NullPool
    else:
        options["pool_size"] = pool_size
        options["max_overflow"] = pool_size
    if url.get_backend_name() == "sqlite":
        path = sqlite_file(url)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        options["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_SECONDS}
        engine = create_async_engine(url, **options)
        _configure_sqlite(engine.sync_engine)
        return engine
    options["pool_pre_ping"] = True
    return create_async_engine(url, **options)


def _loop_sqlite_engine(url: URL) -> Engine:
    """The standard-driver engine on the same SQLite file, for the event loop's units of work.

    Its connection never waits in SQLite's busy handler (that would stop the
    loop) and, on a file, never checkpoints the log (the worker thread does).
    """
    engine = create_engine(
        url.set(drivername="sqlite+pysqlite"),
        json_serializer=_json_dumps,
        pool_size=1,
        max_overflow=0,
        connect_args={"timeout": 0.0, "check_same_thread": False},
    )
    _configure_sqlite(engine, busy_timeout=0.0, checkpoints=sqlite_file(url) is None)
    return engine


def _configure_sqlite(
    engine: Engine, *, busy_timeout: float = SQLITE_BUSY_TIMEOUT_SECONDS, checkpoints: bool = True
) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # We emit BEGIN ourselves (see _on_begin); the driver's own is deferred and
        # skipped for SELECT, which would make reads unrepeatable.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        if not checkpoints:
            cursor.execute("PRAGMA wal_autocheckpoint=0")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        mode = connection.get_execution_options().get(_BEGIN_OPTION, "DEFERRED")
        if mode != _BEGUN:
            execute(connection, _BEGIN[mode], {})


class _Turns:
    """Lets the event loop take a turn whenever :data:`SLICE_SECONDS` of work have run."""

    __slots__ = ("_until",)

    def __init__(self) -> None:
        self._until = time.perf_counter() + SLICE_SECONDS

    async def take(self) -> None:
        """A turn of the loop if this slice is over, else nothing."""
        if time.perf_counter() >= self._until:
            await asyncio.sleep(0)
            self._until = time.perf_counter() + SLICE_SECONDS


class Database:
    """One engine and its transactions; every repository of a store shares it."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self._sqlite: Engine | None = None
        self._connection: Connection | None = None
        """The event loop's own SQLite connection, kept open between units of work."""
        self._lock = asyncio.Lock()
        """Held by whoever runs a transaction on :attr:`_connection`."""
        self._file = sqlite_file(engine.url)
        self._worker: ThreadPoolExecutor | None = None
        """Checkpoints the log of a SQLite file, with a connection of its own."""
        self._checkpointer: sqlite3.Connection | None = None
        self._checkpoint: asyncio.TimerHandle | asyncio.Future[None] | None = None
        if self.is_sqlite:
            self._sqlite = _loop_sqlite_engine(engine.url)
            if self._file is not None:
                self._worker = ThreadPoolExecutor(1, thread_name_prefix="callwhisper-checkpoint")
        self._queued: list[tuple[Work[Any], asyncio.Future[Any] | str]] = []
        """Units of work to commit, each with its future, or what to call it in the log."""
        self._committer: asyncio.Task[None] | None = None
        self._urgent = asyncio.Event()

    @property
    def is_sqlite(self) -> bool:
        """Whether this is the embedded SQLite database."""
        return self.dialect == "sqlite"

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A connection in a write transaction, committed on success.

        On SQLite the transaction starts with ``BEGIN IMMEDIATE``: it takes the
        write lock at once, so concurrent writers wait (busy timeout) instead of
        failing when they try to upgrade a read lock.
        """
        async with self.engine.connect() as connection:
            if self.is_sqlite:
                connection = await connection.execution_options(**{_BEGIN_OPTION: "IMMEDIATE"})
            async with connection.begin():
                yield connection

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A connection in a read transaction (one consistent snapshot)."""
        async with self.engine.connect() as connection, connection.begin():
            yield connection

    async def run_write(self, work: Work[_T]) -> _T:
        """Run ``work`` in a write transaction (as :meth:`write`), committed if it returns.

        Statements the work hands to :func:`defer` run at its end, before the commit.
        """
        if self._sqlite is None:
            async with self.write() as connection:
                return await connection.run_sync(partial(_deferring, work))
        (result,) = await self._on_loop([work], "IMMEDIATE")
        return cast(_T, result)

    async def run_read(self, work: Work[_T]) -> _T:
        """Run ``work`` in a read transaction (as :meth:`read`)."""
        if self._sqlite is None:
            async with self.read() as connection:
                return await connection.run_sync(work)
        (result,) = await self._on_loop([work], "DEFERRED")
        return cast(_T, result)

    async def _write_all(self, works: Sequence[Work[Any]]) -> list[Any]:
        """Run ``works`` in one write transaction, in order; their results."""
        if self._sqlite is None:
            return await self.run_write(partial(_run_all, works))
        return await self._on_loop(works, "IMMEDIATE")

    async def _on_loop(self, works: Sequence[Work[Any]], mode: str) -> list[Any]:
        """Run ``works`` in one transaction on the loop's SQLite connection, in slices.

        A write transaction runs what its units of work deferred at the end,
        before the commit. Between two slices of at most
        :data:`SLICE_SECONDS` the loop takes a turn; the connection stays
        this transaction's until it ends.
        """
        async with self._lock:
            connection = await self._begin(mode)
            transaction = connection.begin()
            deferred: _Deferred = {}
            if mode == "IMMEDIATE":
                _deferred[connection] = deferred
            turns = _Turns()
            try:
                results = []
                for work in works:
                    results.append(work(connection))
                    await turns.take()
                for statement, rows in _deferred_batches(deferred, DEFERRED_CHUNK):
                    execute_many(connection, statement, rows)
                    await turns.take()
                transaction.commit()
            except BaseException:
                if transaction.is_active:
                    transaction.rollback()
                raise
            finally:
                _deferred.pop(connection, None)
        if mode == "IMMEDIATE":
            self._checkpoint_soon()
        return results

    async def _begin(self, mode: str) -> Connection:
        """The loop's connection, its SQLite transaction begun in ``mode``.

        ``BEGIN IMMEDIATE`` fails at once while another connection writes:
        it is tried again after growing pauses, for as long as the busy
        timeout, the loop running meanwhile.
        """
        connection = self._connection
        if connection is None or connection.invalidated:
            assert self._sqlite is not None
            connection = self._connection = self._sqlite.connect()
            # Its transactions begin here, not in _on_begin.
            connection.execution_options(**{_BEGIN_OPTION: _BEGUN})
        deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_SECONDS
        attempt = 0
        while True:
            try:
                execute(connection, _BEGIN[mode], {})
            except DBAPIError as error:
                if not is_retryable(error) or time.monotonic() > deadline:
                    raise StoreError(f"store: {error.orig}") from error
                await pause(attempt)
                attempt += 1
            else:
                return connection

    def _checkpoint_soon(self) -> None:
        """Have the worker thread checkpoint the log :data:`CHECKPOINT_DELAY` from now."""
        if self._worker is None or self._checkpoint is not None:
            return
        loop = asyncio.get_running_loop()
        self._checkpoint = loop.call_later(CHECKPOINT_DELAY, self._start_checkpoint, loop)

    def _start_checkpoint(self, loop: asyncio.AbstractEventLoop) -> None:
        running = self._checkpoint = loop.run_in_executor(self._worker, self._checkpoint_log)
        running.add_done_callback(self._checkpointed)

    def _checkpointed(self, running: asyncio.Future[None]) -> None:
        self._checkpoint = None
        error = None if running.cancelled() else running.exception()
        if error is not None:
            log.warning("store: checkpoint of the log failed: %s", error)

    def _checkpoint_log(self) -> None:
        """Copy the log's committed pages into the database file (worker thread)."""
        if self._checkpointer is None:
            assert self._file is not None
            self._checkpointer = sqlite3.connect(
                self._file, timeout=SQLITE_BUSY_TIMEOUT_SECONDS, check_same_thread=False
            )
        self._checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    def _close_sqlite(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        if self._sqlite is not None:
            self._sqlite.dispose()
        if self._checkpointer is not None:
            self._checkpointer.close()
            self._checkpointer = None

    def submit(self, work: Work[_T], *, urgent: bool = False) -> asyncio.Future[_T]:
        """Queue ``work`` for a shared write transaction; the future has its result.

        Units of work run in the order submitted: those queued within
        :data:`COMMIT_DELAY` of each other (or while a transaction runs) in
        one transaction, at once when one is ``urgent``. If any of them
        raises, each is run again in a transaction of its own, so that one
        bad write loses nothing else and gets its own error.
        """
        loop = self._loop()
        future: asyncio.Future[_T] = loop.create_future()
        self._queue(work, future, urgent, loop)
        return future

    def post(self, work: Work[Any], *, what: str, urgent: bool = False) -> None:
        """Queue ``work`` as :meth:`submit` does, for a write nobody waits for by itself.

        Its failure is logged as ``"<what>: store write failed"``. A future
        of a unit of work submitted after it is done only once this one is
        (units of work end in the order queued): a caller with many writes
        waits for its last one only, without a future for each of the others.
        """
        self._queue(work, what, urgent, self._loop())

    def _loop(self) -> asyncio.AbstractEventLoop:
        committer = self._committer
        # The committer's loop is the running one: on Python 3.11 asyncio.get_running_loop()
        # is a getpid() system call, and a call submits a dozen units of work.
        return asyncio.get_running_loop() if committer is None else committer.get_loop()

    def _queue(
        self,
        work: Work[Any],
        waiter: asyncio.Future[Any] | str,
        urgent: bool,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self._queued.append((work, waiter))
        if urgent:
            self._urgent.set()
        if self._committer is None:
            self._committer = loop.create_task(self._commit_queued(), name="store-commits")

    async def _commit_queued(self) -> None:
        batch: list[tuple[Work[Any], asyncio.Future[Any] | str]] = []
        try:
            while self._queued:
                if not self._urgent.is_set():
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(COMMIT_DELAY):
                            await self._urgent.wait()
                self._urgent.clear()
                batch = self._queued[:MAX_BATCH]
                del self._queued[:MAX_BATCH]
                outcomes = await self._run_batch([work for work, _ in batch])
                for (_, waiter), (value, error) in zip(batch, outcomes, strict=True):
                    if isinstance(waiter, str):
                        if error is not None:
                            log.error("%s: store write failed", waiter, exc_info=error)
                    elif waiter.done():
                        continue
                    elif error is None:
                        waiter.set_result(value)
                    else:
                        waiter.set_exception(error)
        except BaseException:
            # Cancelled (the loop is closing): nobody may wait for ever on a lost write.
            lost = [*batch, *self._queued]
            for _, waiter in lost:
                if not isinstance(waiter, str):
                    waiter.cancel()
            posted = sorted({waiter for _, waiter in lost if isinstance(waiter, str)})
            if posted:
                log.warning("store: writes of %s were not committed", ", ".join(posted))
            self._queued.clear()
            raise
        finally:
            self._committer = None

    async def _run_batch(self, works: Sequence[Work[Any]]) -> list[tuple[Any, Exception | None]]:
        try:
            results = await retrying(partial(self._write_all, works))
        except Exception as error:
            if len(works) == 1:
                return [(None, error)]
        else:
            return [(result, None) for result in results]
        outcomes: list[tuple[Any, Exception | None]] = []
        for work in works:
            try:
                outcomes.append((await retrying(partial(self.run_write, work)), None))
            except Exception as error:
                outcomes.append((None, error))
        return outcomes

    async def close(self) -> None:
        """Commit what is queued, then close every connection and the checkpoint thread."""
        if self._committer is not None:
            self._urgent.set()
            await asyncio.gather(self._committer, return_exceptions=True)
        await self.engine.dispose()
        if self._sqlite is None:
            return
        async with self._lock:
            checkpoint = self._checkpoint
            if isinstance(checkpoint, asyncio.Future):
                await asyncio.gather(checkpoint, return_exceptions=True)
            elif checkpoint is not None:  # a timer (uvloop's are not asyncio.TimerHandle)
                checkpoint.cancel()
            self._checkpoint = None
            if self._worker is None:
                self._close_sqlite()
                return
            # The last connection to close checkpoints the whole log: not on the loop.
            await asyncio.get_running_loop().run_in_executor(self._worker, self._close_sqlite)
            self._worker.shutdown()


def _run_all(works: Sequence[Work[Any]], connection: Connection) -> list[Any]:
    return [work(connection) for work in works]


_Deferred = dict[Executable, dict[Hashable, dict[str, Any]]]
"""Each statement's rows, by key (a fresh object for rows without one)."""

_deferred: dict[Connection, _Deferred] = {}
"""What each connection's :meth:`Database.run_write` under way has deferred (a plain
dictionary: a unit of work looks it up several times per row it writes, and
``Connection.info`` costs a few property calls each time)."""


def _deferred_batches(
    deferred: _Deferred, size: int | None = None
) -> Iterator[tuple[Executable, list[dict[str, Any]]]]:
    """The deferred rows to run, in batches of at most ``size`` rows (all of a statement's).

    Each table's statements come before those of the tables referring to it:
    a row may then be deferred after rows that refer to it (a call's insert
    after a leg of an earlier call), as foreign keys are checked as each
    statement runs. Statements on one table keep the order in which they
    were first deferred.
    """
    for statement, rows in sorted(deferred.items(), key=_table_rank):
        pending = list(rows.values())
        if not pending:
            continue
        step = size or len(pending)
        for start in range(0, len(pending), step):
            yield statement, pending[start : start + step]


_ranks: dict[object, int] = {}
_UNRANKED: Final = 1 << 30
"""The rank of a statement on no table its metadata sorts: after every table."""


def _table_rank(item: tuple[Executable, object]) -> int:
    """A table's place among its metadata's tables, parents first; a statement without one last."""
    table = getattr(item[0], "table", None)
    rank = _ranks.get(table)
    if rank is None:
        metadata = getattr(table, "metadata", None)
        ordered = [] if metadata is None else metadata.sorted_tables
        rank = _ranks[table] = ordered.index(table) if table in ordered else _UNRANKED
    return rank


def defer(
    connection: Connection,
    statement: Executable,
    params: dict[str, Any],
    *,
    key: Hashable | None = None,
) -> None:
    """Run ``statement`` with ``params`` at the end of the :meth:`Database.run_write` under way.

    Every deferral of the same statement runs as one ``executemany``, in the
    order deferred, after the unit of work (a whole shared transaction of
    :meth:`Database.submit`): for rows that nothing reads before the commit,
    such as timeline entries, many calls' rows then cost one statement.
    A ``key`` names the row for :func:`update_deferred` and
    :func:`run_deferred`; the same statement deferred twice under one key is
    a ``ValueError``. Outside ``run_write`` the statement runs at once.
    ``params`` is kept, not copied: the caller hands it over.
    """
    deferred: _Deferred | None = _deferred.get(connection)
    if deferred is None:
        execute(connection, statement, params)
        return
    rows = deferred.setdefault(statement, {})
    if key is None:
        rows[object()] = params
    elif key in rows:
        raise ValueError(f"{key!r} is deferred already")
    else:
        rows[key] = params


def update_deferred(
    connection: Connection, statement: Executable, key: Hashable, params: Mapping[str, Any]
) -> bool:
    """Update the parameters ``statement`` was deferred with under ``key``; the later values win.

    For a row that changes again before the commit: its last values then
    cost no statement of their own. ``False`` when nothing is deferred under
    ``key`` in the :meth:`Database.run_write` under way.
    """
    deferred: _Deferred | None = _deferred.get(connection)
    rows = None if deferred is None else deferred.get(statement)
    if rows is None:
        return False
    row = rows.get(key)
    if row is None:
        return False
    row.update(params)
    return True


def add_deferred(
    connection: Connection,
    statement: Executable,
    params: dict[str, Any],
    *,
    key: Hashable,
    sums: Collection[str],
) -> None:
    """Defer ``statement`` under ``key``, or fold ``params`` into the row deferred there.

    The parameters named in ``sums`` add to the row's, the others replace
    them: for counters that many units of work change (an upsert that adds
    its values), each then costs one row however many changed it.
    Outside :meth:`Database.run_write` the statement runs at once.
    """
    deferred: _Deferred | None = _deferred.get(connection)
    if deferred is None:
        execute(connection, statement, params)
        return
    rows = deferred.setdefault(statement, {})
    row = rows.get(key)
    if row is None:
        rows[key] = params
        return
    summed = {name: row[name] + params[name] for name in sums}
    row.update(params)
    row.update(summed)


def deferred_row(
    connection: Connection, statement: Executable, key: Hashable
) -> Mapping[str, Any] | None:
    """The parameters ``statement`` is deferred with under ``key``, or ``None``."""
    deferred: _Deferred | None = _deferred.get(connection)
    rows = None if deferred is None else deferred.get(statement)
    return None if rows is None else rows.get(key)


def run_deferred(
    connection: Connection, statement: Executable, key: Hashable | None = None
) -> None:
    """Run the row ``statement`` was deferred with under ``key`` now, if there is one.

    For a unit of work that reads or changes the row with statements of its
    own. Without a ``key``, every row deferred with ``statement`` runs.
    """
    deferred: _Deferred | None = _deferred.get(connection)
    rows = None if deferred is None else deferred.get(statement)
    if not rows:
        return
    if key is None:
        execute_many(connection, statement, list(rows.values()))
        rows.clear()
    elif key in rows:
        execute(connection, statement, rows.pop(key))


def _deferring(work: Work[_T], connection: Connection) -> _T:
    deferred: _Deferred = {}
    _deferred[connection] = deferred
    try:
        result = work(connection)
        for statement, rows in _deferred_batches(deferred):
            execute_many(connection, statement, rows)
        return result
    finally:
        del _deferred[connection]


async def pause(attempt: int) -> None:
    """Back off a little before retrying a transaction that lost a race."""
    await asyncio.sleep(min(0.002 * 2**attempt, 0.1))


async def retrying(run: Callable[[], Awaitable[_T]], *, what: str = "store") -> _T:
    """Run a transaction again while it loses races (serialization failures, deadlocks).

    An integrity error is never retried (the same rows would conflict again);
    any other database error, or the last lost race, is a :class:`StoreError`.
    """
    for attempt in range(MAX_ATTEMPTS):
        try:
            return await run()
        except DBAPIError as error:
            if isinstance(error, IntegrityError):
                raise
            if not is_retryable(error) or attempt == MAX_ATTEMPTS - 1:
                raise StoreError(f"{what}: {error.orig}") from error
            await pause(attempt)
    raise AssertionError("unreachable")
