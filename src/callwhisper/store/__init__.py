"""The store: configuration, call records, the cap ledger and routing counters in SQL.

SQLite (a file, the embedded default) or PostgreSQL, through SQLAlchemy's
asyncio API; the schema is managed by the Alembic migrations packaged here.
"""

from callwhisper.store.calls import (
    CallChanges,
    CallEvent,
    CallRecord,
    CallRepository,
    LegChanges,
    LegRecord,
)
from callwhisper.store.config import ApplyReport, ConfigRepository
from callwhisper.store.counters import CounterRepository
from callwhisper.store.engine import DATABASE_URL_ENV, database_url, sqlite_file
from callwhisper.store.ledger import CapAmounts, SqlCapLedger
from callwhisper.store.resident import ResidentCounters
from callwhisper.store.store import Store, create_store

__all__ = [
    "DATABASE_URL_ENV",
    "ApplyReport",
    "CallChanges",
    "CallEvent",
    "CallRecord",
    "CallRepository",
    "CapAmounts",
    "ConfigRepository",
    "CounterRepository",
    "LegChanges",
    "LegRecord",
    "ResidentCounters",
    "SqlCapLedger",
    "Store",
    "create_store",
    "database_url",
    "sqlite_file",
]
