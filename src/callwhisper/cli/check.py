"""``callwhisper check FILE``: validate a configuration file without touching anything."""

from __future__ import annotations

from pathlib import Path

import click

from callwhisper.cli.common import EXIT_INVALID, read_configuration, summary
from callwhisper.cli.whisper import echo_findings, has_errors, lint_file


@click.command("check")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
def command(file: Path) -> None:
    """Validate FILE and report every problem with its line and location.

    Every whisper is linted too (see ``callwhisper whisper lint``); its
    findings go to stderr, and only errors fail the check. Exits 0 when the
    file is valid, 1 otherwise.
    """
    configuration = read_configuration(file)
    findings = lint_file(configuration, file, audio=True)
    echo_findings(file, findings)
    if has_errors(findings):
        raise SystemExit(EXIT_INVALID)
    click.echo(f"{file}: OK ({summary(configuration)})")
