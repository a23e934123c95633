"""Benchmark: the SIP engine's signalling under SIPp load, against SIPp answering SIPp.

The server runs as ``callwhisper serve`` does (a :class:`CallwhisperServer`,
uvloop when installed, INFO logging to a file, SQLite in a temporary
directory), in its own process so that its CPU time can be read from
``/proc/<pid>/stat`` (Linux). SIPp places the calls (``-r`` calls per
second, one new caller number each) and plays the buyers: each call runs the
whole whisper flow on loopback. The caller hears ringback as early media
(183) and already talks (SIPp's RTP stream of the speech in its sample
capture, 20 ms packets; not the capture played as it is: see the caller's
scenario for why); the buyer answers, hears the whisper for
``LISTEN_MS``, presses 1 (RFC 4733, SIPp's capture of the key, played while
the whisper still plays); callwhisper bridges, answers the caller, who stays
``HOLD_MS`` and hangs up; callwhisper hangs up the buyer. A call counts as a
completed whisper flow when SIPp's caller finished its scenario (its 200 OK
only comes after the accept).

The baseline of every run is the same SIPp caller calling the same SIPp
buyer directly, in the same process of the benchmark, just before.

What is measured, and how:

- **Post-dial delay we add**: from the caller's INVITE leaving SIPp's caller
  to the buyer's INVITE reaching SIPp's buyer. Both SIPp scenarios log the
  wall clock (``<gettimeofday>``) with the caller's number (which callwhisper
  presents to the buyer), so the two logs pair up call by call. Through
  callwhisper this is two loopback hops and our work; directly it is one
  hop, which costs about a millisecond here because SIPp only looks at its
  socket between its own scheduling rounds. The difference of the two
  distributions is what we add; the added p99 is taken as the p99 through
  callwhisper minus the baseline's p50 (the usual cost of the hop), which
  does not flatter us.
- **Accept-to-bridge**: a benchmark-only probe installed in the server
  process (:class:`AcceptProbe`) notes, with ``time.perf_counter``, when the
  buyer's packet that starts key 1 is read, when the engine has bridged the
  two legs, and on each leg when the next packet a bridge relays is read
  (the baseline: the earliest a relay bridged beforehand could forward
  anything) and when the first packet is relayed. The caller already talks
  (20 ms packets); the buyer talks again 20 ms after the
  key's last packet, as a phone does (the rest of the key itself is
  deliberately not relayed to the caller). The target (one 20 ms frame,
  call-flow.md 15) is checked on the bridge: made within 20 ms of the key at
  p99. The first packet relayed each way then shows what the peers get: the
  next packet after the bridge, and the report counts the calls whose next
  packet came in the short time between the key and the bridge (that one
  is not relayed). The probe wraps four methods of the media engine in the
  server process only; it costs a dictionary lookup per packet and is not
  installed for the CPU runs. (The server's stored timeline cannot serve:
  its key, accept and bridge entries carry the time of the key's event.)
- **Call setups per core-second**: the calls are placed at rising rates
  (``RAMP``) for ``STEP_SECONDS`` each; per step, the server's CPU time over
  the step (every thread of the process) divided by the completed calls
  gives the CPU per call, and its inverse the setups one core carries. A
  step is sustained when no call failed, SIPp kept the rate asked and the
  server stayed under ``SATURATED`` of one core; the ramp stops at the first
  step that is not. The baseline is SIPp's own UAS CPU per call, answering
  the same calls directly at the same rate.

Every peer shares one loopback address, as a carrier's calls all come from
its SBC, so the server runs with the per-source flood guard raised past the
load (``TransportConfig.rate_per_source``), so that only the server's own
speed limits the rate. Run with ``python -m bench sip``
(about five minutes; needs ``sipp`` with pcap play and RTP streaming, Debian's
``sip-tester``,
and ``espeak-ng`` for the whisper). ``BENCH_SIP_COUNTERS=database`` runs the
server with its counters decided in the database instead of memory
(``callwhisper serve --counters``), to compare the two in the same session.
"""

from __future__ import annotations

import asyncio
import json
import logging
import multiprocessing
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Final

from tests.integration.peers.net import LOOPBACK, free_port, free_port_block, udp_port_in_use
from tests.integration.peers.sipp import SIPP_PCAP_DIR, last_row, prepare_pcap_dir
from tests.unit.media.pcap import read_udp

from bench.bench_routing import AREA_CODES
from bench.stats import percentile
from callwhisper.cli.common import configure_logging
from callwhisper.cli.serve import _RESIDENT_COUNTERS
from callwhisper.engine import CallwhisperServer, MediaConfig, ServerConfig, TransportConfig
from callwhisper.engine.media import DigitReceived, MediaEngine, MediaEvent, MediaLeg, _Route
from callwhisper.engine.runner import CALLER
from callwhisper.media.rtp import RtpPacket

LATENCY_RATE: Final = 50
"""Calls per second of the latency run (the rate the targets are set at)."""
LATENCY_CALLS: Final = 1000
RAMP: Final = (25, 50, 75, 100, 150, 200, 300, 400)
"""Calls per second of the CPU steps."""
STEP_SECONDS: Final = 10.0
WARM_UP_CALLS: Final = 100
"""Calls placed before measuring: first whisper renders, imports, caches."""
LISTEN_MS: Final = 200
"""How long the buyer listens to the whisper before pressing 1."""
HOLD_MS: Final = 200
"""How long the caller stays bridged."""
DTMF_MS: Final = 140
"""Length of SIPp's capture of key 1."""
SATURATED: Final = 0.9
"""Share of one core above which the server is taken as saturated."""
NUMBER: Final = "+18005550100"
"""The tracking number SIPp's caller dials."""
RTP_PORTS: Final = (30000, 32766)
"""Below the ephemeral range SIPp's and the system's sockets come from."""
SCENARIOS: Final = Path(__file__).parent / "scenarios"
CALLER_SCENARIO: Final = SCENARIOS / "caller-speaks-early-hangs-up-soon.xml"
BUYER_SCENARIO: Final = SCENARIOS / "buyer-presses-1-during-whisper.xml"
ACCEPT_KEY: Final = "1"
TARGET_PDD_P99_MS: Final = 5.0
TARGET_ACCEPT_P99_MS: Final = 20.0
TARGET_SETUPS: Final = 300.0


def load_average() -> str:
    """The 1-minute load average, for the report."""
    return f"{os.getloadavg()[0]:.2f}"


def process_cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process and all its threads so far (Linux ``/proc``)."""
    # Fields after the command name, which may hold spaces: utime and stime are 14 and 15.
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def caller_numbers(count: int, first: int) -> list[str]:
    """``count`` distinct US numbers from real area codes, the ``first``-th onwards."""
    numbers = []
    for index in range(first, first + count):
        area, rest = AREA_CODES[index % len(AREA_CODES)], index // len(AREA_CODES)
        numbers.append(f"+1{area}{200 + rest // 10000 % 800}{rest % 10000:04d}")
    return numbers


def configuration(buyer_uri: str) -> dict[str, Any]:
    """Three buyers with caps, in one round-robin tier, all answered by SIPp's buyer."""
    buyers = [
        {
            "id": f"buyer{index}",
            "name": f"Buyer {index}",
            "conversion": {"revenue": "30.00", "buffer_seconds": 60},
            "caps": {"calls": {"daily": 1_000_000}, "concurrency": 10_000},
            "targets": [{"id": "floor", "destination": buyer_uri}],
        }
        for index in range(3)
    ]
    return {
        "version": 1,
        "publishers": [
            {"id": "ads", "name": "Ads", "payout": {"amount": "10.00", "buffer_seconds": 60}}
        ],
        "buyers": buyers,
        "campaigns": [
            {
                "id": "auto",
                "name": "Auto insurance",
                "lead_type": "Auto insurance",
                "whisper": {
                    "text": "{lead_type} from {caller_state}. Press 1 to accept.",
                    "wait_seconds": 1.0,
                    "plays": 1,
                },
                "routing": {
                    "tiers": [
                        {
                            "method": "round_robin",
                            "buyers": [{"buyer": buyer["id"]} for buyer in buyers],
                        }
                    ]
                },
            }
        ],
        "numbers": [{"number": NUMBER, "campaign": "auto", "publisher": "ads"}],
    }


# -- the server process --------------------------------------------------------------------


@dataclass(frozen=True)
class ProbeResults:
    """What :class:`AcceptProbe` saw, in seconds after each accepting key packet was read."""

    keys: int
    bridged: list[float]
    """When the engine had bridged the two legs."""
    next_packet: dict[str, list[float]]
    """Per direction: when the next packet a bridge relays was read (the baseline)."""
    first_relayed: dict[str, list[float]]
    """Per direction: when the first packet was relayed."""
    relay_delay: dict[str, list[float]]
    """Per direction and call: first relayed minus next relayable packet read; about 20 ms
    or more when the packets that arrived before the bridge were dropped."""


CALLER_TO_BUYER: Final = "caller to buyer"
BUYER_TO_CALLER: Final = "buyer to caller"
DIRECTIONS: Final = (CALLER_TO_BUYER, BUYER_TO_CALLER)


class AcceptProbe:
    """Benchmark-only timestamps around each accept, taken inside the server process.

    Wraps :meth:`MediaLeg._emit` (to see the key that accepts),
    :meth:`MediaEngine.bridge` (to see the bridge made), and the two ways a
    read datagram is handled, ``_Route.forward`` (the relay's short path)
    and :meth:`MediaLeg._receive` (everything else), to see on both legs of
    the call the next packet a bridge relays (audio: the rest of the accept
    key itself is deliberately not relayed) and the first packet relayed.
    Nothing else of the server is touched.
    """

    def __init__(self) -> None:
        self.keys: dict[str, float] = {}
        self.bridged: dict[str, float] = {}
        self.watching: dict[MediaLeg, tuple[str, str]] = {}
        self.next_packet: dict[tuple[str, str], float] = {}
        self.first_relayed: dict[tuple[str, str], float] = {}

    def install(self) -> None:
        """Wrap the methods, in this process only."""
        emit, receive, forward = MediaLeg._emit, MediaLeg._receive, _Route.forward
        bridge = MediaEngine.bridge

        def probed_emit(leg: MediaLeg, event: MediaEvent) -> None:
            if isinstance(event, DigitReceived) and event.digit == ACCEPT_KEY:
                self._key(leg)
            emit(leg, event)

        def probed_bridge(engine: MediaEngine, caller: MediaLeg, buyer: MediaLeg, **kw: Any) -> Any:
            made = bridge(engine, caller, buyer, **kw)
            call_id = caller.ident.rpartition("/")[0]
            if call_id in self.keys:
                self.bridged.setdefault(call_id, time.perf_counter())
            return made

        def probed_forward(route: _Route, data: bytes, address: Any, now: float) -> bool:
            watched = self.watching.get(route.source)
            if watched is None:
                return forward(route, data, address, now)
            read, sent = time.perf_counter(), route.target.counters.packets_out
            done = forward(route, data, address, now)
            if done:
                self._packet(route.source, watched, read, relayed=route.target, sent=sent)
            return done

        def probed_receive(leg: MediaLeg, data: bytes, address: Any, now: float) -> None:
            watched = self.watching.get(leg)
            if watched is None:
                receive(leg, data, address, now)
                return
            read, route = time.perf_counter(), leg._route
            sent = route.target.counters.packets_out if route is not None else 0
            receive(leg, data, address, now)
            audio = len(data) > 1 and data[1] & 0x7F == leg.codec.payload_type
            target = route.target if route is not None else None
            self._packet(leg, watched, read, relayed=target, sent=sent, relayable=audio)

        setattr(MediaLeg, "_emit", probed_emit)  # noqa: B010
        setattr(MediaLeg, "_receive", probed_receive)  # noqa: B010
        setattr(_Route, "forward", probed_forward)  # noqa: B010
        setattr(MediaEngine, "bridge", probed_bridge)  # noqa: B010

    def _key(self, buyer: MediaLeg) -> None:
        call_id = buyer.ident.rpartition("/")[0]
        if call_id in self.keys:
            return
        self.keys[call_id] = time.perf_counter()
        self.watching[buyer] = (call_id, BUYER_TO_CALLER)
        caller = buyer._engine.legs.get(f"{call_id}/{CALLER}")
        if caller is not None:
            self.watching[caller] = (call_id, CALLER_TO_BUYER)

    def _packet(
        self,
        leg: MediaLeg,
        watched: tuple[str, str],
        read: float,
        *,
        relayed: MediaLeg | None,
        sent: int,
        relayable: bool = True,
    ) -> None:
        if relayable:
            self.next_packet.setdefault(watched, read)
        if relayed is not None and relayed.counters.packets_out > sent:
            self.first_relayed[watched] = time.perf_counter()
            del self.watching[leg]

    def forget(self) -> None:
        """Forget every call seen so far (the warm-up's): only those after are measured."""
        for seen in (self.keys, self.bridged, self.watching, self.next_packet, self.first_relayed):
            seen.clear()

    def results(self) -> ProbeResults:
        """Delays after each key, per direction."""

        def after_key(times: dict[tuple[str, str], float]) -> dict[str, list[float]]:
            return {
                direction: [
                    at - self.keys[call_id]
                    for (call_id, way), at in times.items()
                    if way == direction
                ]
                for direction in DIRECTIONS
            }

        delays = {
            direction: [
                at - self.next_packet[(call_id, way)]
                for (call_id, way), at in self.first_relayed.items()
                if way == direction and (call_id, way) in self.next_packet
            ]
            for direction in DIRECTIONS
        }
        return ProbeResults(
            len(self.keys),
            [at - self.keys[call_id] for call_id, at in self.bridged.items()],
            after_key(self.next_packet),
            after_key(self.first_relayed),
            delays,
        )


@dataclass(frozen=True)
class ServeSettings:
    """What the server process needs: its files and whether to install the probe."""

    data_dir: Path
    configuration_file: Path
    log_file: Path
    probe: bool


COUNTERS_ENV = "BENCH_SIP_COUNTERS"
"""``auto`` (the default), ``memory`` or ``database``: as ``callwhisper serve --counters``."""


def counters_mode() -> str:
    """The counters mode asked for in the environment (checked before anything starts)."""
    mode = os.environ.get(COUNTERS_ENV, "auto")
    if mode not in _RESIDENT_COUNTERS:
        raise SystemExit(
            f"{COUNTERS_ENV} must be one of {', '.join(_RESIDENT_COUNTERS)}, not {mode!r}"
        )
    return mode


def serve(conn: Connection, settings: ServeSettings) -> None:
    """Server process: run a :class:`CallwhisperServer` as ``callwhisper serve`` does.

    Sends the bound SIP address once started, serves until SIGTERM, then
    sends the probe's results (or None). With the probe, SIGUSR1 makes it
    forget what it saw, which is acknowledged with None.
    """
    configure_logging(logging.INFO, settings.log_file)
    probe = AcceptProbe() if settings.probe else None
    if probe is not None:
        probe.install()
    server = CallwhisperServer(
        ServerConfig(
            data_dir=settings.data_dir,
            configuration_file=settings.configuration_file,
            sip=TransportConfig(
                host=LOOPBACK, port=0, rate_per_source=1_000_000.0, burst_per_source=1_000_000
            ),
            media=MediaConfig(address=LOOPBACK, port_min=RTP_PORTS[0], port_max=RTP_PORTS[1]),
            drain_timeout=5.0,
            resident_counters=_RESIDENT_COUNTERS[counters_mode()],
        )
    )

    def forget() -> None:
        assert probe is not None
        probe.forget()
        conn.send(None)

    async def run() -> None:
        await server.start()
        if probe is not None:
            asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, forget)
        conn.send(server.sip_address)
        await server.serve_forever()

    try:
        import uvloop
    except ImportError:
        asyncio.run(run())
    else:
        uvloop.run(run())
    conn.send(None if probe is None else probe.results())


class ServerProcess:
    """The call server in a process of its own (spawned: nothing inherited from the benchmark)."""

    def __init__(self, workdir: Path, configuration_file: Path, *, probe: bool) -> None:
        """Start the server and wait until it listens."""
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        settings = ServeSettings(workdir / "var", configuration_file, workdir / "server.log", probe)
        self.process = context.Process(target=serve, args=(child, settings), name="callwhisper")
        self.process.start()
        child.close()
        if not self._conn.poll(60):
            self.process.kill()
            raise RuntimeError(f"the server did not start; see {settings.log_file}")
        self.address: tuple[str, int] = self._conn.recv()

    @property
    def pid(self) -> int:
        """The server's process id."""
        assert self.process.pid is not None
        return self.process.pid

    def cpu_seconds(self) -> float:
        """CPU time the server process has used so far."""
        return process_cpu_seconds(self.pid)

    def forget_calls(self) -> None:
        """Make the probe forget the calls so far; returns once it has."""
        os.kill(self.pid, signal.SIGUSR1)
        if not self._conn.poll(10):
            raise RuntimeError("the server's probe did not answer")
        self._conn.recv()

    def stop(self) -> ProbeResults | None:
        """SIGTERM (graceful shutdown), then the probe's results."""
        try:
            os.kill(self.pid, signal.SIGTERM)
            results: ProbeResults | None = self._conn.recv() if self._conn.poll(120) else None
            return results
        finally:
            self.process.join(10)
            if self.process.is_alive():
                self.process.kill()
                self.process.join()
            self._conn.close()


# -- SIPp ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SippRun:
    """What one SIPp process did."""

    successful: int
    failed: int
    cpu_seconds: float
    invites: dict[str, float]
    """Caller number (digits) -> wall-clock time the scenario logged for its INVITE."""


SPEECH_FILE: Final = "speech.alaw"
"""What the caller says, streamed by SIPp (see the caller's scenario)."""


def write_speech(path: Path) -> None:
    """The speech of SIPp's ``g711a.pcap`` as headerless A-law, for SIPp's RTP stream."""
    packets = (
        RtpPacket.parse(datagram.payload) for datagram in read_udp(SIPP_PCAP_DIR / "g711a.pcap")
    )
    path.write_bytes(b"".join(packet.payload for packet in packets))


class Sipp:
    """One SIPp process of the benchmark, in a working directory of its own.

    A caller (``remote`` given) places ``calls`` calls at ``rate`` per second
    from the numbers in ``callers``; a buyer answers ``calls`` calls.
    """

    def __init__(
        self,
        workdir: Path,
        scenario: Path,
        *,
        port: int,
        calls: int,
        pause_ms: int,
        remote: tuple[str, int] | None = None,
        rate: float = 0.0,
        callers: Sequence[str] = (),
    ) -> None:
        """Start SIPp at once."""
        workdir.mkdir(parents=True)
        prepare_pcap_dir(workdir / "pcap")
        self.workdir = workdir
        self.port = port
        command = ["sipp", "-sf", str(scenario)]
        if remote is not None:
            write_speech(workdir / SPEECH_FILE)
            command.append(f"{remote[0]}:{remote[1]}")
            (workdir / "callers.csv").write_text(
                "SEQUENTIAL\n" + "".join(f"{number};\n" for number in callers)
            )
            command += ["-inf", "callers.csv", "-r", f"{rate:g}", "-s", NUMBER]
        command += [
            "-i", LOOPBACK, "-p", str(port),
            "-mi", LOOPBACK, "-mp", str(free_port_block(4)),
            "-m", str(calls), "-d", str(pause_ms),
            "-nostdin", "-timeout", f"{calls / max(rate, 1.0) + 60:.0f}s",
            "-trace_logs", "-log_file", "invites.log",
            "-trace_stat", "-stf", "stats.csv",
            "-trace_err", "-error_file", "errors.log",
        ]  # fmt: skip
        with (workdir / "stderr.txt").open("wb") as stderr:  # SIPp holds its own copy
            self.process = subprocess.Popen(
                command,
                cwd=workdir,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                start_new_session=True,
            )

    def wait_listening(self, timeout: float = 5.0) -> None:
        """Return once SIPp has bound its SIP port."""
        deadline = time.monotonic() + timeout
        while not udp_port_in_use(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"SIPp did not start; see {self.workdir}")
            time.sleep(0.02)

    def finish(self, timeout: float) -> SippRun:
        """Wait for SIPp to exit (stopping it after ``timeout`` s), then read its traces.

        SIPp is reaped here with ``wait4``, whose resource usage is its CPU time.
        """
        deadline = time.monotonic() + timeout
        stopping = False
        while True:
            pid, status, usage = os.wait4(self.process.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                if stopping:
                    self.process.kill()
                else:
                    self.process.terminate()
                    stopping, deadline = True, time.monotonic() + 5
            time.sleep(0.05)
        self.process.returncode = os.waitstatus_to_exitcode(status)
        stats = last_row(self.workdir / "stats.csv")
        return SippRun(
            successful=int(stats.get("SuccessfulCall(C)", 0)),
            failed=int(stats.get("FailedCall(C)", 0)),
            cpu_seconds=usage.ru_utime + usage.ru_stime,
            invites=_invites(self.workdir / "invites.log"),
        )

    def kill(self) -> None:
        """Stop SIPp if it still runs."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _invites(path: Path) -> dict[str, float]:
    """The ``invite <seconds> <microseconds> <number>`` lines of a scenario's log."""
    invites: dict[str, float] = {}
    if not path.is_file():
        return invites
    for line in path.read_text(errors="replace").splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[0] == "invite":
            invites.setdefault(parts[3].lstrip("+"), float(parts[1]) + float(parts[2]) / 1e6)
    return invites


# -- runs ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One run of calls: SIPp's view, the server's CPU and the post-dial delays."""

    rate: float
    calls: int
    caller: SippRun
    buyer: SippRun
    wall_seconds: float
    server_cpu_seconds: float | None
    """None when SIPp called SIPp directly (the baseline)."""
    post_dial: list[float]
    """Seconds from the caller's INVITE out to the buyer's INVITE in, call by call."""

    @property
    def completed(self) -> int:
        """Calls whose whole scenario SIPp's caller completed."""
        return self.caller.successful

    @property
    def achieved_rate(self) -> float:
        """Calls per second SIPp's caller actually started (from its INVITE times)."""
        times = sorted(self.caller.invites.values())
        if len(times) < 2 or times[-1] == times[0]:
            return 0.0
        return (len(times) - 1) / (times[-1] - times[0])

    @property
    def cpu_per_call(self) -> float:
        """CPU seconds per completed call of the server (or of SIPp's buyer, directly)."""
        cpu = self.buyer.cpu_seconds if self.server_cpu_seconds is None else self.server_cpu_seconds
        return cpu / max(self.completed, 1)

    @property
    def core_share(self) -> float:
        """Share of one core the server (or SIPp's buyer) used during the run."""
        cpu = self.buyer.cpu_seconds if self.server_cpu_seconds is None else self.server_cpu_seconds
        return cpu / self.wall_seconds

    def sustained(self) -> bool:
        """No call failed, the rate asked was kept and the server was not saturated."""
        return (
            self.caller.failed == 0
            and self.completed == self.calls
            and self.achieved_rate >= 0.95 * self.rate
            and self.core_share < SATURATED
        )


class Bench:
    """Places runs of calls, through a server or SIPp to SIPp, in one temporary directory."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.buyer_port = free_port()
        self._runs = 0
        self._numbers = 0

    def write_configuration(self) -> Path:
        """The server's configuration, its buyers at :attr:`buyer_port`."""
        path = self.workdir / "callwhisper.yaml"
        uri = f"sip:buyer@{LOOPBACK}:{self.buyer_port}"
        path.write_text(json.dumps(configuration(uri)))  # JSON is YAML
        return path

    def run(self, rate: float, calls: int, server: ServerProcess | None) -> Step:
        """Place ``calls`` calls at ``rate`` through ``server``, or straight to the buyer."""
        self._runs += 1
        directory = self.workdir / f"run-{self._runs}-{'server' if server else 'direct'}-{rate:g}"
        numbers = caller_numbers(calls, self._numbers)
        self._numbers += calls
        buyer = Sipp(
            directory / "buyer",
            BUYER_SCENARIO,
            port=self.buyer_port,
            calls=calls,
            pause_ms=LISTEN_MS,
        )
        caller: Sipp | None = None
        try:
            buyer.wait_listening()
            # Straight to the buyer, the caller's 200 comes at the answer: it stays on
            # until the key press is over, as it would through callwhisper.
            hold = HOLD_MS if server else LISTEN_MS + DTMF_MS + HOLD_MS + 100
            start_cpu = server.cpu_seconds() if server else 0.0
            started = time.monotonic()
            caller = Sipp(
                directory / "caller",
                CALLER_SCENARIO,
                port=free_port(),
                calls=calls,
                pause_ms=hold,
                remote=server.address if server else (LOOPBACK, self.buyer_port),
                rate=rate,
                callers=numbers,
            )
            caller_run = caller.finish(calls / rate + 60)
            buyer_run = buyer.finish(10)
            time.sleep(0.3)  # the server's last store writes of the run
            wall = time.monotonic() - started
            server_cpu = server.cpu_seconds() - start_cpu if server else None
        finally:
            buyer.kill()
            if caller is not None:
                caller.kill()
        delays = [
            buyer_run.invites[number] - sent
            for number, sent in caller_run.invites.items()
            if number in buyer_run.invites
        ]
        return Step(rate, calls, caller_run, buyer_run, wall, server_cpu, delays)

    def server(self, *, probe: bool) -> ServerProcess:
        """A fresh server on a fresh store, warmed up with :data:`WARM_UP_CALLS` calls."""
        self._runs += 1
        directory = self.workdir / f"server-{self._runs}"
        directory.mkdir()
        server = ServerProcess(directory, self.write_configuration(), probe=probe)
        try:
            warm = self.run(LATENCY_RATE, WARM_UP_CALLS, server)
            if warm.completed < WARM_UP_CALLS * 0.9:
                raise RuntimeError(f"warm-up: only {warm.completed} calls completed")
            if probe:
                server.forget_calls()
        except BaseException:
            server.stop()
            raise
        return server


# -- report ----------------------------------------------------------------------------------


def ms(value: float) -> str:
    """Seconds as milliseconds for the tables."""
    return f"{value * 1000:.2f} ms"


def report_post_dial(direct: Step, through: Step) -> None:
    """Post-dial delay through callwhisper, SIPp to SIPp, and what we add."""
    base_p50 = percentile(direct.post_dial, 0.5)
    rows = (("SIPp to SIPp (baseline)", direct), ("through callwhisper", through))
    for label, step in rows:
        print(
            f"  {label:<24} n={len(step.post_dial):<5} p50 {ms(percentile(step.post_dial, 0.5))}"
            f"  p99 {ms(percentile(step.post_dial, 0.99))}"
            f"  ({step.completed}/{step.calls} calls completed)"
        )
    added_p50 = percentile(through.post_dial, 0.5) - base_p50
    added_p99 = percentile(through.post_dial, 0.99) - base_p50
    verdict = "met" if added_p99 <= TARGET_PDD_P99_MS / 1000 else "NOT met"
    print(
        f"  added by callwhisper      p50 {ms(added_p50)}  p99 {ms(added_p99)}"
        f"  (x{percentile(through.post_dial, 0.99) / percentile(direct.post_dial, 0.99):.1f}"
        f" the baseline's p99); target p99 <= {TARGET_PDD_P99_MS:g} ms: {verdict}"
    )


def report_accept(results: ProbeResults | None) -> None:
    """Accept-to-bridge: the bridge itself, then the first packet relayed each way."""
    if results is None:
        print("  the probe reported nothing: NOT measured")
        return
    bridged = results.bridged
    print(
        f"  key -> bridge made (n={len(bridged)}/{results.keys} keys)"
        f"  p50 {ms(percentile(bridged, 0.5))}  p99 {ms(percentile(bridged, 0.99))}"
    )
    for direction in DIRECTIONS:
        arrived = results.next_packet[direction]
        relayed = results.first_relayed[direction]
        delay = results.relay_delay[direction]
        # A packet read between the key and the bridge is not relayed: the next one is.
        late = sum(1 for value in delay if value > 0.001)
        print(
            f"  {direction:<16} key -> next packet in (baseline) p50 {ms(percentile(arrived, 0.5))}"
            f" p99 {ms(percentile(arrived, 0.99))};  key -> first relayed (n={len(relayed)})"
            f" p50 {ms(percentile(relayed, 0.5))} p99 {ms(percentile(relayed, 0.99))};"
            f"  calls whose next packet came while bridging: {late}"
        )
    met = bool(bridged) and percentile(bridged, 0.99) <= TARGET_ACCEPT_P99_MS / 1000
    print(
        f"  target: bridge made within {TARGET_ACCEPT_P99_MS:g} ms of the key at p99:"
        f" {'met' if met else 'NOT met'}"
    )


def report_step(direct: Step, through: Step) -> None:
    """One row of the CPU ramp."""
    print(
        f"  {through.rate:>4g}/s  achieved {through.achieved_rate:6.1f}/s"
        f"  completed {through.completed:>5}/{through.calls:<5} failed {through.caller.failed:<4}"
        f"  server {through.core_share * 100:5.1f} % of a core"
        f"  {through.cpu_per_call * 1000:6.2f} ms CPU/call = {1 / through.cpu_per_call:6.0f}"
        f" setups/core-s  | SIPp UAS {direct.cpu_per_call * 1000:5.3f} ms/call"
        f" (x{through.cpu_per_call / max(direct.cpu_per_call, 1e-9):.0f})"
        f"  | PDD p50 {ms(percentile(through.post_dial, 0.5))}"
        f" p99 {ms(percentile(through.post_dial, 0.99))}"
        f"  load {load_average()}"
    )


def latency(bench: Bench) -> None:
    """Post-dial delay and accept-to-bridge at :data:`LATENCY_RATE` calls per second."""
    print(f"post-dial delay and accept-to-bridge at {LATENCY_RATE} calls/s, {LATENCY_CALLS} calls")
    print(f"  load average before: {load_average()}")
    server = bench.server(probe=True)
    try:
        direct = bench.run(LATENCY_RATE, LATENCY_CALLS, None)
        through = bench.run(LATENCY_RATE, LATENCY_CALLS, server)
    finally:
        results = server.stop()
    print(f"  load average after: {load_average()}")
    print("post-dial delay (caller INVITE out -> buyer INVITE in)")
    report_post_dial(direct, through)
    print("accept-to-bridge (buyer's key-1 packet read -> first packet relayed)")
    report_accept(results)


def ramp(bench: Bench) -> None:
    """CPU per completed whisper flow at rising rates, until a step is not sustained."""
    print(f"call setups per core-second, {STEP_SECONDS:g} s per step")
    server = bench.server(probe=False)
    best: Step | None = None
    try:
        for rate in RAMP:
            calls = int(rate * STEP_SECONDS)
            direct = bench.run(rate, calls, None)
            through = bench.run(rate, calls, server)
            report_step(direct, through)
            if not through.sustained():
                print("  not sustained: the ramp stops here")
                break
            best = through
    finally:
        server.stop()
    if best is None:
        print(f"  no step was sustained; target >= {TARGET_SETUPS:g} setups/core-s: NOT met")
        return
    setups = 1 / best.cpu_per_call
    verdict = "met" if setups >= TARGET_SETUPS else "NOT met"
    print(
        f"  highest sustained step {best.rate:g}/s: {setups:.0f} setups per core-second;"
        f" target >= {TARGET_SETUPS:g}: {verdict}"
    )


def main() -> None:
    """The latency run, then the CPU ramp, each against SIPp calling SIPp."""
    missing = [tool for tool in ("sipp", "espeak-ng") if shutil.which(tool) is None]
    if missing:
        print(f"skipped: needs {' and '.join(missing)} (Debian: sip-tester, espeak-ng)")
        return
    print(f"  counters: {counters_mode()} ({COUNTERS_ENV})")
    with tempfile.TemporaryDirectory(prefix="callwhisper-bench-sip-") as workdir:
        bench = Bench(Path(workdir))
        latency(bench)
        ramp(bench)


if __name__ == "__main__":
    main()
