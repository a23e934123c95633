"""``callwhisper demo``: one complete call on loopback, with phones of our own.

The call server runs in this process on 127.0.0.1 with a demo campaign, and
three :class:`~callwhisper.engine.agent.UserAgent` phones play the parts: a
caller dials the tracking number; buyer 1 answers like a voicemail box and
says nothing, so it is declined when its whisper times out; buyer 2 presses
1 while hearing its whisper and is bridged; the caller talks a little, then
hangs up. The call's stored timeline and its money are printed. Exit status
0 when the call went as scripted, 1 (with the reasons) when it did not, 2
when it could not be placed at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Final, cast, get_args

import click
import numpy as np
import soundfile
from sqlalchemy.exc import SQLAlchemyError

from callwhisper.cli.common import configure_logging, fail
from callwhisper.engine import CallwhisperServer, MediaConfig, ServerConfig, TransportConfig
from callwhisper.engine.agent import AnswerScript, PhoneCall, UserAgent
from callwhisper.errors import CallwhisperError
from callwhisper.flow import Entry, format_timeline
from callwhisper.flow.record import EntryKind
from callwhisper.media.tones import ToneSource, ToneSpec
from callwhisper.store import CallRecord
from callwhisper.store.engine import json_default

EXIT_NOT_SCRIPTED: Final = 1
"""Exit status when the call did not go as the script says."""
EXIT_NOT_RUN: Final = 2
"""Exit status when the demo could not run (a port, the data directory, the store)."""

LOOPBACK: Final = "127.0.0.1"
CAMPAIGN: Final = "demo"
NUMBER: Final = "+18005550100"
"""The demo campaign's tracking number."""
CALLER_NUMBER: Final = "+14155550123"
"""The caller's number: area code 415, so the whisper says California."""
DATABASE_FILE: Final = "callwhisper.db"
VOICEMAIL: Final = "voicemail"
ACME: Final = "acme"
PRESS_AFTER_SOUND: Final = 1.0
"""Seconds of whisper buyer 2 hears before pressing 1."""
RING_SECONDS: Final = 0.3
BRIDGED: Final = frozenset({"connected", "converted"})
"""Outcomes of a bridged call: ``converted`` once it lasted the buyer's buffer (2 s here)."""
CALL_DEADLINE: Final = 60.0
"""Seconds after which a demo call that has not ended is given up."""
WHISPER_TEXT: Final = "{lead_type} call from {caller_state}. Press 1 to accept."
WHISPER_SETTINGS: Final[Mapping[str, Any]] = {"plays": 1, "wait_seconds": 1.0, "reject_key": "2"}
"""Short waits, so that the voicemail box is declined within a few seconds."""
NO_ESPEAK: Final = (
    "note: espeak-ng is not installed, so the whisper is a tone instead of speech "
    "(Debian/Ubuntu: apt-get install espeak-ng)"
)

# What the phones send: the caller and buyer 2 a steady tone each, the voicemail box silence.
CALLER_VOICE: Final = ToneSpec((400.0,), (1000, 0), level_dbm0=-20.0)
BUYER_VOICE: Final = ToneSpec((600.0,), (1000, 0), level_dbm0=-20.0)
BEEPS: Final = ToneSpec((880.0,), (250, 250), level_dbm0=-12.0)


def demo_whisper(data_dir: Path) -> tuple[dict[str, Any], str | None]:
    """The buyers' whisper: spoken by espeak-ng, or beeps when it is missing (with a note)."""
    if shutil.which("espeak-ng") is not None:
        return {"text": WHISPER_TEXT, **WHISPER_SETTINGS}, None
    path = data_dir / "demo-whisper.wav"
    write_beeps(path)
    return {"audio": str(path.resolve()), **WHISPER_SETTINGS}, NO_ESPEAK


def write_beeps(path: Path, seconds: float = 2.0) -> None:
    """Write a WAV of short beeps (8 kHz, 16-bit), a whisper that needs no speech engine."""
    source = ToneSource(BEEPS)
    frames = round(seconds / 0.020)
    pcm = b"".join(source.frame(index) for index in range(frames))
    soundfile.write(path, np.frombuffer(pcm, dtype="<i2"), 8000, subtype="PCM_16")


def demo_configuration(
    voicemail_uri: str, acme_uri: str, whisper: Mapping[str, Any]
) -> dict[str, Any]:
    """One campaign whose tiers try the voicemail box, then Acme; billing short enough to see."""
    return {
        "version": 1,
        "telephony": {
            "inbound_per_minute": "0.0085",
            "outbound_per_minute": "0.0110",
            "increment_seconds": 6,
        },
        "publishers": [
            {
                "id": "searchads",
                "name": "Search ads",
                "payout": {"amount": "18.00", "buffer_seconds": 2},
            }
        ],
        "buyers": [
            {
                "id": VOICEMAIL,
                "name": "Voicemail Insurance",
                "conversion": {"revenue": "40.00", "buffer_seconds": 2},
                "targets": [{"id": "main", "destination": voicemail_uri}],
            },
            {
                "id": ACME,
                "name": "Acme Auto Insurance",
                "conversion": {"revenue": "42.00", "buffer_seconds": 2},
                "targets": [{"id": "main", "destination": acme_uri}],
            },
        ],
        "campaigns": [
            {
                "id": CAMPAIGN,
                "name": "Auto insurance demo",
                "lead_type": "Auto insurance",
                "recording": True,
                "ring_timeout_seconds": 10,
                "whisper": dict(whisper),
                "routing": {
                    "tiers": [{"buyers": [{"buyer": VOICEMAIL}]}, {"buyers": [{"buyer": ACME}]}],
                    "hunt_timeout_seconds": 60,
                },
            }
        ],
        "numbers": [{"number": NUMBER, "campaign": CAMPAIGN, "publisher": "searchads"}],
    }


@dataclass(frozen=True, slots=True)
class Cast:
    """Who plays which part, for the header printed before the call."""

    server: tuple[str, int]
    caller: str
    voicemail: str
    acme: str
    note: str | None


@dataclass(slots=True)
class DemoResult:
    """What the demo call left: its stored record, each phone's own view, what went wrong."""

    record: CallRecord | None
    phones: dict[str, PhoneCall | None]
    problems: list[str] = field(default_factory=list)
    note: str | None = None
    """Said when the demo had to do without something (espeak-ng)."""


def check_script(record: CallRecord | None) -> list[str]:
    """Every way the stored call differs from the script; empty when it went as planned."""
    if record is None:
        return ["the call server stored no call"]
    problems: list[str] = []
    declines = {e.leg_id: e.data.get("reason") for e in record.events if e.kind == "decline"}
    if declines.get("B1") != "timeout":
        found = declines.get("B1", "none")
        problems.append(f"buyer 1 was not declined by whisper timeout (decline: {found})")
    seen = {(event.kind, event.leg_id) for event in record.events}
    problems += [
        f"buyer 2 has no {kind}" for kind in ("accept", "bridge") if (kind, "B2") not in seen
    ]
    if record.outcome not in BRIDGED:
        problems.append(f"the call ended {record.outcome or 'without an outcome'}, not connected")
    return problems


async def run_demo(
    data_dir: Path,
    talk_seconds: float,
    announce: Callable[[Cast], None] = lambda cast: None,
) -> DemoResult:
    """Start the server and the phones, place the call, wait for its end and read its record."""
    whisper, note = demo_whisper(data_dir)
    voicemail = UserAgent(VOICEMAIL, host=LOOPBACK, script=AnswerScript(RING_SECONDS))
    acme = UserAgent(
        ACME,
        host=LOOPBACK,
        script=AnswerScript(RING_SECONDS, press="1", press_after_sound=PRESS_AFTER_SOUND),
        voice=BUYER_VOICE,
    )
    caller = UserAgent("caller", host=LOOPBACK, voice=CALLER_VOICE)
    problems: list[str] = []
    async with contextlib.AsyncExitStack() as stack:
        for agent in (voicemail, acme, caller):
            await stack.enter_async_context(agent)
        configuration = data_dir / "demo.yaml"
        document = demo_configuration(voicemail.uri(), acme.uri(), whisper)
        configuration.write_text(json.dumps(document, indent=2))  # JSON is YAML
        server = CallwhisperServer(
            ServerConfig(
                # Never the store of CALLWHISPER_DATABASE_URL: the demo writes its own.
                database_url=f"sqlite:///{data_dir / DATABASE_FILE}",
                data_dir=data_dir,
                configuration_file=configuration,
                sip=TransportConfig(host=LOOPBACK, port=0),
                media=MediaConfig(address=LOOPBACK),
                drain_timeout=5.0,
            )
        )
        await server.start()
        stack.push_async_callback(server.shutdown)
        host, port = server.sip_address
        announce(Cast((host, port), caller.uri(), voicemail.uri(), acme.uri(), note))
        started = datetime.now(UTC)
        call = caller.dial(f"sip:{NUMBER}@{host}:{port}", caller=CALLER_NUMBER)
        try:
            async with asyncio.timeout(CALL_DEADLINE):
                await caller.hang_up_after(call, talk_seconds)
                await _calls_finished(server)
        except TimeoutError:
            problems.append(f"the call did not end within {CALL_DEADLINE:g} s")
        assert server.store is not None
        found = await server.store.calls.list_calls(
            campaign_id=CAMPAIGN, since=started, limit=1, with_events=True
        )
        phones = {
            "caller": call,
            VOICEMAIL: next(iter(voicemail.calls), None),
            ACME: next(iter(acme.calls), None),
        }
    record = found[0] if found else None
    return DemoResult(record, phones, problems + check_script(record), note)


async def _calls_finished(server: CallwhisperServer) -> None:
    """Wait until the server's call tasks are done: the record is then complete."""
    assert server.b2bua is not None
    tasks = set(server.b2bua.tasks)
    if tasks:
        await asyncio.wait(tasks)


# -- printing ---------------------------------------------------------------------------------

_KINDS: Final = frozenset(get_args(EntryKind))


def timeline_entries(record: CallRecord) -> list[Entry]:
    """The stored timeline as flow entries, for the flow's timeline printer."""
    return [
        Entry(
            event.at.timestamp(),
            cast(EntryKind, event.kind),
            event.leg_id,
            {name: str(value) for name, value in event.data.items()},
        )
        for event in record.events
        if event.kind in _KINDS
    ]


def _seconds(value: float) -> str:
    return f"{value:.1f} s"


def money(amount: Decimal) -> str:
    """An amount with at least cents: ``42.00``, ``0.0031``."""
    exponent = amount.as_tuple().exponent
    if isinstance(exponent, int) and exponent > -2:
        amount = amount.quantize(Decimal("0.01"))
    return str(amount)


def describe_phone(name: str, call: PhoneCall | None) -> str:
    """One line of what a phone saw of the call."""
    if call is None:
        return f"{name:<10}never called"
    parts: list[str] = []
    if call.direction == "outgoing":
        parts.append(f"heard {_seconds(call.sound_before_answer)} of ringback")
    if call.answered_at is None:
        parts.append(f"not answered ({call.end_reason})")
    else:
        if call.direction == "outgoing":
            parts.append(f"answered, then heard {_seconds(call.sound_after_answer)} of the buyer")
        else:
            keys = " ".join(call.keys_pressed) or "nothing"
            parts.append(f"answered, heard {_seconds(call.sound_after_answer)}, pressed {keys}")
        parts.append(f"on the line {_seconds(call.talk_seconds)}")
        ended = {"us": "hung up", "peer": "callwhisper hung up"}.get(call.ended_by or "", "")
        parts.append(ended or call.end_reason or "still up")
    return f"{name:<10}" + ", ".join(parts)


def print_report(result: DemoResult, data_dir: Path, kept: bool) -> None:
    """The timeline, the money and what each phone saw."""
    record = result.record
    if record is not None:
        click.echo("\nTimeline (as stored by the call server):")
        click.echo(format_timeline(timeline_entries(record)))
        bridged = next((leg for leg in record.legs if leg.accepted_at is not None), None)
        buyer = (
            f"{bridged.buyer_id} (leg {bridged.id.rpartition('/')[2]})"
            if bridged is not None
            else "nobody"
        )
        click.echo("\nSummary:")
        click.echo(f"  outcome    {record.outcome}, bridged to {buyer}")
        click.echo(
            f"  money      revenue {money(record.revenue)}, payout {money(record.payout)}, "
            f"cost {money(record.cost)}, profit {money(record.profit)}"
        )
        if record.recording_path:
            where = "" if kept else "  (removed with the temporary directory: use --keep)"
            click.echo(f"  recording  {record.recording_path}{where}")
    click.echo("\nWhat the phones saw:")
    for name, call in result.phones.items():
        click.echo(f"  {describe_phone(name, call)}")
    if kept:
        click.echo(f"\nstore, configuration and recording kept in {data_dir}")


def _announce(cast_: Cast) -> None:
    host, port = cast_.server
    click.echo(f"callwhisper demo: one call on loopback, server at sip:{host}:{port}")
    click.echo(f"  caller    {cast_.caller} dials {NUMBER} from {CALLER_NUMBER}")
    click.echo(f"  buyer 1   {cast_.voicemail} answers like a voicemail box and says nothing")
    click.echo(f"  buyer 2   {cast_.acme} presses 1 while it hears the whisper")
    if cast_.note:
        click.echo(cast_.note)


def result_document(result: DemoResult) -> dict[str, Any]:
    """The JSON document ``demo --json`` prints."""
    return {
        "scripted": not result.problems,
        "problems": result.problems,
        "note": result.note,
        "call": None if result.record is None else asdict(result.record),
        "phones": {
            name: None
            if call is None
            else {
                "direction": call.direction,
                "status": call.status,
                "sound_before_answer_seconds": round(call.sound_before_answer, 2),
                "sound_after_answer_seconds": round(call.sound_after_answer, 2),
                "keys_pressed": call.keys_pressed,
                "connected_seconds": round(call.talk_seconds, 2),
                "ended": call.end_reason,
            }
            for name, call in result.phones.items()
        },
    }


@contextlib.contextmanager
def _data_dir(path: Path | None, keep: bool) -> Iterator[Path]:
    if path is not None:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            reason = error.strerror or str(error)
            message = f"cannot create {path}: {reason}"
            raise click.BadParameter(message, param_hint="--data-dir") from None
        yield path
    elif keep:
        yield Path(tempfile.mkdtemp(prefix="callwhisper-demo-"))
    else:
        with tempfile.TemporaryDirectory(prefix="callwhisper-demo-") as name:
            yield Path(name)


@click.command("demo")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where the store, the configuration and the recording go "
    "(default: a temporary directory, removed at the end unless --keep).",
)
@click.option("--keep", is_flag=True, help="Keep the temporary directory and say where it is.")
@click.option(
    "--talk-seconds",
    type=click.FloatRange(0.5, 60.0),
    default=3.0,
    show_default=True,
    help="How long the caller stays on the line after the bridge.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the call's record as JSON.")
@click.option("-v", "--verbose", is_flag=True, help="Log every SIP and call step.")
def command(
    data_dir: Path | None, keep: bool, talk_seconds: float, as_json: bool, verbose: bool
) -> None:
    """Place a complete demo call on loopback and print its timeline.

    Three phones of callwhisper's own play the parts, nothing leaves
    127.0.0.1: a caller dials the demo campaign; buyer 1 answers like a
    voicemail box, hears the whisper and says nothing, so it is declined
    (timeout); buyer 2 presses 1 while hearing the whisper and is bridged;
    the caller hangs up after --talk-seconds. Exits with status 1, saying
    why, when the call did not go that way (2 when it could not be placed).
    """
    configure_logging(logging.INFO if verbose else logging.WARNING)
    if verbose:
        logging.getLogger("callwhisper").setLevel(logging.DEBUG)
    announce = (lambda _: None) if as_json else _announce
    with _data_dir(data_dir, keep) as directory:
        try:
            result = asyncio.run(run_demo(directory, talk_seconds, announce))
        except (CallwhisperError, SQLAlchemyError, OSError) as error:
            fail([f"error: the demo could not run: {error}"], EXIT_NOT_RUN)
        kept = keep or data_dir is not None
        if as_json:
            click.echo(json.dumps(result_document(result), indent=2, default=json_default))
        else:
            print_report(result, directory, kept)
    if result.problems:
        problems = result.problems
        fail(
            [f"error: the demo call did not go as scripted: {p}" for p in problems],
            EXIT_NOT_SCRIPTED,
        )
