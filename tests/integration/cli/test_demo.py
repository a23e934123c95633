"""``callwhisper demo`` end to end: the call server and three of our own phones on loopback.

Each test runs the command in-process and reads what it printed: the stored
timeline, the money, and what each phone heard.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path

import pytest

from callwhisper.audio import import_recording
from callwhisper.cli import demo
from tests.integration.cli.helpers import run

pytestmark = pytest.mark.integration


def timeline_lines(output: str) -> list[str]:
    """The timeline lines, without their time offsets."""
    return [
        re.sub(r"\s+", " ", line.split(maxsplit=1)[1])
        for line in output.splitlines()
        if re.match(r"\+\d+\.\d{3}s", line)
    ]


def test_demo_declines_the_voicemail_box_and_bridges_the_buyer_who_presses_1() -> None:
    result = run("demo")
    assert result.exit_code == 0, result.output
    lines = timeline_lines(result.output)
    assert "B1 decline (timeout)" in lines
    # Answered legs cost even when declined (call-flow 18); amounts depend on durations.
    assert any(re.fullmatch(r"B1 end declined by system cost 0\.00\d\d", line) for line in lines)
    assert lines.index("B2 key 1 (accept)") < lines.index("B2 accept") < lines.index("B2 bridge")
    assert "A caller answered" in lines
    assert "B1 bridge" not in lines
    # The caller stays 3 s: past Acme's 2 s buffer, so the call converts and pays.
    assert "B2 conversion acme revenue 42.00" in lines
    assert any(line.startswith("ended converted revenue 42.00 payout 18.00 ") for line in lines)
    assert "  outcome    converted, bridged to acme (leg B2)" in result.output
    money = re.search(
        r"revenue 42\.00, payout 18\.00, cost (0\.\d+), profit (23\.\d+)", result.output
    )
    assert money is not None, result.output
    assert Decimal(money[1]) + Decimal(money[2]) == Decimal("24.00")
    phones = result.output.split("What the phones saw:")[1]
    assert re.search(r"voicemail +answered, heard [1-9]\.\d s, pressed nothing", phones)
    assert re.search(r"acme +answered, heard \d+\.\d s, pressed 1", phones)
    assert re.search(r"caller +heard \d\.\d s of ringback, answered, then heard [1-9]", phones)


def test_demo_without_espeak_ng_whispers_beeps_and_prints_the_record_as_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No speech engine on PATH: the whisper is a tone, and the call goes the same way."""
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    data = tmp_path / "demo"
    result = run("demo", "--json", "--talk-seconds", "1", "--data-dir", data)
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert document["scripted"] is True
    assert "espeak-ng is not installed" in document["note"]
    call = document["call"]
    # One second on the line is short of the 2 s buffer: connected, not converted.
    assert (call["outcome"], call["revenue"], call["converted"]) == ("connected", "0", False)
    events = [(e["kind"], e["leg_id"], e["data"]) for e in call["events"]]
    assert ("decline", "B1", {"reason": "timeout"}) in events
    assert ("accept", "B2", {}) in events
    assert [leg["outcome"] for leg in call["legs"]] == ["declined", "hangup"]
    assert document["phones"]["acme"]["keys_pressed"] == ["1"]
    assert document["phones"]["voicemail"]["keys_pressed"] == []
    configuration = json.loads((data / "demo.yaml").read_text())
    whisper = configuration["campaigns"][0]["whisper"]
    assert whisper["audio"] == str((data / "demo-whisper.wav").resolve())
    recording = import_recording(call["recording_path"])
    assert 0.5 < recording.duration < 2.0


def test_demo_fails_clearly_when_the_call_does_not_go_as_scripted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Buyer 2 waits for more whisper than it gets, so nobody accepts: exit 1, and why."""
    monkeypatch.setattr(demo, "PRESS_AFTER_SOUND", 60.0)
    result = run("demo")
    assert result.exit_code == 1
    lines = timeline_lines(result.output)
    assert "B2 decline (timeout)" in lines
    assert "error: the demo call did not go as scripted: buyer 2 has no accept" in result.output
    assert "error: the demo call did not go as scripted: buyer 2 has no bridge" in result.output
    assert re.search(
        r"caller +heard \d\.\d s of ringback, not answered \(refused: 4\d\d", result.output
    )
