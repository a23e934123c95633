"""The ``callwhisper`` command line.

Each command lives in its own module of this package and exposes a
``click.Command`` named ``command``. To add one (``serve``, ``demo``,
``whisper``...), write ``callwhisper/cli/<name>.py`` with its ``command``,
import the module below and append it to ``COMMANDS``; nothing else changes.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from types import ModuleType

import click

from callwhisper.cli import apply, check, demo, export, route, serve, whisper


def _version() -> str:
    try:
        return version("callwhisper")
    except PackageNotFoundError:
        return "unknown"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(_version(), "--version", prog_name="callwhisper")
def main() -> None:
    """Self-hostable pay-per-call routing with whispered, gated, cascading transfers."""


COMMANDS: tuple[ModuleType, ...] = (check, apply, export, route, whisper, serve, demo)
"""Modules whose ``command`` is registered on :data:`main`, in help order."""

for _module in COMMANDS:
    main.add_command(_module.command)

__all__ = ["COMMANDS", "main"]
