"""The demo's own logic: its configuration, its beeps, its script check and its printing."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from callwhisper.audio import import_recording
from callwhisper.cli import main
from callwhisper.cli.demo import (
    CAMPAIGN,
    NUMBER,
    check_script,
    demo_configuration,
    demo_whisper,
    money,
    timeline_entries,
    write_beeps,
)
from callwhisper.config.loader import validate_configuration
from callwhisper.flow import format_timeline
from callwhisper.store import CallRecord
from callwhisper.store.calls import CallEvent

AT = datetime(2025, 6, 2, 17, 0, tzinfo=UTC)
Event = tuple[str, str | None, dict[str, Any]]
SCRIPTED: list[Event] = [
    ("decline", "B1", {"reason": "timeout"}),
    ("accept", "B2", {}),
    ("bridge", "B2", {}),
]


def record(events: Sequence[Event], outcome: str) -> CallRecord:
    return CallRecord(
        id="c1", campaign_id=CAMPAIGN, dialed=NUMBER, caller="+14155550123",
        publisher_id=None, state="ended", outcome=outcome, started_at=AT, answered_at=None,
        ended_at=AT, tags={}, routing=None, revenue=Decimal(0), payout=Decimal(0),
        cost=Decimal(0), converted=False, duplicate=False, recording_path=None,
        events=tuple(
            CallEvent(seq, AT.replace(second=seq), kind, leg, data)
            for seq, (kind, leg, data) in enumerate(events, start=1)
        ),
    )  # fmt: skip


def test_the_demo_configuration_is_valid_and_tries_the_voicemail_box_first() -> None:
    whisper = {"text": "Press 1.", "plays": 1, "wait_seconds": 1.0}
    configuration = validate_configuration(
        demo_configuration("sip:voicemail@127.0.0.1:5071", "sip:acme@127.0.0.1:5072", whisper)
    )
    campaign = configuration.campaigns_by_id[CAMPAIGN]
    tiers = [[entry.buyer for entry in tier.buyers] for tier in campaign.routing.tiers]
    assert tiers == [["voicemail"], ["acme"]]
    assert configuration.lookup_number(NUMBER) is not None
    assert campaign.recording


def test_beeps_make_a_whisper_recording_without_a_speech_engine(tmp_path: Path) -> None:
    path = tmp_path / "beeps.wav"
    write_beeps(path, seconds=2.0)
    assert import_recording(path).duration == pytest.approx(2.0)


def test_without_espeak_ng_the_whisper_is_beeps_with_a_note(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    whisper, note = demo_whisper(tmp_path)
    assert whisper["audio"] == str((tmp_path / "demo-whisper.wav").resolve())
    assert "text" not in whisper
    assert note is not None
    assert "apt-get install espeak-ng" in note


def test_a_call_that_went_as_scripted_has_no_problem() -> None:
    assert check_script(record(SCRIPTED, "converted")) == []
    assert check_script(record(SCRIPTED, "connected")) == []


def test_every_departure_from_the_script_is_named() -> None:
    events: list[Event] = [("decline", "B1", {"reason": "wrong_key"}), ("accept", "B2", {})]
    assert check_script(record(events, "no_buyer")) == [
        "buyer 1 was not declined by whisper timeout (decline: wrong_key)",
        "buyer 2 has no bridge",
        "the call ended no_buyer, not connected",
    ]
    assert check_script(None) == ["the call server stored no call"]


def test_the_stored_timeline_prints_with_the_flows_printer() -> None:
    call = record([("arrived", "A", {"caller": "+1415", "dialed": NUMBER, "campaign": "demo"}),
                   *SCRIPTED, ("unknown_kind", None, {})], "connected")  # fmt: skip
    assert format_timeline(timeline_entries(call)).splitlines() == [
        "+0.000s   A   arrived  +1415 -> +18005550100 (campaign demo)",
        "+1.000s   B1  decline (timeout)",
        "+2.000s   B2  accept",
        "+3.000s   B2  bridge",
    ]


def test_money_shows_at_least_cents() -> None:
    assert [money(Decimal(v)) for v in ("42", "0", "18.5", "0.0031")] == [
        "42.00", "0.00", "18.50", "0.0031",
    ]  # fmt: skip


def test_a_data_directory_that_cannot_be_made_is_a_usage_error(tmp_path: Path) -> None:
    taken = tmp_path / "file"
    taken.write_text("not a directory")
    result = CliRunner().invoke(main, ["demo", "--data-dir", str(taken / "sub")])
    assert result.exit_code == 2
    assert "Invalid value for --data-dir: cannot create" in result.output
