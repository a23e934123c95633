"""What the commands share: reading a configuration file, opening the store, failing clearly."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from typing import NoReturn, TypeVar

import click
from alembic.util.exc import CommandError as AlembicError
from sqlalchemy import make_url
from sqlalchemy.engine import URL
from sqlalchemy.exc import ArgumentError, OperationalError, SQLAlchemyError

from callwhisper.config import load_configuration_file
from callwhisper.domain.configuration import Configuration
from callwhisper.errors import ConfigError, StoreError
from callwhisper.store import DATABASE_URL_ENV, Store, create_store, database_url, sqlite_file

T = TypeVar("T")

EXIT_INVALID = 1
"""Exit status when the configuration is invalid."""

EXIT_STORE = 2
"""Exit status when the store (database) cannot be reached or fails."""

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
"""How the commands log: no process, thread or task names in it."""


def configure_logging(level: int, filename: str | os.PathLike[str] | None = None) -> None:
    """Log at ``level`` in :data:`LOG_FORMAT`, on stderr or to ``filename``.

    :data:`LOG_FORMAT` names no process nor thread, so log records do not
    look them up (the logging module's documented optimisation): on Python
    3.11 the process id is a system call per record.
    """
    logging.logProcesses = False
    logging.logThreads = False
    logging.logMultiprocessing = False
    logging.basicConfig(level=level, format=LOG_FORMAT, filename=filename)


def fail(problems: list[str], status: int = EXIT_INVALID) -> NoReturn:
    """Print every problem on stderr and exit with ``status``."""
    for problem in problems:
        click.echo(problem, err=True)
    raise SystemExit(status)


def read_configuration(path: str | os.PathLike[str]) -> Configuration:
    """The configuration in ``path``, or exit 1 after printing every problem."""
    try:
        return load_configuration_file(path)
    except ConfigError as error:
        count = len(error.problems)
        footer = [f"{os.fspath(path)}: {_plural(count, 'problem')}"] if count > 1 else []
        fail([*error.problems, *footer])


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def summary(configuration: Configuration) -> str:
    """One line counting what a configuration holds."""
    parts = [
        _plural(len(configuration.campaigns), "campaign"),
        _plural(len(configuration.buyers), "buyer"),
        _plural(sum(len(b.targets) for b in configuration.buyers), "target"),
        _plural(len(configuration.publishers), "publisher"),
        _plural(len(configuration.numbers), "tracking number"),
    ]
    if configuration.trunks:
        parts.append(_plural(len(configuration.trunks), "trunk"))
    return ", ".join(parts)


class StoreUnavailable(Exception):
    """The database cannot be used; the message says which and why."""


def database_option(function: Callable[..., T]) -> Callable[..., T]:
    """The ``--database-url`` option, read from ``CALLWHISPER_DATABASE_URL`` when absent."""
    option = click.option(
        "--database-url",
        envvar=DATABASE_URL_ENV,
        show_envvar=True,
        default=None,
        metavar="URL",
        help="sqlite:///path/to/file.db or postgresql://user@host/db "
        "(default: SQLite in $CALLWHISPER_DATA_DIR or ./var).",
    )
    return option(function)


def tag_option(function: Callable[..., T]) -> Callable[..., T]:
    """The repeatable ``--tag NAME=VALUE`` option, passed as ``tags`` (see ``parse_tags``)."""
    option = click.option(
        "--tag",
        "-t",
        "tags",
        multiple=True,
        metavar="NAME=VALUE",
        help="A call tag or IVR answer; repeat for several.",
    )
    return option(function)


def parse_tags(values: tuple[str, ...]) -> dict[str, str]:
    """``("insured=yes", "age=70")`` as ``{"insured": "yes", "age": "70"}``."""
    tags: dict[str, str] = {}
    for value in values:
        name, sep, text = value.partition("=")
        if not sep or not name.strip():
            raise click.BadParameter(f"{value!r} is not NAME=VALUE", param_hint="--tag")
        tags[name.strip()] = text
    return tags


def with_store(
    url: str | None,
    work: Callable[[Store], Awaitable[T]],
    *,
    migrate: bool,
) -> T:
    """Run ``work`` on the store at ``url``, or exit 2 with a clear message when it fails.

    With ``migrate`` the schema is brought up to date first (``apply``);
    without it the database must exist already, and nothing is written.
    """
    try:
        return asyncio.run(_with_store(url, work, migrate=migrate))
    except StoreUnavailable as error:
        fail([f"error: {error}"], EXIT_STORE)


def stored_configuration(url: str | None) -> Configuration:
    """The configuration last applied to the store at ``url`` (which must exist), or exit 2."""

    async def read(store: Store) -> Configuration:
        return await store.config.load_configuration()

    return with_store(url, read, migrate=False)


async def _with_store(
    url: str | None, work: Callable[[Store], Awaitable[T]], *, migrate: bool
) -> T:
    shown = _shown(url)
    try:
        resolved = database_url(url)
        if not migrate:
            _require_existing_file(resolved)
        shown = resolved.render_as_string(hide_password=True)
        store = create_store(url)
    except (ValueError, ArgumentError, OSError) as error:
        raise StoreUnavailable(f"database {shown}: {error}") from None
    try:
        if migrate:
            await store.migrate()
        return await work(store)
    except (StoreError, SQLAlchemyError, AlembicError, OSError, TimeoutError) as error:
        raise StoreUnavailable(f"database {shown}: {_reason(error)}") from None
    finally:
        await store.close()


def _shown(url: str | None) -> str:
    if url is None:
        return "(default)"
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(invalid URL)"


def _require_existing_file(url: URL) -> None:
    path = sqlite_file(url)
    if path is not None and not path.exists():
        raise StoreUnavailable(
            f"database {url.render_as_string(hide_password=True)}: no such file "
            "(run callwhisper apply first)"
        )


def _reason(error: BaseException) -> str:
    original = getattr(error, "orig", None)
    text = str(original if original is not None else error).strip()
    first_line = text.splitlines()[0] if text else type(error).__name__
    if isinstance(error, OperationalError) and "no such table" in first_line:
        return f"{first_line} (not a callwhisper database, or run callwhisper apply first)"
    return first_line
