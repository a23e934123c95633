"""Whispers rendered with real espeak-ng: the linter's duration, preview, and check."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import soundfile

from callwhisper.audio import SAMPLE_RATE, Audio, TtsCache
from callwhisper.config import load_configuration_file
from callwhisper.domain import WhisperConfig
from callwhisper.whisper import CachedSpeaker, LintContext, lint_whisper
from tests.integration.cli.helpers import EXAMPLE, run, sqlite_url

pytestmark = pytest.mark.integration


def lint(text: str, tmp_path: Path) -> list[str]:
    """Findings of a whisper heard on the example's first campaign, measured with espeak-ng."""
    configuration = load_configuration_file(EXAMPLE)
    context = LintContext(
        configuration,
        ("campaigns", 0, "whisper"),
        configuration.campaigns[0],
        speaker=CachedSpeaker(TtsCache(tmp_path)),
    )
    return [str(finding) for finding in lint_whisper(WhisperConfig(text=text), context)]


def test_long_script_warns_with_its_measured_duration(tmp_path: Path) -> None:
    text = (
        "{lead_type} call from {caller_city}. The caller has been insured for years "
        "and wants a quote today. Press 1 to accept, 2 to decline."
    )
    (finding,) = lint(text, tmp_path)
    match = re.fullmatch(
        r"warning: campaigns\[0\]\.whisper: lasts (\d+\.\d\d) s for a sample call, "
        r"over max_seconds \(5 s\): 'Auto insurance call from San Francisco, California\. .*'",
        finding,
    )
    assert match is not None, finding
    assert 7.0 < float(match[1]) < 14.0


def test_short_script_passes(tmp_path: Path) -> None:
    assert lint("{lead_type} from {caller_state}. Press 1.", tmp_path) == []


def test_preview_writes_the_whisper_it_prints(tmp_path: Path) -> None:
    output = tmp_path / "out.wav"
    result = run(
        "whisper", "preview", EXAMPLE, "--campaign", "auto-south", "--buyer", "lonestar",
        "--caller", "+12145550123", "-o", output,
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "text: Lone Star: Auto insurance from Texas. Press 1 to take it."
    printed = re.fullmatch(r"duration: (\d+\.\d\d) s", lines[1])
    assert printed is not None, lines[1]
    duration = float(printed[1])
    assert lines[2] == f"wrote {output}"
    samples, rate = soundfile.read(output, dtype="int16")
    info = soundfile.info(output)
    assert (rate, info.channels, info.subtype) == (SAMPLE_RATE, 1, "PCM_16")
    audio = Audio.from_samples(samples)
    assert audio.duration == pytest.approx(duration, abs=0.005)
    assert 2.0 < audio.duration < 5.0
    assert not audio.levels.silent


def test_preview_uses_tags_and_the_campaign_whisper() -> None:
    result = run("whisper", "preview", EXAMPLE, "--campaign", "auto-west", "--tag", "drivers=2")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines()[0] == (
        "text: Auto insurance from California, 2 drivers. Press 1 to accept."
    )


def test_preview_without_a_file_reads_the_configuration_applied_to_the_store(
    tmp_path: Path,
) -> None:
    url = sqlite_url(tmp_path / "cw.db")
    args = ("whisper", "preview", "--database-url", url, "--campaign", "auto-west")
    missing = run(*args)
    assert missing.exit_code == 2
    assert missing.stderr.endswith("no such file (run callwhisper apply first)\n")
    assert run("apply", EXAMPLE, "--database-url", url).exit_code == 0
    result = run(*args, "--tag", "drivers=2")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines()[0] == (
        "text: Auto insurance from California, 2 drivers. Press 1 to accept."
    )


def test_preview_unknown_campaign() -> None:
    result = run("whisper", "preview", EXAMPLE, "--campaign", "nope")
    assert (result.exit_code, result.stderr) == (1, "error: no campaign 'nope'\n")


def test_check_runs_the_linter_on_the_example(tmp_path: Path) -> None:
    """The example is clean; a long whisper warns (exit 0), an unknown variable fails (exit 1)."""
    assert run("check", EXAMPLE).stderr == ""
    text = EXAMPLE.read_text(encoding="utf-8")
    long_file = tmp_path / "long.yaml"
    long_file.write_text(
        text.replace("Press 1 to take it.", "Press 1 to take the call, or 2 to pass it on."),
        encoding="utf-8",
    )
    result = run("check", long_file)
    assert result.exit_code == 0
    assert re.fullmatch(
        rf"{re.escape(str(long_file))}: warning: buyers\[2\]\.whisper: lasts \d+\.\d\d s .*\n",
        result.stderr,
    )
    bad_file = tmp_path / "bad.yaml"
    bad_file.write_text(text.replace("{drivers} drivers", "{driverz} drivers"), encoding="utf-8")
    result = run("check", bad_file)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith(
        f"{bad_file}: error: campaigns[0].whisper: unknown variable {{driverz}} (known: "
    )


def test_whisper_lint_without_audio(tmp_path: Path) -> None:
    result = run("whisper", "lint", "--no-audio", EXAMPLE)
    assert result.exit_code == 0
    assert result.stdout == f"{EXAMPLE}: 0 errors, 0 warnings\n"
    assert result.stderr == (
        f"{EXAMPLE}: note: durations of text whispers not measured (--no-audio)\n"
    )


def test_whisper_lint_exits_1_on_an_error(tmp_path: Path) -> None:
    bad_file = tmp_path / "bad.yaml"
    text = EXAMPLE.read_text(encoding="utf-8").replace("{drivers} drivers", "{driverz} drivers")
    bad_file.write_text(text, encoding="utf-8")
    result = run("whisper", "lint", "--no-audio", bad_file)
    assert result.exit_code == 1
    assert result.stdout == f"{bad_file}: 1 errors, 0 warnings\n"
    assert result.stderr.startswith(
        f"{bad_file}: error: campaigns[0].whisper: unknown variable {{driverz}} (known: "
    )
