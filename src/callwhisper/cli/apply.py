"""``callwhisper apply FILE``: write a configuration into the store, all or nothing."""

from __future__ import annotations

from pathlib import Path

import click

from callwhisper.cli.common import database_option, read_configuration, with_store
from callwhisper.domain.configuration import Configuration
from callwhisper.store import ApplyReport, Store


def object_count(configuration: Configuration) -> int:
    """How many objects the store keeps for ``configuration`` (targets counted one by one)."""
    return (
        len(configuration.trunks)
        + len(configuration.publishers)
        + len(configuration.buyers)
        + sum(len(buyer.targets) for buyer in configuration.buyers)
        + len(configuration.campaigns)
        + len(configuration.numbers)
    )


def describe_report(report: ApplyReport, configuration: Configuration) -> list[str]:
    """The lines ``apply`` prints: one per changed object, then the counts."""
    lines = [f"  {verb} {label}" for verb, labels in _changes(report) for label in labels]
    if report.settings_changed:
        lines.append("  updated settings (version, telephony)")
    touched = len(report.created) + len(report.updated) + len(report.restored)
    unchanged = object_count(configuration) - touched
    lines.append(
        f"{len(report.created)} created, {len(report.updated)} updated, "
        f"{len(report.archived)} archived, {len(report.restored)} restored, "
        f"{unchanged} unchanged"
    )
    lines.append(
        f"revision {report.revision} ({report.hash[:12]})"
        if report.revision is not None
        else "no change"
    )
    return lines


def _changes(report: ApplyReport) -> list[tuple[str, tuple[str, ...]]]:
    return [
        ("created", report.created),
        ("updated", report.updated),
        ("restored", report.restored),
        ("archived", report.archived),
    ]


@click.command("apply")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@database_option
def command(file: Path, database_url: str | None) -> None:
    """Validate FILE, then write it into the store in one transaction.

    Nothing is written when FILE has a problem. Objects that are not in FILE
    any more are archived: kept for the call history, left out of routing and
    export, and restored when a later file has them again. Applying the same
    file twice changes nothing.

    Exits 0 on success, 1 when FILE is invalid, 2 when the database fails.
    """
    configuration = read_configuration(file)

    async def write(store: Store) -> ApplyReport:
        return await store.config.apply_configuration(configuration)

    report = with_store(database_url, write, migrate=True)
    for line in describe_report(report, configuration):
        click.echo(line)
