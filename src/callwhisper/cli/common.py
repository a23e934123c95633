"""What the commands share: reading a configuration file and reporting failures."""

from __future__ import annotations

import os
from typing import NoReturn

import click

from callwhisper.config import load_configuration_file
from callwhisper.domain.configuration import Configuration
from callwhisper.errors import ConfigError

EXIT_INVALID = 1
"""Exit status when the configuration is invalid."""

EXIT_STORE = 2
"""Exit status when the store (database) cannot be reached or fails."""

DATABASE_URL_ENV = "CALLWHISPER_DATABASE_URL"
"""Environment variable read when ``--database-url`` is not given."""


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
