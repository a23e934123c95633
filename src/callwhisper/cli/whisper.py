"""``callwhisper whisper lint|preview``: check whispers, and hear one as a buyer would."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click
import soundfile

from callwhisper.audio import SAMPLE_RATE, TtsCache
from callwhisper.cli.common import (
    EXIT_INVALID,
    database_option,
    fail,
    parse_tags,
    read_configuration,
    stored_configuration,
    tag_option,
)
from callwhisper.domain.configuration import Configuration
from callwhisper.errors import AudioError, ConfigError
from callwhisper.whisper import (
    SAMPLE_CALLER,
    CachedSpeaker,
    LintFinding,
    lint_configuration,
    render_whisper,
    sample_attributes,
    sample_variables,
)


@contextmanager
def speaker() -> Iterator[CachedSpeaker]:
    """A speaker whose cache lives as long as the command: nothing is left on disk."""
    with tempfile.TemporaryDirectory(prefix="callwhisper-speech-") as directory:
        yield CachedSpeaker(TtsCache(directory))


def lint_file(configuration: Configuration, file: Path, *, audio: bool) -> list[LintFinding]:
    """The findings of every whisper of ``configuration`` read from ``file``.

    Text whispers are rendered to measure them only with ``audio``.
    """
    if not audio:
        return lint_configuration(configuration, base_dir=file.parent)
    with speaker() as voice:
        return lint_configuration(configuration, speaker=voice, base_dir=file.parent)


def echo_findings(file: Path, findings: list[LintFinding]) -> None:
    """Print each finding on stderr as ``FILE: severity: location: message``."""
    for finding in findings:
        click.echo(f"{file}: {finding}", err=True)


def has_errors(findings: list[LintFinding]) -> bool:
    """Whether any finding is an error (warnings and notes do not fail a check)."""
    return any(finding.severity == "error" for finding in findings)


@click.group("whisper")
def command() -> None:
    """Check whispers, and render what a buyer would hear."""


@command.command("lint")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--no-audio", is_flag=True, help="Do not render speech: skip the duration of text whispers."
)
def lint(file: Path, no_audio: bool) -> None:
    """Check every whisper of FILE: variables, source, accept key and duration.

    Findings go to stderr. Exits 1 when there is an error, 0 otherwise
    (warnings included).
    """
    configuration = read_configuration(file)
    findings = lint_file(configuration, file, audio=not no_audio)
    echo_findings(file, findings)
    if no_audio:
        click.echo(f"{file}: note: durations of text whispers not measured (--no-audio)", err=True)
    counts = {
        severity: sum(f.severity == severity for f in findings) for severity in ("error", "warning")
    }
    click.echo(f"{file}: {counts['error']} errors, {counts['warning']} warnings")
    if has_errors(findings):
        raise SystemExit(EXIT_INVALID)


@command.command("preview")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False), required=False)
@database_option
@click.option("--campaign", "campaign_id", required=True, help="Campaign id.")
@click.option("--buyer", "buyer_id", default=None, help="Buyer id (default: none).")
@click.option("--target", "target_id", default=None, help="Target id (default: the first).")
@click.option(
    "--caller",
    default=SAMPLE_CALLER,
    show_default=True,
    help="The caller's number; its geography fills {caller_state} and the like.",
)
@tag_option
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path, dir_okay=False, writable=True),
    default=None,
    help="Write the whisper as an 8 kHz mono WAV file.",
)
def preview(
    file: Path | None,
    database_url: str | None,
    campaign_id: str,
    buyer_id: str | None,
    target_id: str | None,
    caller: str,
    tags: tuple[str, ...],
    output: Path | None,
) -> None:
    """Render the whisper a buyer hears on a campaign, for a sample call.

    The configuration is FILE, or the one applied to the store. Prints the
    text and the duration of one play. Exits 1 when an id is unknown or the
    whisper cannot be rendered.
    """
    if file is not None:
        configuration = read_configuration(file)
    else:
        configuration = stored_configuration(database_url)
    campaign = configuration.campaigns_by_id.get(campaign_id)
    if campaign is None:
        fail([f"error: no campaign {campaign_id!r}"])
    buyer = configuration.buyers_by_id.get(buyer_id) if buyer_id is not None else None
    if buyer_id is not None and buyer is None:
        fail([f"error: no buyer {buyer_id!r}"])
    target = None
    if target_id is not None:
        if buyer is None:
            fail(["error: --target needs --buyer"])
        target = next((t for t in buyer.targets if t.id == target_id), None)
        if target is None:
            fail([f"error: buyer {buyer.id!r} has no target {target_id!r}"])
    elif buyer is not None:
        target = buyer.targets[0]
    attributes = sample_attributes(configuration, campaign, caller, parse_tags(tags))
    variables = sample_variables(configuration, campaign, attributes, buyer, target)
    whisper = campaign.whisper_for(buyer, target)
    base_dir = file.parent if file is not None else Path(os.curdir)
    try:
        with speaker() as voice:
            rendered = render_whisper(whisper, variables, voice, base_dir)
    except (AudioError, ConfigError) as error:
        fail([f"error: {error}"])
    if rendered.text is not None:
        click.echo(f"text: {rendered.text}")
    else:
        click.echo(f"audio: {whisper.audio}")
    click.echo(f"duration: {rendered.duration:.2f} s")
    if output is not None:
        soundfile.write(output, rendered.audio.samples, SAMPLE_RATE, subtype="PCM_16")
        click.echo(f"wrote {output}")
