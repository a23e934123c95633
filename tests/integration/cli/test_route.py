"""``callwhisper route``: candidates in order and every skipped buyer with its reason."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from pathlib import Path

import pytest

from callwhisper.config import load_configuration_file
from callwhisper.domain import CallAttributes, RoutingCounters
from callwhisper.routing import decide
from callwhisper.store import create_store
from tests.integration.cli.helpers import EXAMPLE, run, sqlite_url

WEST = ("route", str(EXAMPLE), "--number", "+18005550100")


def test_insured_california_caller_on_a_monday_morning() -> None:
    result = run(
        *WEST,
        "--caller",
        "+14155550123",
        "--at",
        "2025-06-02T10:00:00-07:00",
        "--tag",
        "insured=yes",
    )
    assert result.exit_code == 0
    assert result.stdout.splitlines() == [
        "number +18005550100: campaign auto-west (Auto insurance - West), publisher searchads",
        "caller +14155550123: country US, state CA, area code 415, place San Francisco, CA",
        "tags: insured=yes, source=google",
        "at 2025-06-02T10:00:00-07:00 (dry run, counters empty)",
        "candidate 1: summit/queue (Summit Direct) -> sip:queue@summit.example.com, "
        "tier 1 sequential, ring 20 s, pays 55.00 after 120 s",
        "candidate 2: pacific/floor (Pacific Coverage Group) -> "
        "sip:sales@pbx.pacific-coverage.example, tier 1 sequential, ring 30 s, "
        "pays 42.00 after 90 s",
        "candidate 3: pacific/overflow (Pacific Coverage Group) -> +13105550142, "
        "tier 1 sequential, ring 30 s, pays 42.00 after 90 s",
        "candidate 4: backstop/main (Backstop Leads) -> sip:inbound@backstop-leads.example.org, "
        "tier 2 sequential, ring 30 s, pays 15.00 after 60 s",
    ]


def test_new_york_caller_on_saturday_is_skipped_with_reasons() -> None:
    result = run(*WEST, "--caller", "+12125550123", "--at", "2025-06-07T10:00:00-07:00")
    assert result.exit_code == 0
    assert result.stdout.splitlines()[-3:] == [
        "candidate 1: backstop/main (Backstop Leads) -> sip:inbound@backstop-leads.example.org, "
        "tier 2 sequential, ring 30 s, pays 15.00 after 60 s",
        "skipped summit/* (tier 1): state NY excluded",
        "skipped pacific/* (tier 1): closed until Mon 08:00 America/Los_Angeles",
    ]


def test_time_without_offset_is_in_the_campaign_time_zone() -> None:
    result = run(
        "route", EXAMPLE, "-n", "+18005550122", "-c", "+12145550123", "--at", "2025-06-02T23:30"
    )
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert "at 2025-06-02T23:30:00-05:00 (dry run, counters empty)" in lines
    assert lines[-3:] == [
        "candidate 1: lonestar/dallas (Lone Star Auto) -> +12145550190, "
        "tier 1 sequential, ring 25 s, pays 38.00 after 90 s",
        "candidate 2: backstop/main (Backstop Leads) -> sip:inbound@backstop-leads.example.org, "
        "tier 2 sequential, ring 25 s, pays 12.00 after 60 s",
        "skipped summit/* (tier 1): tag rule insured == yes failed (insured missing)",
    ]


def test_anonymous_caller_is_refused_by_the_west_campaign() -> None:
    result = run(*WEST, "--caller", "anonymous", "--at", "2025-06-02T10:00:00-07:00")
    assert result.exit_code == 0
    assert result.stdout.splitlines()[-1] == "call refused: anonymous caller blocked"


def test_json_document() -> None:
    result = run(*WEST, "--caller", "+12125550123", "--at", "2025-06-07T10:00:00-07:00", "--json")
    assert result.exit_code == 0
    document = json.loads(result.stdout)
    assert document["dry_run"] is True
    assert document["counters"] == "empty"
    assert document["call"]["state"] == "NY"
    assert [c["buyer_id"] for c in document["candidates"]] == ["backstop"]
    assert [(s["buyer_id"], s["reason"]) for s in document["skipped"]] == [
        ("summit", "state NY excluded"),
        ("pacific", "closed until Mon 08:00 America/Los_Angeles"),
    ]


def test_unknown_number_exits_1() -> None:
    result = run("route", EXAMPLE, "--number", "+19995550100", "--caller", "+14155550123")
    assert result.exit_code == 1
    assert result.stderr == f"error: +19995550100 is not a tracking number in {EXAMPLE}\n"


def test_malformed_tag_and_time_are_usage_errors() -> None:
    tag = run(*WEST, "--caller", "+14155550123", "--tag", "insured")
    assert tag.exit_code == 2
    assert "Invalid value for --tag: 'insured' is not NAME=VALUE" in tag.stderr
    at = run(*WEST, "--caller", "+14155550123", "--at", "monday")
    assert at.exit_code == 2
    assert "Invalid value for --at: 'monday' is not an ISO 8601 time" in at.stderr


@pytest.mark.integration
def test_counters_are_read_from_the_store_and_nothing_is_written(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "cw.db")
    run("apply", EXAMPLE, "--database-url", url)
    args = (*WEST, "--caller", "+14155550123", "--at", "2025-06-02T10:00:00-07:00")
    empty = run(*args)
    stored = run(*args, "--database-url", url)
    assert stored.exit_code == 0
    assert stored.stdout == empty.stdout.replace("counters empty", "counters store")
    again = run("apply", EXAMPLE, "--database-url", url)
    assert again.stdout.endswith("no change\n")


async def _fill_pacific(url: str, at: datetime) -> None:
    """Five calls in progress at Pacific: its concurrency limit."""
    configuration = load_configuration_file(EXAMPLE)
    attributes = CallAttributes("auto-west", "+18005550100", "+14155550123", "searchads")
    decision = decide(configuration, attributes, RoutingCounters(), at)
    floor = next(c for c in decision.candidates if c.target_id == "floor")
    store = create_store(url)
    try:
        for number in range(5):
            assert await store.ledger.reserve(floor.reservation(f"held-{number}", at)) is None
    finally:
        await store.close()


@pytest.mark.integration
def test_calls_in_progress_in_the_store_skip_a_full_buyer(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "cw.db")
    run("apply", EXAMPLE, "--database-url", url)
    at = datetime.fromisoformat("2025-06-02T10:00:00-07:00")
    asyncio.run(_fill_pacific(url, at))
    args = (*WEST, "--caller", "+14155550123", "--at", at.isoformat(), "--database-url", url)
    result = run(*args)
    assert result.exit_code == 0
    assert result.stdout.splitlines()[-3:] == [
        "candidate 1: backstop/main (Backstop Leads) -> sip:inbound@backstop-leads.example.org, "
        "tier 2 sequential, ring 30 s, pays 15.00 after 60 s",
        "skipped summit/* (tier 1): tag rule insured == yes failed (insured missing)",
        "skipped pacific/* (tier 1): concurrency 5/5",
    ]
    assert run(*args).stdout == result.stdout
