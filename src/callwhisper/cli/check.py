"""``callwhisper check FILE``: validate a configuration file without touching anything."""

from __future__ import annotations

from pathlib import Path

import click

from callwhisper.cli.common import read_configuration, summary


@click.command("check")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
def command(file: Path) -> None:
    """Validate FILE and report every problem with its line and location.

    Exits 0 when the file is valid, 1 otherwise.
    """
    configuration = read_configuration(file)
    click.echo(f"{file}: OK ({summary(configuration)})")
