"""``callwhisper export``: the configuration in the store, as YAML that ``apply`` accepts."""

from __future__ import annotations

from pathlib import Path

import click

from callwhisper.cli.common import database_option, stored_configuration
from callwhisper.config import dump_configuration


@click.command("export")
@database_option
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path, dir_okay=False, writable=True),
    default=None,
    help="Write to this file instead of standard output.",
)
def command(database_url: str | None, output: Path | None) -> None:
    """Print the configuration last applied to the store (archived objects left out).

    The output loads back to the same configuration: ``apply`` of an exported
    file changes nothing. Exits 2 when the database fails.
    """
    text = dump_configuration(stored_configuration(database_url))
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        click.echo(f"wrote {output}", err=True)
