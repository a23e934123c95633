"""``callwhisper route FILE --number N --caller C``: a routing decision, as a dry run.

Nothing is written: the counters are empty, or read from the store with
``--database-url``; no cap slot is reserved and no rotation is saved.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import click

from callwhisper.cli.common import fail, parse_tags, read_configuration, tag_option, with_store
from callwhisper.domain import CallAttributes, Configuration, RoutingCounters
from callwhisper.routing import RoutingDecision, counter_scope, decide, enrich
from callwhisper.store import Store


def parse_at(text: str | None, timezone: str) -> datetime:
    """``--at`` as an aware datetime; a time without offset is in ``timezone``; none is now."""
    if text is None:
        return datetime.now(UTC)
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not an ISO 8601 time such as 2025-06-02T10:00:00-07:00",
            param_hint="--at",
        ) from None
    return at if at.utcoffset() is not None else at.replace(tzinfo=ZoneInfo(timezone))


def describe_call(attributes: CallAttributes, configuration: Configuration) -> list[str]:
    """Header lines: the number, its campaign and publisher, and what is known of the caller."""
    campaign = configuration.campaigns_by_id[attributes.campaign_id]
    line = f"number {attributes.dialed}: campaign {campaign.id}"
    if campaign.name:
        line += f" ({campaign.name})"
    if attributes.publisher_id:
        line += f", publisher {attributes.publisher_id}"
    known = [
        f"{label} {value}"
        for label, value in (
            ("country", attributes.country),
            ("state", attributes.state),
            ("area code", attributes.area_code),
            ("place", attributes.city),
        )
        if value
    ]
    caller = f"caller {attributes.caller}: {', '.join(known) or 'location unknown'}"
    tags = ", ".join(f"{name}={value}" for name, value in sorted(attributes.tags.items()))
    return [line, caller] + ([f"tags: {tags}"] if tags else [])


def decision_document(
    attributes: CallAttributes, at: datetime, decision: RoutingDecision, counters_from: str
) -> dict[str, Any]:
    """The JSON document ``route --json`` prints."""
    return {
        "dry_run": True,
        "counters": counters_from,
        "at": at.isoformat(),
        "call": {
            "dialed": attributes.dialed,
            "caller": attributes.caller,
            "campaign_id": attributes.campaign_id,
            "publisher_id": attributes.publisher_id,
            "country": attributes.country,
            "state": attributes.state,
            "area_code": attributes.area_code,
            "city": attributes.city,
            "tags": dict(attributes.tags),
        },
        **decision.to_dict(),
    }


@click.command("route")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--number", "-n", required=True, help="The tracking number dialed.")
@click.option("--caller", "-c", required=True, help="The caller's number, or 'anonymous'.")
@click.option(
    "--at",
    default=None,
    metavar="ISO8601",
    help="When the call arrives, e.g. 2025-06-02T10:00:00-07:00 (default: now); "
    "a time without offset is in the campaign's time zone.",
)
@tag_option
@click.option("--json", "as_json", is_flag=True, help="Print a JSON document.")
@click.option(
    "--database-url",
    default=None,
    metavar="URL",
    help="Read cap usage, calls in progress, caller history and rotations from this "
    "store (read only). Without it every counter is empty.",
)
def command(
    file: Path,
    number: str,
    caller: str,
    at: str | None,
    tags: tuple[str, ...],
    as_json: bool,
    database_url: str | None,
) -> None:
    """Show how a call to NUMBER from CALLER would be routed by FILE, changing nothing.

    Prints the candidates in the order they would be offered the call, and
    every skipped buyer with its reason.
    """
    configuration = read_configuration(file)
    tracking = configuration.lookup_number(number)
    if tracking is None:
        fail([f"error: {number} is not a tracking number in {file}"])
    campaign = configuration.campaigns_by_id[tracking.campaign]
    now = parse_at(at, campaign.timezone)
    attributes = enrich(
        CallAttributes(
            campaign_id=campaign.id,
            dialed=tracking.number,
            caller=caller,
            publisher_id=tracking.publisher,
            tags={**tracking.tags, **parse_tags(tags)},
        )
    )
    counters = RoutingCounters()
    if database_url is not None:
        keys, owners = counter_scope(configuration, attributes, now)

        async def read(store: Store) -> RoutingCounters:
            return await store.counters.load_counters(
                campaign.id, keys=keys, owners=owners, caller=caller, now=now
            )

        counters = with_store(database_url, read, migrate=False)
    decision = decide(configuration, attributes, counters, now)
    counters_from = "store" if database_url is not None else "empty"
    if as_json:
        document = decision_document(attributes, now, decision, counters_from)
        click.echo(json.dumps(document, indent=2))
        return
    for line in describe_call(attributes, configuration):
        click.echo(line)
    click.echo(f"at {now.isoformat()} (dry run, counters {counters_from})")
    click.echo(decision.explain())
