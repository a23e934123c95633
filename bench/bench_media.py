"""Benchmark: the media engine relaying bridged G.711 calls, against a bare relay.

A separate process plays both phones of ``CALLS`` calls on loopback, each
phone sending a 172-byte RTP packet every 20 ms (50 packets/s each way per
call) for ``SECONDS`` seconds and timing every packet it receives. This
process relays them, first with the bare minimum (an ``add_reader`` drain
loop forwarding datagrams unchanged: the baseline) and then with the
engine's bridged legs (latching, statistics, renumbering onto each leg's
stream). Reported per relay: loss, transit time through the relay, RFC 3550
interarrival jitter seen by the receivers, and the relay process's CPU, with
the engine's figures as ratios of the baseline's. Loopback only, about 20 s.
The phones are one Python process: at a few hundred calls it saturates before
the relay does, and transit and jitter then measure the generator.
Run with ``python bench/bench_media.py`` or ``python -m bench media``.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import selectors
import socket
import statistics
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection

from callwhisper.engine import PCMU, MediaConfig, MediaEngine

CALLS = 100
SECONDS = 8.0
PTIME = 0.02
DRAIN = 0.5
_STAMP = struct.Struct("!d")  # send time on the shared monotonic clock, first payload bytes
_HEADER = struct.Struct("!BBHII")

Address = tuple[str, int]


@dataclass(frozen=True)
class PhoneResults:
    """What the phones measured: packets sent and received, transit times, jitter."""

    sent: int
    received: int
    transits: list[float]
    jitter: float
    """Mean over streams of the RFC 3550 A.8 interarrival jitter, in seconds."""


def run_phones(conn: Connection, calls: int, seconds: float) -> None:
    """Child process: bind 2 * ``calls`` phones, then send and receive for ``seconds``."""
    phones = []
    for _ in range(2 * calls):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        phones.append(sock)
    conn.send([sock.getsockname() for sock in phones])
    targets: list[Address] = conn.recv()
    selector = selectors.DefaultSelector()
    for index, sock in enumerate(phones):
        selector.register(sock, selectors.EVENT_READ, index)
    sent = received = 0
    transits: list[float] = []
    jitter = [0.0] * len(phones)
    last_transit: list[float | None] = [None] * len(phones)
    tail = b"\xff" * (160 - _STAMP.size)
    # Phones send at evenly spread phases of the 20 ms period, as independent calls do;
    # one burst of every packet per period would measure the burst, not the relay.
    count = len(phones)
    start = time.monotonic()
    end = start + seconds
    due = start
    turn = 0
    sequence = [0] * count
    while True:
        now = time.monotonic()
        while due <= now and due < end:
            seq = sequence[turn]
            header = _HEADER.pack(0x80, 0, seq & 0xFFFF, (seq * 160) & 0xFFFFFFFF, turn)
            try:
                phones[turn].sendto(header + _STAMP.pack(time.monotonic()) + tail, targets[turn])
                sent += 1
            except BlockingIOError:
                pass
            sequence[turn] = seq + 1
            turn = (turn + 1) % count
            due += PTIME / count
        if now > end + DRAIN:
            break
        for key, _ in selector.select(max(0.0, min(due, end + DRAIN) - now)):
            sock, index = phones[key.data], key.data
            while True:
                try:
                    data = sock.recv(2048)
                except BlockingIOError:
                    break
                arrival = time.monotonic()
                transit = arrival - _STAMP.unpack_from(data, 12)[0]
                received += 1
                transits.append(transit)
                previous = last_transit[index]
                if previous is not None:
                    jitter[index] += (abs(transit - previous) - jitter[index]) / 16
                last_transit[index] = transit
    selector.close()
    for sock in phones:
        sock.close()
    conn.send(PhoneResults(sent, received, transits, statistics.fmean(jitter)))


class BareRelay:
    """The baseline: per call two sockets, each forwarding what it reads to the other's phone."""

    def __init__(self) -> None:
        self.sockets: list[socket.socket] = []

    def open(self, phone_a: Address, phone_b: Address) -> tuple[Address, Address]:
        loop = asyncio.get_running_loop()
        a, b = (socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2))
        for sock in (a, b):
            sock.bind(("127.0.0.1", 0))
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


@dataclass(frozen=True)
class RunResult:
    """One relay's figures."""

    phones: PhoneResults
    cpu_seconds: float
    wall_seconds: float


async def measure(setup: Callable[[list[Address]], Awaitable[list[Address]]]) -> RunResult:
    """Start the phones, let ``setup`` open the relay for them, and time the run."""
    parent, child = multiprocessing.get_context("spawn").Pipe()
    process = multiprocessing.get_context("spawn").Process(
        target=run_phones, args=(child, CALLS, SECONDS)
    )
    process.start()
    try:
        phones: list[Address] = await asyncio.to_thread(parent.recv)
        targets = await setup(phones)
        cpu, wall = time.process_time(), time.monotonic()
        parent.send(targets)
        results: PhoneResults = await asyncio.to_thread(parent.recv)
        return RunResult(results, time.process_time() - cpu, time.monotonic() - wall)
    finally:
        await asyncio.to_thread(process.join, 10)
        parent.close()
        child.close()


async def run_baseline() -> RunResult:
    relay = BareRelay()

    async def setup(phones: list[Address]) -> list[Address]:
        targets: list[Address] = []
        for call in range(CALLS):
            targets.extend(relay.open(phones[2 * call], phones[2 * call + 1]))
        return targets

    try:
        return await measure(setup)
    finally:
        relay.close()


async def run_engine() -> RunResult:
    engine = MediaEngine(MediaConfig("127.0.0.1", 40000, 49998))
    await engine.start()

    async def setup(phones: list[Address]) -> list[Address]:
        targets: list[Address] = []
        for call in range(CALLS):
            caller = engine.open_leg(PCMU, remote=phones[2 * call])
            buyer = engine.open_leg(PCMU, remote=phones[2 * call + 1])
            engine.bridge(caller, buyer)
            targets += [caller.local_address, buyer.local_address]
        return targets

    try:
        return await measure(setup)
    finally:
        await engine.stop()


def report(label: str, result: RunResult, baseline: RunResult | None = None) -> None:
    """Print one relay's figures, and their ratio to ``baseline``."""
    phones = result.phones
    loss = 100 * (1 - phones.received / phones.sent) if phones.sent else 0.0
    ordered = sorted(phones.transits)
    p50 = ordered[len(ordered) // 2] * 1e6
    p99 = ordered[int(len(ordered) * 0.99)] * 1e6
    cpu = 100 * result.cpu_seconds / result.wall_seconds
    per_packet = result.cpu_seconds / max(phones.received, 1) * 1e6
    print(
        f"{label:<10} {phones.sent / SECONDS:>8.0f} pkt/s  loss {loss:5.2f} %  "
        f"transit p50 {p50:6.0f} us p99 {p99:6.0f} us  jitter {phones.jitter * 1e6:5.0f} us  "
        f"CPU {cpu:5.1f} % ({per_packet:.1f} us/packet)"
    )
    if baseline is not None:
        base = baseline.phones
        print(
            f"{'':<10} x{result.cpu_seconds / baseline.cpu_seconds:.2f} CPU, "
            f"x{p99 / (sorted(base.transits)[int(len(base.transits) * 0.99)] * 1e6):.2f} "
            f"transit p99, jitter {(phones.jitter - base.jitter) * 1e6:+.0f} us "
            "against the bare relay"
        )


def main() -> None:
    """Relay ``CALLS`` bridged calls with the bare relay, then with the engine, and compare."""
    print(f"{CALLS} bridged G.711 calls, 20 ms packets both ways, {SECONDS:.0f} s per relay")
    baseline = asyncio.run(run_baseline())
    report("bare relay", baseline)
    engine = asyncio.run(run_engine())
    report("engine", engine, baseline)


if __name__ == "__main__":
    main()
