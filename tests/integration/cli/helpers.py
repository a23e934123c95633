"""Helpers for the command-line tests: run a command and capture what it printed."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner, Result

from callwhisper.cli import main

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "auto-insurance.yaml"


def run(*args: str | Path) -> Result:
    """Run ``callwhisper ARGS`` in-process; never lets an exception escape unnoticed."""
    result = CliRunner().invoke(main, [str(arg) for arg in args], catch_exceptions=True)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def sqlite_url(path: Path) -> str:
    """A SQLite URL for a database file."""
    return f"sqlite:///{path}"
