"""The whisper linter: every rule, its exact message and its location."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import soundfile

from callwhisper.audio import available_engines
from callwhisper.domain import Configuration, WhisperConfig
from callwhisper.errors import AudioError
from callwhisper.whisper import (
    CachedSpeaker,
    LintContext,
    LintFinding,
    builtin_variables,
    lint_configuration,
    lint_whisper,
    parse_template,
)
from tests.unit.audio.helpers import FakeEngine, tone

FAKE: dict[str, Any] = {"engine": "fake"}
KNOWN = ", ".join(sorted({*builtin_variables(), "drivers", "insured", "source"}))


def configuration(
    campaign_whisper: dict[str, Any] | None = None,
    buyer_whisper: dict[str, Any] | None = None,
    target_whisper: dict[str, Any] | None = None,
) -> Configuration:
    """Two campaigns sold to one buyer with two targets; whispers as given."""
    target: dict[str, Any] = {"id": "main", "destination": "sip:main@acme.example"}
    if target_whisper is not None:
        target["whisper"] = target_whisper
    buyer: dict[str, Any] = {
        "id": "acme",
        "name": "Acme",
        "conversion": {"revenue": 40},
        "targets": [target, {"id": "spare", "destination": "sip:spare@acme.example"}],
    }
    if buyer_whisper is not None:
        buyer["whisper"] = buyer_whisper
    auto: dict[str, Any] = {
        "id": "auto",
        "name": "Auto West",
        "lead_type": "Auto insurance",
        "routing": {"tiers": [{"buyers": [{"buyer": "acme"}]}]},
        "ivr": {
            "start": "q",
            "nodes": [
                {
                    "id": "q",
                    "say": "How many drivers?",
                    "tag": "drivers",
                    "branches": {"1": {"action": "route", "set_tags": {"insured": "yes"}}},
                }
            ],
        },
    }
    if campaign_whisper is not None:
        auto["whisper"] = campaign_whisper
    home = {
        "id": "home",
        "lead_type": "Home insurance",
        "routing": {"tiers": [{"buyers": [{"buyer": "acme", "target": "spare"}]}]},
        "whisper": {"text": "{lead_type} call. Press 1 to accept.", "voice": FAKE},
    }
    return Configuration.model_validate(
        {
            "buyers": [buyer],
            "campaigns": [auto, home],
            "numbers": [{"number": "+18005550100", "campaign": "auto", "tags": {"source": "ads"}}],
        }
    )


def lint_text(text: str, speaker: CachedSpeaker | None = None, **fields: Any) -> list[LintFinding]:
    """Lint a text whisper heard on the ``auto`` campaign."""
    config = configuration()
    whisper = WhisperConfig.model_validate({"text": text, "voice": FAKE, **fields})
    context = LintContext(config, ("campaigns", 0, "whisper"), config.campaigns[0], speaker=speaker)
    return lint_whisper(whisper, context)


def test_a_good_whisper_has_no_finding(speaker: CachedSpeaker) -> None:
    assert lint_text("{lead_type} from {caller_state}. Press 1.", speaker) == []


def test_template_syntax_errors() -> None:
    assert parse_template("{a} {{x}} {b {} c}").problems == (
        "unmatched '{' at character 11 (write '{{' for a brace)",
        "empty variable '{}' at character 14",
        "unmatched '}' at character 18 (write '}}' for a brace)",
    )
    findings = lint_text("Auto insurance {caller_state. Press 1.")
    assert findings == [
        LintFinding(
            "error",
            ("campaigns", 0, "whisper"),
            "template-syntax",
            "template: unmatched '{' at character 16 (write '{{' for a brace)",
        )
    ]


def test_unknown_variable_lists_the_known_ones() -> None:
    findings = lint_text("Auto insurance, {caler_state}. Press 1.")
    assert [(f.severity, f.rule, f.message) for f in findings] == [
        (
            "error",
            "unknown-variable",
            f"unknown variable {{caler_state}} (known: {KNOWN}; "
            "give a tag the traffic source passes a value in defaults)",
        )
    ]


def test_tags_ivr_answers_and_defaults_are_known() -> None:
    text = "Auto insurance, {drivers} drivers, {insured}, {source}, {age}. Press 1."
    assert lint_text(text, defaults={"age": "unknown age"}) == []


def test_too_long_warns_with_the_measured_duration(
    speaker: CachedSpeaker, fake_engine: FakeEngine
) -> None:
    """The fake engine speaks half a second per word: eight words last 4 s."""
    findings = lint_text(
        "{lead_type} call from {caller_state} today. Press 1.", speaker, max_seconds=3.5
    )
    spoken = "Auto insurance call from California today. Press 1."
    assert [str(f) for f in findings] == [
        "warning: campaigns[0].whisper: lasts 4.00 s for a sample call, "
        f"over max_seconds (3.5 s): {spoken!r}"
    ]
    assert [text for text, _ in fake_engine.calls] == [spoken]


def test_within_max_seconds_passes(speaker: CachedSpeaker) -> None:
    assert lint_text("{lead_type} call from {caller_state} today. Press 1.", speaker) == []


def test_without_a_speaker_the_duration_is_not_measured(fake_engine: FakeEngine) -> None:
    assert lint_text("Auto insurance " + "word " * 20 + "press 1.") == []
    assert fake_engine.calls == []


def test_a_speech_failure_is_a_note(speaker: CachedSpeaker, fake_engine: FakeEngine) -> None:
    def broken(text: str, options: object) -> None:
        raise AudioError("fake: no voice")

    fake_engine.synthesize = broken  # type: ignore[method-assign,assignment]
    assert [
        (f.severity, f.rule, f.message) for f in lint_text("Auto insurance. Press 1.", speaker)
    ] == [("info", "duration-skipped", "duration not measured: fake: no voice")]


def test_unknown_engine() -> None:
    findings = lint_text("Auto insurance. Press 1.", voice={"engine": "nope"})
    assert [(f.severity, f.rule, f.message) for f in findings] == [
        (
            "error",
            "unknown-engine",
            f"voice.engine: unknown TTS engine 'nope' (known: {', '.join(available_engines())})",
        )
    ]


def test_empty_rendering_warns() -> None:
    assert [(f.rule, f.message) for f in lint_text("{drivers}", accept_mode="auto")] == [
        ("empty", "renders to no words for a sample call: give defaults"),
        (
            "no-source",
            "does not name the source: say 'Auto West' or 'Auto insurance', "
            "or use {campaign} or {lead_type}",
        ),
    ]


def test_source_by_name_lead_type_or_variable() -> None:
    assert lint_text("auto west lead. Press 1.") == []
    assert lint_text("AUTO INSURANCE lead. Press 1.") == []
    assert lint_text("{campaign}. Press 1.") == []
    findings = lint_text("New lead. Press 1.")
    assert [(f.severity, f.rule) for f in findings] == [("warning", "no-source")]


def test_accept_key_must_be_said_in_press_key_mode() -> None:
    assert lint_text("Auto insurance, 1 to accept.") == []
    assert lint_text("Auto insurance. Press one.") == []
    assert lint_text("Auto insurance. Press star to take it.", accept_key="*") == []
    assert lint_text("Auto insurance. Press 10 for help.", reject_key=None) == [
        LintFinding(
            "warning",
            ("campaigns", 0, "whisper"),
            "no-accept-key",
            "does not tell the buyer which key accepts: say 'press 1 to accept' "
            "(accept_mode press_key)",
        )
    ]
    assert lint_text("Auto insurance. Stay on the line.", accept_mode="any_key") == []
    assert lint_text("Auto insurance. Connecting.", accept_mode="auto") == []


def test_reject_key_set_in_auto_mode_is_a_note() -> None:
    findings = lint_text("Auto insurance.", accept_mode="auto", reject_key="9")
    assert [(f.severity, f.rule, f.message) for f in findings] == [
        (
            "info",
            "ignored-reject-key",
            "reject_key '9' has no effect: keys are ignored in auto mode",
        )
    ]


def test_audio_whisper_missing_file(tmp_path: Path) -> None:
    config = configuration()
    whisper = WhisperConfig(audio="missing.wav")
    findings = lint_whisper(whisper, LintContext(config, base_dir=tmp_path))
    assert [(f.severity, f.rule, f.message) for f in findings] == [
        (
            "error",
            "audio-unreadable",
            f"{tmp_path / 'missing.wav'}: cannot read the file: No such file or directory",
        )
    ]


def test_audio_whisper_too_long(tmp_path: Path) -> None:
    soundfile.write(tmp_path / "long.wav", tone(440, 6.0, 8000), 8000)
    soundfile.write(tmp_path / "short.wav", tone(440, 2.0, 8000), 8000)
    config = configuration()
    context = LintContext(config, base_dir=tmp_path)
    assert lint_whisper(WhisperConfig(audio="short.wav"), context) == []
    findings = lint_whisper(WhisperConfig(audio="long.wav"), context)
    assert [(f.severity, f.rule, f.message) for f in findings] == [
        ("warning", "too-long", f"{tmp_path / 'long.wav'} lasts 6.00 s, over max_seconds (5 s)")
    ]


def test_configuration_locations_and_campaigns() -> None:
    """Overrides are linted on the campaigns that route to them; partial findings say where."""
    config = configuration(
        campaign_whisper={"text": "{lead_type}. Press 1.", "voice": FAKE},
        buyer_whisper={"text": "{lead_type}, {drivers} drivers. Press 2.", "voice": FAKE},
        target_whisper={"text": "Lead. Press 1.", "voice": FAKE},
    )
    assert [str(f) for f in lint_configuration(config)] == [
        "error: buyers[0].whisper: on campaign home: unknown variable {drivers} (known: "
        f"{', '.join(sorted(builtin_variables()))}; "
        "give a tag the traffic source passes a value in defaults)",
        "warning: buyers[0].whisper: does not tell the buyer which key accepts: "
        "say 'press 1 to accept' (accept_mode press_key)",
        "warning: buyers[0].targets[0].whisper: does not name the source: "
        "say 'Auto West' or 'Auto insurance', or use {campaign} or {lead_type}",
    ]


def test_an_unrouted_override_is_checked_without_a_campaign() -> None:
    config = configuration(target_whisper={"text": "{nope}", "voice": FAKE, "accept_mode": "auto"})
    config = config.model_copy(update={"campaigns": []})
    assert [(f.where, f.rule) for f in lint_configuration(config)] == [
        ("buyers[0].targets[0].whisper", "unknown-variable"),
        ("buyers[0].targets[0].whisper", "empty"),
    ]
