"""The whisper linter: what a buyer would hear, checked before any call is sold.

Rules (call-flow 7 and 8), each finding naming its rule:

- ``template-syntax`` (error): a lone ``{`` or ``}``, or an empty ``{}``;
- ``unknown-variable`` (error): a ``{name}`` the call never has, i.e. neither
  one of the flow's variables, nor a tag of the campaign's tracking numbers or
  IVR, nor a name given in the whisper's ``defaults``;
- ``unknown-engine`` (error): the voice names no registered TTS engine;
- ``audio-unreadable`` (error): the recording is missing or not playable audio;
- ``too-long`` (warning): one play lasts more than ``max_seconds`` for a
  sample call (text whispers are rendered by the TTS engine);
- ``empty`` (warning): the text renders to nothing for the sample call;
- ``no-source`` (warning): the text names neither the campaign nor its lead
  type (nor uses ``{campaign}`` or ``{lead_type}``);
- ``no-accept-key`` (warning): in ``press_key`` mode the text does not say
  which key accepts ("press 1", "1 to accept");
- ``ignored-reject-key`` (info): a reject key set in ``auto`` mode, where keys
  are ignored;
- ``duration-skipped`` (info): the text could not be rendered to measure it
  (no TTS program installed, for example).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final, Literal

from callwhisper.audio import available_engines, import_recording
from callwhisper.domain.buyer import Buyer, Target
from callwhisper.domain.campaign import Campaign
from callwhisper.domain.configuration import Configuration, Location, format_location
from callwhisper.domain.whisper import WhisperConfig
from callwhisper.errors import AudioError
from callwhisper.whisper.render import Speaker, audio_path, whisper_text
from callwhisper.whisper.sample import (
    SAMPLE_CALLER,
    routed_targets,
    sample_attributes,
    sample_variables,
)
from callwhisper.whisper.variables import builtin_variables

Severity = Literal["error", "warning", "info"]
_Add = Callable[[Severity, str, str], None]
_RANK: Final[dict[Severity, int]] = {"error": 0, "warning": 1, "info": 2}

_TOKEN: Final = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")
_KEY_WORDS: Final = {
    "0": "zero", "1": "one", "2": "two", "3": "three", "4": "four",
    "5": "five", "6": "six", "7": "seven", "8": "eight", "9": "nine", "*": "star",
}  # fmt: skip
_PRESS: Final = r"\b(?:press|dial|push|hit|enter|select)\s+(?:the\s+)?(?:key\s+)?"
_TO_ACCEPT: Final = r"\s+to\s+(?:accept|take|answer|connect|talk|speak)\b"


@dataclass(frozen=True, slots=True)
class LintFinding:
    """One problem of one whisper: how bad, where, which rule and what to do."""

    severity: Severity
    location: Location
    """Where the whisper is in the configuration, e.g. ``("buyers", 1, "whisper")``."""
    rule: str
    message: str

    @property
    def where(self) -> str:
        """The location as text: ``buyers[1].targets[0].whisper``."""
        return format_location(self.location)

    def __str__(self) -> str:
        """``warning: campaigns[0].whisper: message``."""
        return f"{self.severity}: {self.where}: {self.message}"


@dataclass(frozen=True, slots=True)
class LintContext:
    """What a whisper is checked against.

    ``campaign`` is the campaign on which the whisper is heard (None when no
    campaign routes to it); ``buyer`` and ``target`` are the sample call's
    destination. Text whispers are measured only with a ``speaker``;
    relative recording paths are taken from ``base_dir``.
    """

    configuration: Configuration
    location: Location = ("whisper",)
    campaign: Campaign | None = None
    buyer: Buyer | None = None
    target: Target | None = None
    speaker: Speaker | None = None
    base_dir: Path | None = None
    caller: str = SAMPLE_CALLER


@dataclass(frozen=True, slots=True)
class TemplateFields:
    """The variables a template uses, and what is malformed in it."""

    names: tuple[str, ...]
    problems: tuple[str, ...]


def parse_template(template: str) -> TemplateFields:
    """The ``{variables}`` of ``template`` and its syntax problems, as the flow reads it."""
    names: list[str] = []
    problems: list[str] = []
    for match in _TOKEN.finditer(template):
        token = match.group(0)
        at = match.start() + 1
        if token in ("{{", "}}"):
            continue
        if token in ("{", "}"):
            problems.append(
                f"unmatched {token!r} at character {at} (write {token * 2!r} for a brace)"
            )
        elif not match.group(1).strip():
            problems.append(f"empty variable {token!r} at character {at}")
        elif match.group(1).strip() not in names:
            names.append(match.group(1).strip())
    return TemplateFields(tuple(names), tuple(problems))


def known_variables(
    configuration: Configuration, campaign: Campaign | None, whisper: WhisperConfig
) -> frozenset[str]:
    """The variables a call on ``campaign`` may have: the flow's, tags, IVR answers, defaults."""
    names = set(builtin_variables()) | set(whisper.defaults)
    if campaign is not None:
        for number in configuration.numbers:
            if number.campaign == campaign.id:
                names.update(number.tags)
        if campaign.ivr is not None:
            for node in campaign.ivr.nodes:
                if node.tag:
                    names.add(node.tag)
                for branch in [*node.branches.values(), *([node.default] if node.default else [])]:
                    names.update(branch.set_tags)
    return frozenset(names)


def lint_whisper(whisper: WhisperConfig, context: LintContext) -> list[LintFinding]:
    """Every finding of ``whisper`` heard in ``context``, in rule order."""
    findings: list[LintFinding] = []

    def add(severity: Severity, rule: str, message: str) -> None:
        findings.append(LintFinding(severity, context.location, rule, message))

    explicit_reject = "reject_key" in whisper.model_fields_set and whisper.reject_key is not None
    if whisper.accept_mode == "auto" and explicit_reject:
        add(
            "info",
            "ignored-reject-key",
            f"reject_key {whisper.reject_key!r} has no effect: keys are ignored in auto mode",
        )
    if whisper.text is None:
        _lint_audio(whisper, context, add)
    else:
        _lint_text(whisper, whisper.text, context, add)
    return findings


def _lint_audio(whisper: WhisperConfig, context: LintContext, add: _Add) -> None:
    path = audio_path(whisper, context.base_dir)
    try:
        audio = import_recording(path)
    except AudioError as error:
        add("error", "audio-unreadable", str(error))
        return
    if audio.duration > whisper.max_seconds:
        add(
            "warning",
            "too-long",
            f"{path} lasts {audio.duration:.2f} s, over max_seconds ({whisper.max_seconds:g} s)",
        )


def _lint_text(whisper: WhisperConfig, text: str, context: LintContext, add: _Add) -> None:
    fields = parse_template(text)
    for problem in fields.problems:
        add("error", "template-syntax", f"template: {problem}")
    known = known_variables(context.configuration, context.campaign, whisper)
    for name in fields.names:
        if name not in known:
            add(
                "error",
                "unknown-variable",
                f"unknown variable {{{name}}} (known: {', '.join(sorted(known))}; "
                "give a tag the traffic source passes a value in defaults)",
            )
    engine_known = whisper.voice.engine in available_engines()
    if not engine_known:
        known_engines = ", ".join(available_engines()) or "none"
        add(
            "error",
            "unknown-engine",
            f"voice.engine: unknown TTS engine {whisper.voice.engine!r} (known: {known_engines})",
        )
    _lint_spoken(whisper, context, add, measure=engine_known and not fields.problems)
    if context.campaign is not None and not _names_source(text, fields, context.campaign):
        names = " or ".join(
            repr(name)
            for name in dict.fromkeys([context.campaign.name, context.campaign.lead_type])
            if name
        )
        add(
            "warning",
            "no-source",
            f"does not name the source: say {names}, or use {{campaign}} or {{lead_type}}",
        )
    if whisper.accept_mode == "press_key" and not _says_key(text, whisper.accept_key):
        add(
            "warning",
            "no-accept-key",
            f"does not tell the buyer which key accepts: say 'press {whisper.accept_key} "
            "to accept' (accept_mode press_key)",
        )


def _lint_spoken(whisper: WhisperConfig, context: LintContext, add: _Add, *, measure: bool) -> None:
    buyer, target = context.buyer, context.target
    if buyer is None and context.campaign is not None:
        buyer, target = next(routed_targets(context.configuration, context.campaign), (None, None))
    campaign = context.campaign
    if campaign is None:
        variables: dict[str, str] = {}
    else:
        attributes = sample_attributes(context.configuration, campaign, context.caller)
        variables = sample_variables(context.configuration, campaign, attributes, buyer, target)
    spoken = whisper_text(whisper, variables) or ""
    if not spoken.strip():
        add("warning", "empty", "renders to no words for a sample call: give defaults")
        return
    if not measure or context.speaker is None:
        return
    try:
        audio = context.speaker.speak(spoken, whisper.voice)
    except AudioError as error:
        add("info", "duration-skipped", f"duration not measured: {error}")
        return
    if audio.duration > whisper.max_seconds:
        add(
            "warning",
            "too-long",
            f"lasts {audio.duration:.2f} s for a sample call, over max_seconds "
            f"({whisper.max_seconds:g} s): {spoken!r}",
        )


def _names_source(text: str, fields: TemplateFields, campaign: Campaign) -> bool:
    if {"campaign", "lead_type"} & set(fields.names):
        return True
    lowered = text.lower()
    return any(name and name.lower() in lowered for name in (campaign.name, campaign.lead_type))


def _says_key(text: str, key: str) -> bool:
    forms = "|".join(re.escape(form) for form in (key, _KEY_WORDS.get(key, key)))
    key_pattern = rf"(?:{forms})(?!\w)"
    lowered = text.lower()
    return bool(
        re.search(_PRESS + key_pattern, lowered)
        or re.search(rf"(?<![\w*#])(?:{forms}){_TO_ACCEPT}", lowered)
    )


def lint_configuration(
    configuration: Configuration,
    *,
    speaker: Speaker | None = None,
    base_dir: Path | None = None,
) -> list[LintFinding]:
    """Every finding of every whisper: campaigns', buyers' and targets' overrides.

    A buyer's or target's whisper is checked on each campaign that routes to
    it; a finding that holds on some of them only says on which.
    """
    findings: list[LintFinding] = []
    for location, whisper, contexts in _whispers(configuration):
        base = LintContext(configuration, location, speaker=speaker, base_dir=base_dir)
        if not contexts:
            findings += lint_whisper(whisper, base)
            continue
        per_campaign = [
            (
                campaign.id,
                lint_whisper(whisper, replace(base, campaign=campaign, buyer=buyer, target=target)),
            )
            for campaign, buyer, target in contexts
        ]
        findings += _merge(per_campaign)
    return findings


_Contexts = list[tuple[Campaign, Buyer | None, Target | None]]


def _whispers(configuration: Configuration) -> Iterator[tuple[Location, WhisperConfig, _Contexts]]:
    """Each whisper with its location and the campaigns (and sample targets) it is heard on."""
    routes = {
        campaign.id: list(routed_targets(configuration, campaign))
        for campaign in configuration.campaigns
    }
    for c, campaign in enumerate(configuration.campaigns):
        hearing = [
            (buyer, target)
            for buyer, target in routes[campaign.id]
            if campaign.whisper_for(buyer, target) is campaign.whisper
        ]
        buyer, target = hearing[0] if hearing else (None, None)
        yield ("campaigns", c, "whisper"), campaign.whisper, [(campaign, buyer, target)]
    for b, buyer in enumerate(configuration.buyers):
        if buyer.whisper is not None:
            contexts: _Contexts = []
            for campaign in configuration.campaigns:
                served = [t for routed, t in routes[campaign.id] if routed.id == buyer.id]
                if served:
                    contexts.append((campaign, buyer, served[0]))
            yield ("buyers", b, "whisper"), buyer.whisper, contexts
        for t, target in enumerate(buyer.targets):
            if target.whisper is not None:
                contexts = [
                    (campaign, buyer, target)
                    for campaign in configuration.campaigns
                    if any(
                        routed.id == buyer.id and served.id == target.id
                        for routed, served in routes[campaign.id]
                    )
                ]
                yield ("buyers", b, "targets", t, "whisper"), target.whisper, contexts


def _merge(per_campaign: list[tuple[str, list[LintFinding]]]) -> list[LintFinding]:
    """One list of findings, errors first; those not found on every campaign name the ones
    they hold on."""
    holding: dict[LintFinding, list[str]] = {}
    for campaign_id, findings in per_campaign:
        for finding in findings:
            holding.setdefault(finding, []).append(campaign_id)
    merged = []
    for finding, campaign_ids in holding.items():
        if len(campaign_ids) < len(per_campaign):
            on = ", ".join(campaign_ids)
            finding = replace(finding, message=f"on campaign {on}: {finding.message}")
        merged.append(finding)
    return sorted(merged, key=lambda finding: _RANK[finding.severity])
