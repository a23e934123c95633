"""asyncio SIP transports around the sans-I/O transaction layer (UDP and TCP).

The transports only move bytes: what arrives is fed to the core with its
source address and ``now`` (the loop's monotonic time); after every input the
:class:`SipEndpoint` sends what the core queued, hands its events to the
transaction user and re-arms one timer handle for the core's earliest
deadline (``get_timer()`` / ``handle_timer(now)``), in the style of aioquic's
asyncio protocol.

Hostile input is bounded: datagrams over ``max_datagram`` bytes and
datagrams beyond a per-source rate are dropped and counted before any
parsing; a TCP stream that breaks framing is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Protocol

from callwhisper.errors import SipParseError
from callwhisper.sip.message import SipMessage, StreamFramer, error_response, parse_message
from callwhisper.sip.transaction import Address, TransactionEvent

__all__ = [
    "SipCore",
    "SipEndpoint",
    "SourceRateLimiter",
    "TransportConfig",
    "TransportCounters",
]

log = logging.getLogger(__name__)

_DRAIN_BATCH: Final = 64
_READ_SIZE: Final = 65536


class SipCore(Protocol):
    """The part of :class:`~callwhisper.sip.transaction.TransactionLayer` a transport drives."""

    def receive_datagram(self, data: bytes, source: Address, now: float) -> None:
        """Feed one UDP datagram."""

    def receive_message(
        self, message: SipMessage, source: Address, now: float, *, reliable: bool = False
    ) -> None:
        """Feed one message framed from a stream."""

    def messages_to_send(self) -> list[tuple[bytes, Address]]:
        """Take the queued output."""
        ...

    def next_event(self) -> TransactionEvent | None:
        """Take the next event for the transaction user."""

    def get_timer(self) -> float | None:
        """The earliest deadline of the core."""

    def handle_timer(self, now: float) -> None:
        """Fire the timers due at ``now``."""


@dataclass(frozen=True, slots=True)
class TransportConfig:
    """Where and how the SIP transports listen."""

    host: str = "127.0.0.1"
    """Local address of the UDP socket and the TCP listener."""
    port: int = 5060
    """Port for both UDP and TCP (0 picks a free one, for tests)."""
    max_datagram: int = 16384
    """Larger datagrams are dropped unparsed; real INVITEs with SDP are a few kilobytes."""
    rate_per_source: float = 200.0
    """Datagrams per second accepted from one source host; the rest is a flood."""
    burst_per_source: int = 400
    """Datagrams a source may send at once before the rate applies."""
    max_tcp_connections: int = 1024
    """Inbound connections beyond this are closed at once."""


@dataclass(slots=True)
class TransportCounters:
    """Live counters of the SIP transports."""

    datagrams_in: int = 0
    datagrams_out: int = 0
    oversized: int = 0
    """Datagrams dropped for exceeding ``max_datagram``."""
    flooded: int = 0
    """Datagrams dropped by the per-source rate limit."""
    send_failed: int = 0
    tcp_messages_in: int = 0
    tcp_framing_errors: int = 0
    """Connections closed because their byte stream could not be framed."""
    tcp_refused: int = 0
    """Connections closed at once for exceeding ``max_tcp_connections``."""


class SourceRateLimiter:
    """A token bucket per source host, on a caller-supplied clock.

    The table keeps the ``max_sources`` most recently seen hosts: a flood of
    spoofed sources evicts old entries instead of growing memory.
    """

    def __init__(self, rate: float, burst: int, max_sources: int = 65536) -> None:
        """Allow ``rate`` datagrams per second per host after an initial ``burst``."""
        self.rate = rate
        self.burst = burst
        self.max_sources = max_sources
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def allow(self, host: str, now: float) -> bool:
        """Take one token for ``host``; False when its bucket is empty."""
        tokens, last = self._buckets.pop(host, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        allowed = tokens >= 1.0
        self._buckets[host] = (tokens - 1.0 if allowed else tokens, now)
        if len(self._buckets) > self.max_sources:
            self._buckets.popitem(last=False)
        return allowed


class SipEndpoint:
    """Runs a SIP core on UDP and TCP sockets of the running loop.

    ``on_event`` receives every transaction event; it may call the core's
    ``send_*`` methods, and must then call :meth:`flush` (it is called for it
    after each event batch this endpoint delivers).
    """

    def __init__(
        self,
        core: SipCore,
        on_event: Callable[[TransactionEvent], None],
        config: TransportConfig | None = None,
    ) -> None:
        """Prepare the endpoint; nothing is opened before :meth:`start`."""
        self.core = core
        self.config = config or TransportConfig()
        self.counters = TransportCounters()
        self._on_event = on_event
        self._limiter = SourceRateLimiter(self.config.rate_per_source, self.config.burst_per_source)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._udp: socket.socket | None = None
        self._server: asyncio.Server | None = None
        self._streams: dict[Address, asyncio.StreamWriter] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_deadline: float | None = None

    @property
    def udp_address(self) -> Address:
        """The bound UDP address (useful with port 0)."""
        if self._udp is None:
            raise RuntimeError("SIP endpoint is not started")
        host, port = self._udp.getsockname()[:2]
        return (host, port)

    @property
    def tcp_address(self) -> Address:
        """The bound TCP listening address."""
        if self._server is None:
            raise RuntimeError("SIP endpoint is not started")
        host, port = self._server.sockets[0].getsockname()[:2]
        return (host, port)

    async def start(self) -> None:
        """Bind the UDP socket and the TCP listener on the configured address and port."""
        loop = self._loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in self.config.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.bind((self.config.host, self.config.port))
        except OSError:
            sock.close()
            raise
        self._udp = sock
        loop.add_reader(sock.fileno(), self._on_readable)
        port = sock.getsockname()[1]
        try:
            self._server = await asyncio.start_server(self._serve_tcp, self.config.host, port)
        except OSError:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Close the listener, every connection and the UDP socket; cancel the timer."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._server is not None:
            self._server.close()
        for writer in list(self._streams.values()):
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
        if self._udp is not None and self._loop is not None:
            self._loop.remove_reader(self._udp.fileno())
            self._udp.close()
            self._udp = None

    # -- inputs ---------------------------------------------------------------------

    def _now(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    def _on_readable(self) -> None:
        sock = self._udp
        if sock is None:
            return
        counters = self.counters
        limit = self.config.max_datagram
        now = self._now()
        for _ in range(_DRAIN_BATCH):
            try:
                data, address = sock.recvfrom(limit + 1)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                continue  # an ICMP error from an earlier send
            counters.datagrams_in += 1
            if len(data) > limit:
                counters.oversized += 1
                continue
            source: Address = (address[0], address[1])
            if not self._limiter.allow(source[0], now):
                counters.flooded += 1
                continue
            self.core.receive_datagram(data, source, now)
        self.flush()

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._streams) >= self.config.max_tcp_connections:
            self.counters.tcp_refused += 1
            writer.close()
            return
        peer = writer.get_extra_info("peername")
        address: Address = (peer[0], peer[1])
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._streams[address] = writer
        try:
            await self._read_stream(reader, writer, address)
        finally:
            self._tasks.discard(task)
            self._streams.pop(address, None)
            writer.close()
            with contextlib.suppress(OSError, asyncio.CancelledError):
                await writer.wait_closed()

    async def _read_stream(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, address: Address
    ) -> None:
        framer = StreamFramer()
        while data := await reader.read(_READ_SIZE):
            try:
                messages = framer.feed(data)
            except SipParseError:
                # RFC 3261 18.3: without framing the rest of the stream is meaningless.
                self.counters.tcp_framing_errors += 1
                return
            now = self._now()
            for raw in messages:
                self.counters.tcp_messages_in += 1
                try:
                    message = parse_message(raw, stream=True)
                except SipParseError as exc:
                    answer = error_response(raw, exc)
                    if answer is not None:
                        writer.write(answer)
                    continue
                self.core.receive_message(message, address, now, reliable=True)
            self.flush()

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_deadline = None
        self.core.handle_timer(self._now())
        self.flush()

    # -- outputs --------------------------------------------------------------------

    def flush(self) -> None:
        """Send what the core queued, deliver its events, and re-arm the timer."""
        while True:
            for data, destination in self.core.messages_to_send():
                self._send(data, destination)
            event = self.core.next_event()
            if event is None:
                break
            try:
                self._on_event(event)
            except Exception:
                log.exception("SIP event handler failed on %r", event)
        self._arm_timer()

    def _send(self, data: bytes, destination: Address) -> None:
        writer = self._streams.get(destination)
        if writer is not None and not writer.is_closing():
            writer.write(data)
            return
        if self._udp is None:
            self.counters.send_failed += 1
            return
        try:
            self._udp.sendto(data, destination)
        except OSError as exc:
            # EAGAIN drops the datagram: the transaction layer retransmits on UDP.
            if exc.errno not in (errno.EAGAIN, errno.EWOULDBLOCK, errno.ECONNREFUSED):
                log.warning("SIP send to %s failed: %s", destination, exc)
            self.counters.send_failed += 1
            return
        self.counters.datagrams_out += 1

    def _arm_timer(self) -> None:
        deadline = self.core.get_timer()
        if deadline == self._timer_deadline:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_deadline = deadline
        if deadline is not None and self._loop is not None:
            self._timer = self._loop.call_at(deadline, self._on_timer)
