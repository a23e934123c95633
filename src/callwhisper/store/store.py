"""The ``Store``: one database, its migrations and its repositories."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import URL, Connection

from callwhisper.store.calls import CallRepository
from callwhisper.store.config import ConfigRepository
from callwhisper.store.counters import CounterRepository
from callwhisper.store.engine import Database, Work, database_url, make_engine
from callwhisper.store.ledger import SqlCapLedger

MIGRATIONS = Path(__file__).parent / "migrations"
_T = TypeVar("_T")


def alembic_config() -> Config:
    """The Alembic configuration of the packaged migrations (no ini file needed)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


class Store:
    """The database of one installation and its repositories.

    ``config`` applies and loads the configuration, ``calls`` keeps call
    records, ``ledger`` is the cap ledger and ``counters`` loads what routing
    reads. Call ``migrate()`` once at start-up and ``close()`` at the end.
    """

    def __init__(self, url: URL, *, pool_size: int = 10) -> None:
        self.url = url
        self.database = Database(make_engine(url, pool_size=pool_size))
        self.config = ConfigRepository(self.database)
        self.ledger = SqlCapLedger(self.database)
        self.calls = CallRepository(self.database, self.ledger)
        self.counters = CounterRepository(self.database)

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self.database.dialect

    async def migrate(self) -> None:
        """Bring the schema up to the newest migration (Alembic ``upgrade head``).

        Alembic reads its scripts from disk, so the upgrade runs in a worker
        thread with its own short-lived engine and never blocks the event loop.
        """
        await asyncio.to_thread(_upgrade_blocking, self.url)

    def submit(self, work: Work[_T], *, urgent: bool = False) -> asyncio.Future[_T]:
        """Queue a unit of work for a shared write transaction (``Database.submit``)."""
        return self.database.submit(work, urgent=urgent)

    def post(self, work: Work[Any], *, what: str, urgent: bool = False) -> None:
        """Queue a unit of work nobody waits for by itself (``Database.post``)."""
        self.database.post(work, what=what, urgent=urgent)

    async def close(self) -> None:
        """Commit the queued writes, then close every pooled connection."""
        await self.database.close()


def _upgrade_blocking(url: URL) -> None:
    asyncio.run(_upgrade(url))


async def _upgrade(url: URL) -> None:
    engine = make_engine(url, null_pool=True)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_upgrade_on)
            await connection.commit()
    finally:
        await engine.dispose()


def _upgrade_on(connection: Connection) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


def create_store(
    url: str | None = None,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    pool_size: int = 10,
) -> Store:
    """A store on ``url``, else ``CALLWHISPER_DATABASE_URL``, else SQLite in ``data_dir``.

    ``data_dir`` defaults to ``CALLWHISPER_DATA_DIR`` or ``./var``; the SQLite
    file is ``callwhisper.db`` there.
    """
    return Store(database_url(url, data_dir), pool_size=pool_size)
