"""Fixtures of the store tests: a migrated store on each database."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from callwhisper.store import Store, create_store


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    """A migrated, empty store on SQLite or PostgreSQL (one run per database)."""
    opened = create_store(database_url)
    await opened.migrate()
    try:
        yield opened
    finally:
        await opened.close()
