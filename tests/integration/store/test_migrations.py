"""The migrations build the schema the code expects, on both databases."""

from __future__ import annotations

from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from callwhisper.store import Store
from callwhisper.store.tables import metadata

pytestmark = pytest.mark.integration


def _differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, metadata))


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


async def test_migrations_create_every_table(store: Store) -> None:
    async with store.database.engine.connect() as connection:
        tables = await connection.run_sync(_tables)
    assert tables == set(metadata.tables) | {"alembic_version"}


async def test_migrations_match_the_models(store: Store) -> None:
    """Alembic's autogenerate comparison finds nothing to change."""
    async with store.database.engine.connect() as connection:
        differences = await connection.run_sync(_differences)
    assert differences == []


async def test_migrating_twice_changes_nothing(store: Store) -> None:
    await store.migrate()
    async with store.database.engine.connect() as connection:
        differences = await connection.run_sync(_differences)
    assert differences == []
