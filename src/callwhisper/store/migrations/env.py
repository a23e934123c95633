"""Alembic environment of the store.

``Store.migrate()`` hands over an open connection in
``config.attributes["connection"]``. Run from the ``alembic`` command line
(``alembic -c src/callwhisper/store/migrations/alembic.ini upgrade head``), the
database URL comes from ``CALLWHISPER_DATABASE_URL`` or the default SQLite file.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from callwhisper.store.engine import database_url, make_engine
from callwhisper.store.tables import metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_standalone() -> None:
    engine = make_engine(
        database_url(context.config.get_main_option("sqlalchemy.url")), null_pool=True
    )
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
            await connection.commit()
    finally:
        await engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (SQL script) migrations are not supported; run against a database")

_given: Connection | None = context.config.attributes.get("connection")
if _given is not None:
    _run(_given)
else:
    asyncio.run(_run_standalone())
