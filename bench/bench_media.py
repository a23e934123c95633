"""Benchmark: the media engine relaying bridged G.711 calls, against a bare relay.

For each number of concurrent calls, a load generator written in C
(``bench/rtp_phones.c``, compiled with ``gcc`` on first use) plays both
phones of every call on loopback: a 172-byte RTP packet every 20 ms each way,
so 100 packets/s through the relay per call. Four relays carry them in turn:

* ``bare``: the baseline, in this process on the same event loop as the
  engine: per leg an ``add_reader`` drain loop forwarding datagrams unchanged;
* ``engine``: the engine's bridged legs (latching, statistics, renumbering
  onto each leg's stream), on the loop the server uses (uvloop when
  installed);
* ``C``: ``bench/udp_relay.c``, the least a relay with one socket per leg
  does (epoll, one recvfrom and one sendto per packet): the kernel's price on
  this machine, which no relay in any language avoids;
* ``kernel``: the engine with kernel forwarding on (nftables: needs root or
  CAP_NET_ADMIN, else the run says why and is skipped). Each leg is latched
  on its phone before the phones start, as the phone's first packet would
  do, and the run starts once the kernel forwards every call: it measures
  calls long past their bridge, not the hand-over.

Reported per relay: loss; transit time through the relay (send time carried
in the payload, arrival stamped by the kernel) at p50, p99 and p99.9; the
RFC 3550 interarrival jitter seen by the receivers; and the relay's CPU: its
process's user and system time while the phones send, plus half the
machine's softirq time meanwhile. On loopback the kernel delivers each
datagram to its receiver in softirq context, charged to no process; half of
the deliveries are the relay's packets to the phones, the other half the
phones' to the relay. Kernel forwarding delivers each packet once, rewritten
on the way straight to the other phone: all the softirq time is charged to
it, the same one delivery per packet as the others (an upper bound: a call
without any relay would pay that delivery too). Calls per core = 1,000,000
/ (100 x microseconds of relay CPU per packet). Nothing is pinned: on a shared machine a pinned
process waits for its CPU while the other one idles.

The generator reports how late it sent (packets more than 1 ms behind their
schedule): a run where it often fell behind measured the generator as much as
the relay, and says so.
Run with ``python -m bench media``, or ``python bench/bench_media.py 2000
3000`` for chosen call counts; about 30 s per call count.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TypeVar

from callwhisper.engine import PCMU, MediaConfig, MediaEngine
from callwhisper.engine.media import Bridge, MediaLeg
from callwhisper.errors import ConfigError
from callwhisper.media.rtp import RtpPacket

CALL_COUNTS = (100, 500, 1000, 2000, 3000)
SECONDS = 5.0
HOST = "127.0.0.1"
PHONE_SOCKETS = 8
"""Sockets the phones share: the generator's cost, not the relay's, depends on it."""
PACKETS_PER_CALL = 100
"""Packets per second through the relay for one G.711 call at 20 ms, both ways."""
TARGET_LOSS = 0.1
"""Per cent: a call count "holds" when the relay loses less than this."""
QUEUE_LIMIT_US = 20_000
"""A median transit above this means packets wait in a standing queue: the relay is saturated
even if it loses nothing yet."""
LATE_LIMIT = 10.0
"""Per cent of packets sent over 1 ms behind schedule beyond which the phones, not the
relay, shaped the run (a burst after a stall)."""
HERE = Path(__file__).parent

Address = tuple[str, int]
CpuClock = Callable[[], float]
"""Seconds of CPU the relay has used so far."""


def build(source: str) -> Path:
    """Compile a C helper once per version of it and of this folder's headers; exit without gcc."""
    path = HERE / source
    versioned = b"".join(file.read_bytes() for file in [path, *sorted(HERE.glob("*.h"))])
    digest = hashlib.sha256(versioned).hexdigest()[:16]
    binary = Path(tempfile.gettempdir()) / f"callwhisper-bench-{digest}" / path.stem
    if binary.exists():
        return binary
    compiler = os.environ.get("CC", "gcc")
    if shutil.which(compiler) is None:
        sys.exit(f"the media benchmark compiles its helpers with {compiler}: install gcc")
    binary.parent.mkdir(parents=True, exist_ok=True)
    partial = binary.with_suffix(".partial")
    subprocess.run([compiler, "-O2", "-Wall", "-Wextra", "-o", str(partial), str(path)], check=True)
    partial.rename(binary)
    return binary


@dataclass(frozen=True)
class Helpers:
    """The compiled load generator and floor relay."""

    phones: Path
    relay: Path

    @classmethod
    def build(cls) -> Helpers:
        return cls(build("rtp_phones.c"), build("udp_relay.c"))


def _softirq_seconds() -> float:
    """The machine's softirq time so far from /proc/stat, 0.0 where that is not available."""
    with contextlib.suppress(OSError, IndexError, ValueError), Path("/proc/stat").open() as stat:
        return int(stat.readline().split()[7]) / os.sysconf("SC_CLK_TCK")
    return 0.0


@dataclass(frozen=True)
class RunResult:
    """One relay's figures at one call count."""

    calls: int
    phones: dict[str, float]
    """What the generator measured: ``sent``, ``received``, ``transit_p99_us``..."""
    relay_cpu: float
    """Seconds of the relay process's CPU while the phones were sending."""
    relay_softirq: float
    """The machine's softirq seconds meanwhile that deliver the relay's packets: half of them
    for a relay in a process, all for kernel forwarding."""
    wall: float

    @property
    def loss(self) -> float:
        """Per cent of the packets sent that never reached the other phone."""
        sent = self.phones["sent"]
        return 100 * (1 - self.phones["received"] / sent) if sent else 0.0

    @property
    def per_packet(self) -> float:
        """Microseconds of relay CPU (process and softirq) per packet relayed."""
        cpu = self.relay_cpu + self.relay_softirq
        return cpu / max(self.phones["received"], 1) * 1e6

    @property
    def calls_per_core(self) -> float:
        """Bridged calls one core relays at this cost per packet."""
        return 1e6 / (self.per_packet * PACKETS_PER_CALL)

    @property
    def late(self) -> float:
        """Per cent of packets the generator sent more than 1 ms behind schedule."""
        sent = self.phones["sent"]
        return 100 * self.phones["late"] / sent if sent else 0.0


class Phones:
    """The generator process: its sockets, then one run against the relay's ports."""

    def __init__(self, binary: Path, calls: int) -> None:
        self.process = subprocess.Popen(
            [str(binary), str(calls), str(SECONDS), str(PHONE_SOCKETS), HOST],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.calls = calls
        self.sockets = [(HOST, int(port)) for port in self._stdout.readline().split()]

    @property
    def _stdout(self) -> IO[str]:
        assert self.process.stdout is not None
        return self.process.stdout

    def phone(self, index: int) -> Address:
        """Address of phone ``index``: 2i is call i's caller, 2i + 1 its buyer."""
        return self.sockets[index % len(self.sockets)]

    def run(
        self,
        targets: list[Address],
        relay_cpu: CpuClock = time.process_time,
        softirq_share: float = 0.5,
    ) -> RunResult:
        """Send every phone's packets to its relay port; blocking, run it in a thread.

        ``relay_cpu`` is read when the phones start and stop sending; the
        default counts every thread of this process, the relay's loop too.
        ``softirq_share`` of the machine's softirq time is the relay's.
        """
        assert self.process.stdin is not None
        self.process.stdin.write(" ".join(str(port) for _, port in targets) + "\n")
        self.process.stdin.flush()
        figures: dict[str, float] = {}
        marks: dict[str, tuple[float, float, float]] = {}
        for line in self._stdout:
            word, _, value = line.strip().partition(" ")
            if word in ("start", "stop"):
                marks[word] = (relay_cpu(), _softirq_seconds() * softirq_share, time.monotonic())
            elif word == "end":
                break
            else:
                figures[word] = float(value)
        if self.process.wait() != 0 or set(marks) != {"start", "stop"}:
            raise RuntimeError("the phones failed; see their error output above")
        (cpu0, soft0, wall0), (cpu1, soft1, wall1) = marks["start"], marks["stop"]
        return RunResult(self.calls, figures, cpu1 - cpu0, soft1 - soft0, wall1 - wall0)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()


class BareRelay:
    """The baseline: per call two sockets, each forwarding what it reads to the other's phone."""

    def __init__(self) -> None:
        self.sockets: list[socket.socket] = []

    def open(self, phone_a: Address, phone_b: Address) -> tuple[Address, Address]:
        loop = asyncio.get_running_loop()
        a, b = (socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2))
        for sock in (a, b):
            sock.bind((HOST, 0))
            sock.setblocking(False)
            self.sockets.append(sock)
        loop.add_reader(a.fileno(), self._forward, a, b, phone_b)
        loop.add_reader(b.fileno(), self._forward, b, a, phone_a)
        return a.getsockname(), b.getsockname()

    @staticmethod
    def _forward(source: socket.socket, out: socket.socket, destination: Address) -> None:
        for _ in range(64):
            try:
                data = source.recv(2048)
            except BlockingIOError:
                return
            with contextlib.suppress(BlockingIOError):
                out.sendto(data, destination)

    def close(self) -> None:
        loop = asyncio.get_running_loop()
        for sock in self.sockets:
            loop.remove_reader(sock.fileno())
            sock.close()


Setup = Callable[[Phones], Awaitable[list[Address]]]


async def measure(
    helpers: Helpers, calls: int, setup: Setup, softirq_share: float = 0.5
) -> RunResult:
    """Start the phones, let ``setup`` open the relay for them, and run the calls."""
    phones = Phones(helpers.phones, calls)
    try:
        targets = await setup(phones)
        return await asyncio.to_thread(phones.run, targets, time.process_time, softirq_share)
    finally:
        phones.close()


async def run_baseline(helpers: Helpers, calls: int) -> RunResult:
    relay = BareRelay()

    async def setup(phones: Phones) -> list[Address]:
        targets: list[Address] = []
        for call in range(calls):
            targets.extend(relay.open(phones.phone(2 * call), phones.phone(2 * call + 1)))
        return targets

    try:
        return await measure(helpers, calls, setup)
    finally:
        relay.close()


async def run_engine(helpers: Helpers, calls: int) -> RunResult:
    engine = MediaEngine(MediaConfig(HOST, 20000, 60999))
    await engine.start()

    async def setup(phones: Phones) -> list[Address]:
        targets: list[Address] = []
        for call in range(calls):
            caller = engine.open_leg(PCMU, remote=phones.phone(2 * call))
            buyer = engine.open_leg(PCMU, remote=phones.phone(2 * call + 1))
            engine.bridge(caller, buyer)
            targets += [caller.local_address, buyer.local_address]
        return targets

    try:
        return await measure(helpers, calls, setup)
    finally:
        await engine.stop()


@dataclass(frozen=True)
class KernelRun:
    """The engine with kernel forwarding at one call count."""

    result: RunResult
    handover: float
    """Seconds from the first bridge until the kernel forwarded every call."""
    reached_engine: int
    """Packets that reached the engine's sockets all the same."""
    counted: int
    """Packets the kernel counted as forwarded, read as the engine took the calls back."""


HANDOVER_TIMEOUT = 60.0
_FIRST_PACKET = RtpPacket(0, 0, 0, 0, bytes(160)).serialize()


async def run_kernel(helpers: Helpers, calls: int) -> KernelRun | str:
    """The engine's bridges forwarded by the kernel; why not, where this host cannot."""
    engine = MediaEngine(MediaConfig(HOST, 20000, 60999, kernel_forwarding="on"))
    try:
        await engine.start()
    except ConfigError as exc:
        return str(exc)
    legs: list[MediaLeg] = []
    handover: list[float] = []

    async def setup(phones: Phones) -> list[Address]:
        loop = asyncio.get_running_loop()
        bridges: list[Bridge] = []
        started = time.monotonic()
        for call in range(calls):
            pair = [engine.open_leg(PCMU, remote=phones.phone(2 * call + n)) for n in (0, 1)]
            for leg in pair:
                assert leg.remote is not None
                # The phone's first packet would latch its leg: the kernel forwards latched peers.
                leg.incoming.receive(_FIRST_PACKET, leg.remote, loop.time())
            bridges.append(engine.bridge(*pair))
            legs.extend(pair)
        async with asyncio.timeout(HANDOVER_TIMEOUT):
            # The engine's state, not awaitable: the offloads complete in its worker thread.
            while not all(bridge.kernel_forwarded for bridge in bridges):  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        handover.append(time.monotonic() - started)
        return [leg.local_address for leg in legs]

    try:
        result = await measure(helpers, calls, setup, softirq_share=1.0)
    finally:
        await engine.stop()
    return KernelRun(
        result,
        handover[0],
        sum(leg.counters.packets_in for leg in legs),
        sum(leg.counters.kernel_forwarded for leg in legs),
    )


class FloorRelay:
    """``udp_relay``: its process, its ports, and its CPU clock."""

    def __init__(self, binary: Path, calls: int) -> None:
        self.process = subprocess.Popen(
            [str(binary), str(calls), HOST],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self._stdin, self._stdout = self.process.stdin, self.process.stdout
        self.ports = [int(port) for port in self._stdout.readline().split()]

    def connect(self, phones: Phones) -> list[Address]:
        """Give the relay the phones' addresses; the phones' targets."""
        ports = (phones.phone(index)[1] for index in range(2 * phones.calls))
        self._stdin.write(" ".join(map(str, ports)) + "\n")
        self._stdin.flush()
        if self._stdout.readline().strip() != "ready":
            raise RuntimeError("the C relay failed; see its error output above")
        return [(HOST, port) for port in self.ports]

    def cpu(self) -> float:
        self._stdin.write("cpu\n")
        self._stdin.flush()
        return float(self._stdout.readline())

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._stdin.write("quit\n")
            self._stdin.close()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._stdout.close()


def run_floor(helpers: Helpers, calls: int) -> RunResult:
    relay = FloorRelay(helpers.relay, calls)
    phones = Phones(helpers.phones, calls)
    try:
        return phones.run(relay.connect(phones), relay.cpu)
    finally:
        phones.close()
        relay.close()


Result = TypeVar("Result")


def _run(coroutine: Awaitable[Result]) -> Result:
    """Run on the loop ``callwhisper serve`` uses: uvloop when installed."""

    async def main() -> Result:
        return await coroutine

    try:
        import uvloop
    except ImportError:
        return asyncio.run(main())
    result: Result = uvloop.run(main())
    return result


def loop_name() -> str:
    try:
        import uvloop
    except ImportError:
        return "asyncio default loop"
    return f"uvloop {getattr(uvloop, '__version__', '')}".strip()


def report(label: str, result: RunResult) -> None:
    """Print one relay's figures at one call count."""
    p = result.phones
    cpu = 100 * result.relay_cpu / result.wall
    softirq = 100 * result.relay_softirq / result.wall
    phones_cpu = 100 * (p["cpu_user_seconds"] + p["cpu_system_seconds"]) / result.wall
    warnings = []
    if result.late > LATE_LIMIT:
        warnings.append("the phones fell behind: this run measured them as much as the relay")
    if p["phones_dropped"]:
        warnings.append(f"{p['phones_dropped']:.0f} dropped by the phones' full buffers")
    print(
        f"  {label:<6} {p['sent'] / SECONDS:>7.0f} pkt/s  loss {result.loss:6.3f} %  "
        f"transit p50 {p['transit_p50_us']:>6.0f} p99 {p['transit_p99_us']:>6.0f} "
        f"p99.9 {p['transit_p999_us']:>6.0f} us  jitter {p['jitter_us']:>6.0f} us  "
        f"CPU {cpu:5.1f} % + softirq {softirq:4.1f} % = {result.per_packet:5.2f} us/pkt "
        f"({result.calls_per_core:5.0f} calls/core)  phones CPU {phones_cpu:4.1f} %, "
        f"{result.late:4.1f} % late" + "".join(f"; {warning}" for warning in warnings),
        flush=True,
    )


def compare(label: str, relay: RunResult, baseline: RunResult, floor: RunResult) -> None:
    """Print a relay's cost and jitter against the other relays of the same call count."""
    queued = relay.phones["transit_p50_us"] > QUEUE_LIMIT_US
    holds = relay.loss < TARGET_LOSS and not queued
    print(
        f"  {label}: x{relay.per_packet / baseline.per_packet:.2f} the bare relay's CPU per "
        f"packet (x{relay.per_packet / floor.per_packet:.2f} the C floor's), jitter "
        f"{relay.phones['jitter_us'] - baseline.phones['jitter_us']:+.0f} us against the bare "
        f"relay; {relay.calls} calls "
        + ("hold" if holds else "do not hold")
        + f" (loss < {TARGET_LOSS} %, median transit < {QUEUE_LIMIT_US / 1000:.0f} ms)",
        flush=True,
    )


def _raise_file_limit(calls: int) -> None:
    """Each call needs two relay sockets: lift the soft limit on open files as needed."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = 4 * calls + 256
    if soft < needed and (hard == resource.RLIM_INFINITY or hard >= needed):
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def main(argv: list[str] | None = None) -> None:
    """Relay each call count with the bare relay, the engine, the C floor and the kernel."""
    counts = [int(arg) for arg in argv] if argv else list(CALL_COUNTS)
    helpers = Helpers.build()
    load = os.getloadavg()[0]
    print(
        f"bridged G.711 calls, 20 ms packets both ways, {SECONDS:.0f} s per run, {loop_name()}, "
        f"{os.cpu_count()} CPUs, load average {load:.2f}",
        flush=True,
    )
    for calls in counts:
        _raise_file_limit(calls)
        print(f"{calls} calls", flush=True)
        baseline = _run(run_baseline(helpers, calls))
        report("bare", baseline)
        engine = _run(run_engine(helpers, calls))
        report("engine", engine)
        floor = run_floor(helpers, calls)
        report("C", floor)
        kernel = _run(run_kernel(helpers, calls))
        if isinstance(kernel, str):
            print(f"  kernel: not run: {kernel}", flush=True)
        else:
            report("kernel", kernel.result)
        compare("engine", engine, baseline, floor)
        if not isinstance(kernel, str):
            compare("kernel", kernel.result, baseline, floor)
            print(
                f"  kernel: every call forwarded {kernel.handover:.2f} s after the first bridge; "
                f"{kernel.reached_engine} packets reached the engine's sockets all the same; "
                f"it counted {kernel.counted} forwarded, the phones received "
                f"{kernel.result.phones['received']:.0f}",
                flush=True,
            )


if __name__ == "__main__":
    main(sys.argv[1:])
