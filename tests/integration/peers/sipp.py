"""Run SIPp as a real UAC or UAS peer and read back what happened.

:class:`SippLauncher` starts ``sipp`` with a scenario of
``tests/integration/sip/scenarios`` (or any file) on a free loopback port,
from a working directory holding a ``pcap`` folder of links to SIPp's
sample captures (and renumbered copies, see :data:`RENUMBERED_CAPTURES`),
so ``<exec play_pcap_audio="pcap/g711a.pcap"/>`` works. Every run
is bounded twice: SIPp's own ``-timeout ... -timeout_error`` and a kill
after a grace period. :meth:`SippPeer.wait` returns a :class:`SippResult`
built from the exit code and the trace files (statistics, per-step counts,
message log and error log), which tests assert on.

SIPp exit codes (SIPp reference, "Exit codes"): 0 every call succeeded,
1 at least one call failed, 97 exit on an internal command, 99 normal exit
without any call processed, 255 fatal error, 254 fatal error binding a
socket; a negative code is the signal that killed it.
"""

from __future__ import annotations

import asyncio
import csv
import re
import shutil
import signal
import struct
import subprocess
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import IntEnum
from pathlib import Path
from typing import Final, Literal

from tests.integration.peers.net import (
    LOOPBACK,
    Address,
    free_port,
    free_port_block,
    tcp_port_in_use,
    udp_port_in_use,
    wait_until,
)

SIPP_PCAP_DIR: Final = Path("/usr/share/sip-tester")
"""Where Debian's ``sip-tester`` package installs SIPp's sample captures."""

SCENARIO_DIR: Final = Path(__file__).resolve().parents[1] / "sip" / "scenarios"
"""The scenario files of the engine's acceptance tests."""

ScenarioName = Literal[
    "caller-basic",
    "caller-cancels-while-ringing",
    "caller-cancels-during-whisper",
    "caller-retransmits-invite",
    "caller-no-common-codec",
    "caller-loses-half-of-200",
    "caller-sends-options",
    "caller-holds-and-resumes",
    "caller-presses-1-in-ivr",
    "caller-presses-2-in-ivr",
    "caller-waits-for-our-bye",
    "caller-turned-away-with-486",
    "buyer-accepts",
    "buyer-voicemail-silent",
    "buyer-presses-reject-key",
    "buyer-wrong-key-then-accept",
    "buyer-busy",
    "buyer-never-answers",
    "buyer-hangs-up-during-whisper",
    "buyer-challenges-invite",
    "overflow-answers-and-talks",
    "buyer-behind-record-routing-proxy",
    "caller-record-routed-by-its-proxy",
    "record-route-proxy-gets-ack-and-bye",
]
"""The scenarios of :data:`SCENARIO_DIR`, by file name without ``.xml``."""

Role = Literal["uac", "uas"]
Direction = Literal["sent", "received"]

MEDIA_PORTS: Final = 4
"""Ports reserved from ``-mp`` on: SIPp binds the media port and the ones just above."""

EXIT_GRACE: Final = 5.0
"""Seconds granted past SIPp's own ``-timeout`` before the process is killed."""


class SippExit(IntEnum):
    """SIPp's documented exit codes."""

    ALL_CALLS_SUCCEEDED = 0
    SOME_CALLS_FAILED = 1
    INTERNAL_COMMAND = 97
    NO_CALL_PROCESSED = 99
    FATAL_BIND = 254
    FATAL = 255


class SippError(RuntimeError):
    """SIPp could not be started or did not finish in time: the harness's fault, not the peer's."""


def scenario_path(name: ScenarioName | str | Path) -> Path:
    """The file of a scenario given by name (``"buyer-busy"``) or path."""
    path = Path(name) if isinstance(name, Path) else SCENARIO_DIR / f"{name}.xml"
    if not path.is_file():
        raise SippError(f"no SIPp scenario file {path}")
    return path


def scenario_names() -> list[str]:
    """The names of every scenario file of :data:`SCENARIO_DIR`."""
    return sorted(path.stem for path in SCENARIO_DIR.glob("*.xml"))


@dataclass(frozen=True, slots=True)
class SipMessageSeen:
    """One SIP message in SIPp's message log."""

    direction: Direction
    start_line: str
    """``INVITE sip:buyer@127.0.0.1:5060 SIP/2.0`` or ``SIP/2.0 180 Ringing``."""
    text: str
    """The whole message as logged."""
    time: float
    """When SIPp logged it, in seconds since the epoch (local clock)."""
    lost: bool = False
    """Dropped on receipt by a ``lost="..."`` attribute: the scenario never saw it."""

    @property
    def kind(self) -> str:
        """The method of a request or the status code of a response: ``"INVITE"``, ``"180"``."""
        parts = self.start_line.split()
        if not parts:
            return ""
        return parts[1] if parts[0].startswith("SIP/") and len(parts) > 1 else parts[0]

    def header(self, name: str) -> str | None:
        """The value of the first header called ``name`` (case-insensitive), if any."""
        wanted = name.lower() + ":"
        for line in self.text.splitlines()[1:]:
            if not line.strip():
                break
            if line.lower().startswith(wanted):
                return line[len(wanted) :].strip()
        return None


@dataclass(frozen=True, slots=True)
class SippResult:
    """What one SIPp run did, from its exit code and trace files."""

    scenario: str
    role: Role
    exit_code: int
    statistics: Mapping[str, str]
    """The last row of the ``-trace_stat`` file, by column (``SuccessfulCall(C)``...)."""
    counts: Mapping[str, int]
    """The last row of the ``-trace_counts`` file: ``3_200_Recv``, ``3_200_Retrans``..."""
    messages: tuple[SipMessageSeen, ...]
    errors: tuple[str, ...]
    """Entries of the error log: unexpected messages, aborts, and also recv timeouts
    that jumped to an ``ontimeout`` label (which are part of some scenarios)."""
    log_dir: Path
    stderr: str = field(repr=False)

    def _stat(self, column: str) -> int:
        value = self.statistics.get(column, "")
        return int(value) if value.isdigit() else 0

    @property
    def exit_status(self) -> SippExit | None:
        """The exit code as a documented status, None for a signal or an unknown code."""
        try:
            return SippExit(self.exit_code)
        except ValueError:
            return None

    @property
    def succeeded(self) -> bool:
        """Every call of the run completed its scenario."""
        return self.exit_code == SippExit.ALL_CALLS_SUCCEEDED

    @property
    def successful_calls(self) -> int:
        """Calls that reached the end of the scenario."""
        return self._stat("SuccessfulCall(C)")

    @property
    def failed_calls(self) -> int:
        """Calls that failed for any reason."""
        return self._stat("FailedCall(C)")

    @property
    def retransmissions(self) -> int:
        """Messages this SIPp retransmitted (requests, or 2xx for a UAS)."""
        return self._stat("Retransmissions(C)")

    @property
    def unexpected_messages(self) -> tuple[str, ...]:
        """Error log entries about messages the scenario did not expect."""
        return tuple(error for error in self.errors if "unexpected" in error.lower())

    def seen(self, direction: Direction) -> list[str]:
        """Kinds (method or status code) of the messages sent or received, in order.

        Messages dropped by a ``lost`` attribute are not included: see :attr:`lost`.
        """
        return [
            message.kind
            for message in self.messages
            if message.direction == direction and not message.lost
        ]

    @property
    def lost(self) -> list[str]:
        """Kinds of the received messages dropped by a ``lost`` attribute, in order."""
        return [message.kind for message in self.messages if message.lost]

    def count(self, kind: str, direction: Direction = "received") -> int:
        """How many messages of this kind (``"200"``, ``"BYE"``) were sent or received."""
        return Counter(self.seen(direction))[kind]

    def step_count(self, suffix: str) -> int:
        """Sum of the per-step counters whose name ends with ``suffix`` (``"_200_Retrans"``)."""
        return sum(value for name, value in self.counts.items() if name.endswith(suffix))

    def describe(self) -> str:
        """A human summary for assertion messages."""
        lines = [
            f"SIPp {self.role} {self.scenario}: exit {self.exit_code} ({self.exit_status}),"
            f" {self.successful_calls} successful, {self.failed_calls} failed calls",
            f"sent {self.seen('sent')}",
            f"received {self.seen('received')}",
            *(f"error: {error}" for error in self.errors),
        ]
        if self.stderr.strip():
            lines.append(f"stderr: {self.stderr.strip()[-2000:]}")
        lines.append(f"logs in {self.log_dir}")
        return "\n".join(lines)

    def assert_succeeded(self, calls: int = 1) -> None:
        """Fail the test unless exactly ``calls`` calls succeeded and none failed."""
        assert self.succeeded, self.describe()
        assert self.successful_calls == calls, self.describe()
        assert self.failed_calls == 0, self.describe()


# Entries are not always on a line of their own: split on the dashes and timestamp.
_LOG_SEPARATOR = re.compile(r"-{20,} (\d{4}-\d\d-\d\d [\d:.]+)\n")
_LOST = "message lost (recv)."
_LOG_HEADER = re.compile(r"^\w+ message (sent|received)\b.*$", re.MULTILINE)
# Entries are not always separated by a newline: split on the timestamps.
_ERROR_ENTRY = re.compile(r"\d{4}-\d\d-\d\d\t[\d:.]+\t[\d.]+: ")
# A notice SIPp 3.6 logs as an error for every pcap found in the working directory.
_PCAP_NOTICE = "SIPp now prefers looking for pcap files next to the scenario"


def parse_message_log(text: str) -> tuple[SipMessageSeen, ...]:
    """The messages of a ``-trace_msg`` log, in order."""
    messages: list[SipMessageSeen] = []
    separators = list(_LOG_SEPARATOR.finditer(text))
    ends = [match.start() for match in separators[1:]] + [len(text)] * bool(separators)
    for separator, end in zip(separators, ends, strict=True):
        block = text[separator.end() : end]
        header = _LOG_HEADER.search(block)
        if header is None:
            continue
        direction: Direction = "sent" if header.group(1) == "sent" else "received"
        body = block[header.end() :].strip()
        lost = body.endswith(_LOST)
        if lost:
            body = body[: body.rindex("\n")].strip() if "\n" in body else ""
        start_line = body.splitlines()[0].strip() if body else ""
        logged = datetime.strptime(separator.group(1), "%Y-%m-%d %H:%M:%S.%f").timestamp()
        messages.append(SipMessageSeen(direction, start_line, body, logged, lost))
    return tuple(messages)


def parse_error_log(text: str) -> tuple[str, ...]:
    """The entries of a ``-trace_err`` log, without timestamps nor the pcap lookup notice."""
    matches = list(_ERROR_ENTRY.finditer(text))
    ends = [match.start() for match in matches[1:]] + [len(text)] * bool(matches)
    entries = (text[match.end() : end].strip() for match, end in zip(matches, ends, strict=True))
    return tuple(entry for entry in entries if not entry.startswith(_PCAP_NOTICE))


def last_row(path: Path | None) -> dict[str, str]:
    """The last row of one of SIPp's ``;``-separated statistics files, by column name."""
    if path is None or not path.is_file():
        return {}
    rows = list(csv.reader(path.read_text(errors="replace").splitlines(), delimiter=";"))
    if len(rows) < 2:
        return {}
    return {name: value for name, value in zip(rows[0], rows[-1], strict=False) if name}


def _read(path: Path) -> str:
    return path.read_text(errors="replace") if path.is_file() else ""


RENUMBERED_CAPTURES: Final = {"dtmf_2833_1_renumbered.pcap": "dtmf_2833_1.pcap"}
"""Captures made for the scenarios, from the shipped ones.

Every shipped ``dtmf_2833_*.pcap`` is one RTP stream (same SSRC) cut in
pieces, and key 1 has the lowest sequence numbers and timestamp of all:
played after another key it looks like a late duplicate, which a jitter
buffer drops and an RFC 4733 receiver ignores. The renumbered copy comes
after every shipped key.
"""
RENUMBER_SEQUENCE: Final = 10_000
RENUMBER_TIMESTAMP: Final = 1_000_000

_PCAP_HEADER: Final = 24
_PCAP_RECORD = struct.Struct("<IIII")
_ETHERNET: Final = 14


def renumber_rtp_capture(source: Path, target: Path, sequence: int, timestamp: int) -> None:
    """Copy an Ethernet/IPv4/UDP/RTP pcap, adding to every packet's RTP numbers.

    The UDP checksum is zeroed ("none", RFC 768) rather than recomputed.
    """
    data = bytearray(source.read_bytes())
    offset = _PCAP_HEADER
    while offset + _PCAP_RECORD.size <= len(data):
        captured = _PCAP_RECORD.unpack_from(data, offset)[2]
        frame = offset + _PCAP_RECORD.size
        ip = frame + _ETHERNET
        if data[frame + 12 : frame + 14] == b"\x08\x00" and data[ip + 9] == 17:
            udp = ip + (data[ip] & 0x0F) * 4
            rtp = udp + 8
            data[udp + 6 : udp + 8] = b"\x00\x00"
            old_sequence, old_timestamp = struct.unpack_from("!HI", data, rtp + 2)
            struct.pack_into(
                "!HI",
                data,
                rtp + 2,
                (old_sequence + sequence) & 0xFFFF,
                (old_timestamp + timestamp) & 0xFFFFFFFF,
            )
        offset = frame + captured
    target.write_bytes(bytes(data))


def prepare_pcap_dir(directory: Path) -> None:
    """A ``pcap`` folder of links to SIPp's captures plus :data:`RENUMBERED_CAPTURES`."""
    if directory.exists():
        return
    directory.mkdir(parents=True)
    for capture in sorted(SIPP_PCAP_DIR.glob("*.pcap")):
        (directory / capture.name).symlink_to(capture)
    for name, source in RENUMBERED_CAPTURES.items():
        renumber_rtp_capture(
            SIPP_PCAP_DIR / source, directory / name, RENUMBER_SEQUENCE, RENUMBER_TIMESTAMP
        )


@dataclass(frozen=True, slots=True)
class SippOptions:
    """Command-line settings of one SIPp run."""

    calls: int = 1
    """``-m``: calls to place (UAC) or to take (UAS) before exiting."""
    rate: float = 10.0
    """``-r``: calls per second (UAC)."""
    pause_ms: int | None = None
    """``-d``: the duration of the scenario's ``<pause/>`` steps."""
    recv_timeout_ms: int | None = None
    """``-recv_timeout``: also the delay before CANCEL in the ``caller-cancels-*`` scenarios."""
    timeout: float = 15.0
    """``-timeout``: SIPp gives up (and fails) after this many seconds."""
    timeout_error: bool = True
    """``-timeout_error``: reaching ``timeout`` is a failure (exit 255), not an exit (97)."""
    service: str = "buyer"
    """``-s``: the user part of the Request-URI (UAC)."""
    transport: Literal["udp", "tcp"] = "udp"
    """``-t u1`` or ``-t t1``: SIP over UDP, or over one TCP connection."""
    extra_args: tuple[str, ...] = ()


class SippPeer:
    """One running ``sipp`` process."""

    def __init__(
        self,
        scenario: Path,
        role: Role,
        workdir: Path,
        options: SippOptions,
        remote: Address | None = None,
    ) -> None:
        """Start SIPp at once; raise :class:`SippError` if ``sipp`` is not installed."""
        executable = shutil.which("sipp")
        if executable is None:
            raise SippError("sipp is not installed (Debian package sip-tester)")
        if role == "uac" and remote is None:
            raise SippError("a SIPp UAC needs a remote address")
        self.scenario = scenario
        self.role: Role = role
        self.workdir = workdir
        self.options = options
        self.port = free_port(tcp_too=options.transport == "tcp")
        self.media_port = free_port_block(MEDIA_PORTS)
        workdir.mkdir(parents=True, exist_ok=True)
        prepare_pcap_dir(workdir / "pcap")
        command = [executable, "-sf", str(scenario)]
        if remote is not None:
            command.append(f"{remote[0]}:{remote[1]}")
        command += [
            "-i", LOOPBACK, "-p", str(self.port),
            "-mi", LOOPBACK, "-mp", str(self.media_port),
            "-m", str(options.calls), "-r", f"{options.rate:g}",
            "-s", options.service,
            "-nostdin",
            "-timeout", f"{options.timeout:g}s",
            "-trace_err", "-error_file", str(workdir / "errors.log"),
            "-trace_msg", "-message_file", str(workdir / "messages.log"),
            "-trace_stat", "-stf", str(workdir / "stats.csv"),
            "-trace_counts",
            "-t", "t1" if options.transport == "tcp" else "u1",
        ]  # fmt: skip
        if options.timeout_error:
            command.append("-timeout_error")
        if options.pause_ms is not None:
            command += ["-d", str(options.pause_ms)]
        if options.recv_timeout_ms is not None:
            command += ["-recv_timeout", str(options.recv_timeout_ms)]
        command += list(options.extra_args)
        self.command = command
        self._stdout = (workdir / "stdout.txt").open("wb")
        self._stderr = (workdir / "stderr.txt").open("wb")
        self._started = time.monotonic()
        self.process = subprocess.Popen(
            command,
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=self._stdout,
            stderr=self._stderr,
            start_new_session=True,
        )
        self._result: SippResult | None = None

    @property
    def address(self) -> Address:
        """Where this SIPp listens for SIP."""
        return (LOOPBACK, self.port)

    def uri(self, user: str = "buyer") -> str:
        """A SIP URI reaching this SIPp (a UAS answers any user), saying its transport."""
        transport = ";transport=tcp" if self.options.transport == "tcp" else ""
        return f"sip:{user}@{LOOPBACK}:{self.port}{transport}"

    @property
    def deadline(self) -> float:
        """The monotonic time after which the process is killed."""
        return self._started + self.options.timeout + EXIT_GRACE

    def wait_listening(self, timeout: float = 5.0) -> None:
        """Return once SIPp has bound its SIP port (poll, the process gives no signal)."""
        in_use = tcp_port_in_use if self.options.transport == "tcp" else udp_port_in_use

        def bound() -> bool:
            if self.process.poll() is not None:
                raise SippError(self.result().describe())
            return in_use(self.port)

        wait_until(bound, timeout, f"SIPp did not bind {LOOPBACK}:{self.port}")

    def running(self) -> bool:
        """Whether the process is still running."""
        return self.process.poll() is None

    def wait(self, timeout: float | None = None) -> SippResult:
        """Wait for SIPp to exit (at most until its deadline) and return its result."""
        limit = self.deadline if timeout is None else min(self.deadline, time.monotonic() + timeout)
        try:
            self.process.wait(timeout=max(0.0, limit - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.kill()
            raise SippError(f"SIPp {self.scenario.stem} still running; killed") from None
        return self.result()

    async def wait_async(self, timeout: float | None = None) -> SippResult:  # noqa: ASYNC109
        """As :meth:`wait`, without blocking the event loop (polls the process)."""
        limit = self.deadline if timeout is None else min(self.deadline, time.monotonic() + timeout)
        while self.process.poll() is None:
            if time.monotonic() > limit:
                self.kill()
                raise SippError(f"SIPp {self.scenario.stem} still running; killed")
            await asyncio.sleep(0.02)
        return self.result()

    def result(self) -> SippResult:
        """The result of the finished process (read once, then cached)."""
        code = self.process.poll()
        if code is None:
            raise SippError("SIPp is still running")
        if self._result is None:
            self._close_outputs()
            counts = next(iter(sorted(self.workdir.glob("*_counts.csv"))), None)
            self._result = SippResult(
                scenario=self.scenario.stem,
                role=self.role,
                exit_code=code,
                statistics=last_row(self.workdir / "stats.csv"),
                counts={
                    name: int(value) for name, value in last_row(counts).items() if value.isdigit()
                },
                messages=parse_message_log(_read(self.workdir / "messages.log")),
                errors=parse_error_log(_read(self.workdir / "errors.log")),
                log_dir=self.workdir,
                stderr=_read(self.workdir / "stderr.txt"),
            )
        return self._result

    def kill(self) -> None:
        """Stop the process if it still runs (SIGTERM, then SIGKILL) and close its files."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._close_outputs()

    def _close_outputs(self) -> None:
        self._stdout.close()
        self._stderr.close()


class SippLauncher:
    """Starts SIPp peers in numbered working directories and kills them all on :meth:`close`."""

    def __init__(self, workdir: Path) -> None:
        """Use ``workdir`` for every peer's working directory and logs."""
        self.workdir = workdir
        self.peers: list[SippPeer] = []

    def _start(
        self,
        scenario: ScenarioName | str | Path,
        role: Role,
        options: SippOptions,
        remote: Address | None,
    ) -> SippPeer:
        path = scenario_path(scenario)
        directory = self.workdir / f"sipp-{len(self.peers) + 1}-{role}-{path.stem}"
        peer = SippPeer(path, role, directory, options, remote)
        self.peers.append(peer)
        return peer

    def uas(
        self, scenario: ScenarioName | str | Path, options: SippOptions | None = None
    ) -> SippPeer:
        """Start a UAS and return once it listens."""
        peer = self._start(scenario, "uas", options or SippOptions(), None)
        peer.wait_listening()
        return peer

    def uac(
        self,
        scenario: ScenarioName | str | Path,
        remote: Address,
        options: SippOptions | None = None,
    ) -> SippPeer:
        """Start a UAC placing calls to ``remote``."""
        return self._start(scenario, "uac", options or SippOptions(), remote)

    def __iter__(self) -> Iterator[SippPeer]:
        """The peers started so far."""
        return iter(self.peers)

    def close(self) -> None:
        """Kill every peer still running."""
        for peer in self.peers:
            peer.kill()
