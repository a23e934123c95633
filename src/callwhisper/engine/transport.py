"""asyncio SIP transports around the sans-I/O transaction layer (UDP, TCP and TLS).

The transports only move bytes: what arrives is fed to the core with its
source address and ``now`` (the loop's monotonic time); after every input the
:class:`SipEndpoint` sends what the core queued, hands its events to the
transaction user and keeps one timer handle armed no later than the core's
earliest deadline (``get_timer()`` / ``handle_timer(now)``), in the style of
aioquic's asyncio protocol.

Hostile input is bounded: datagrams over ``max_datagram`` bytes and
datagrams beyond a per-source rate are dropped and counted before any
parsing; a TCP stream that breaks framing is closed.

Outbound TCP (trunks that want it): :meth:`SipEndpoint.connect` opens a
connection to a destination, or reuses the one open; from then on whatever
the core sends to that address goes over TCP, and what arrives on the
connection is fed to the core as from that address. A connection that
closes is opened again on the next send (RFC 3261 18.1.1 / 18.2.2), the
messages waiting in a bounded backlog.

TLS (RFC 3261 26.2, ``sips:`` and ``transport=tls``) is the same stream
code over an :mod:`ssl` context: with a certificate configured the endpoint
listens on ``tls_port`` (5061) too, and ``connect(..., tls=True)`` opens a
TLS connection whose peer certificate is verified against the configured CA
file (else the system's) and the name asked for, unless verification is
turned off (:func:`client_tls_context`). The call legs ask the endpoint
for its TLS port (their Contact and Via name it), for our address on a
connection they opened (which names us when there is no listener) and
whether a connection to a peer is still open (:class:`TcpStreams`).

A response to a request that came over a connection which has since closed
is sent over a new connection to the port in the request's Via (RFC 3261
18.2.2, :func:`reconnect_target`), over TLS if the request came over TLS,
never over UDP. When a connection cannot
be opened, what waited for it is lost and the transaction layer is told
(17.1.4, 17.2.4), which reports ``TransactionFailed(reason="transport
error")`` to the transaction user.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import platform
import re
import socket
import ssl
import sys
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol

from callwhisper.errors import ConfigError, SipParseError
from callwhisper.sip.message import (
    SipMessage,
    SipResponse,
    StreamFramer,
    error_response,
    parse_message,
)
from callwhisper.sip.transaction import (
    Address,
    TransactionEvent,
    TransactionKey,
    client_key,
    server_key,
)

__all__ = [
    "SipCore",
    "SipEndpoint",
    "SourceRateLimiter",
    "StreamTarget",
    "TcpStreams",
    "TransportConfig",
    "TransportCounters",
    "client_tls_context",
    "reconnect_target",
    "server_tls_context",
]

log = logging.getLogger(__name__)

_DRAIN_BATCH: Final = 64
_READ_SIZE: Final = 65536
_MAX_WRITE_BUFFER: Final = 1 << 20
"""Bytes a TCP peer may leave unread before its connection is closed (it stopped reading)."""
_MAX_BACKLOG: Final = 64
"""Messages held for a TCP destination while its connection opens; more are dropped."""
_STREAM_PORTS: Final = {"TCP": 5060, "TLS": 5061}
"""Stream transports by Via sent-protocol, with their default port (RFC 3261 18.2.2, 19.1.2)."""
# A cheap filter before parsing: most responses go over UDP, and say so in every Via.
_STREAM_VIA: Final = re.compile(
    rb"\r\nVia:[ \t]*SIP[ \t]*/[ \t]*2\.0[ \t]*/[ \t]*(?:TCP|TLS)\b", re.IGNORECASE
)


@dataclass(frozen=True, slots=True)
class StreamTarget:
    """Where a stream connection goes: an address, and over TLS the name its certificate bears."""

    address: Address
    tls_name: str | None = None
    """None for plain TCP; else the host name (or address) the peer's certificate is checked for."""


def reconnect_target(data: bytes, source: Address) -> StreamTarget | None:
    """Where a response goes when the connection its request came on is gone, else None.

    RFC 3261 18.2.2: when the top Via names a stream transport, the server
    opens a new connection to the ``received`` address with the sent-by
    port (default 5060, 5061 for TLS). ``source`` is where the request came
    from: this stack does not write ``received`` into requests, and 18.2.1
    would put exactly that address there whenever it differs from the
    sent-by host; a ``received`` already in the request was written by the
    peer itself and is not followed. Over TLS the peer's certificate must
    name the sent-by host. None for a request, a response to a request that
    came over UDP, or bytes that do not parse.
    """
    if not data.startswith(b"SIP/2.0 ") or _STREAM_VIA.search(data) is None:
        return None
    try:
        via = parse_message(data).top_via
    except SipParseError:
        return None
    default = _STREAM_PORTS.get(via.transport)
    if default is None:
        return None
    tls_name = via.host.strip("[]") if via.transport == "TLS" else None
    return StreamTarget((source[0], via.port or default), tls_name)


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

    def transport_error(self, key: TransactionKey, *, server: bool = False) -> None:
        """The transport could not deliver a message of this transaction."""


class TcpStreams(Protocol):
    """Outbound TCP and TLS as the user agent asks for them (:class:`SipEndpoint` has them)."""

    @property
    def tls_port(self) -> int | None:
        """The port of our TLS listener, None without one (no certificate configured)."""

    async def connect(
        self, destination: Address, *, tls: bool = False, server_name: str | None = None
    ) -> Address:
        """Open (or reuse) a connection to ``destination``; our address on it.

        Raise OSError if it fails (over TLS: also a handshake or certificate
        that fails for ``server_name``).
        """
        ...

    def use_tcp(self, destination: Address) -> None:
        """Send to ``destination`` over TCP from now on, connecting when needed."""

    def use_tls(self, destination: Address, server_name: str | None = None) -> None:
        """Send to ``destination`` over TLS from now on, its certificate naming ``server_name``."""

    def connected(self, destination: Address) -> bool:
        """Whether a connection to ``destination`` (opened by either side) is open."""
        ...


@dataclass(frozen=True, slots=True)
class TransportConfig:
    """Where and how the SIP transports listen."""

    host: str = "127.0.0.1"
    """Local address of the UDP socket and the TCP listener."""
    port: int = 5060
    """Port for both UDP and TCP (0 picks a free one, for tests)."""
    max_datagram: int = 16384
    """Larger datagrams are dropped unparsed; real INVITEs with SDP are a few kilobytes."""
    rate_per_source: float = 2000.0
    """Datagrams per second accepted from one source host; the rest is a flood.

    A carrier sends every call from a few SBC addresses, and one whisper flow
    is about 7 datagrams from the caller's side and 7 from the buyer's: the
    default leaves room for some 280 calls per second from one host, beyond
    what one server sets up, while a flood from one host is still cut to it.
    """
    burst_per_source: int = 4000
    """Datagrams a source may send at once before the rate applies."""
    receive_buffer: int = 4 * 1024 * 1024
    """Bytes of SIP datagrams the kernel may hold for the UDP socket while the loop is busy.

    What arrives beyond it is dropped by the kernel before we see it, and a
    lost response costs a retransmission half a second later (Timer A, E or
    G) that a strict peer may take for a new request. The system's default
    (208 KiB on Linux) holds some 90 datagrams: about 60 ms of a load of 300
    calls per second, which one stall of the loop can exceed; 4 MiB holds
    seconds of it. Linux caps what an unprivileged process gets at
    ``net.core.rmem_max``; with ``CAP_NET_ADMIN`` the cap is passed. Less
    than asked is logged as a warning at start.
    """
    max_tcp_connections: int = 1024
    """Inbound connections beyond this are closed at once."""
    connect_timeout: float = 5.0
    """Seconds an outbound TCP connection (or a TLS handshake) may take before the send fails."""
    tls_port: int = 5061
    """Port of the TLS listener, opened when ``tls_certificate`` is set (0 picks a free one)."""
    tls_certificate: Path | None = None
    """PEM certificate (chain) shown to TLS peers, in and out; without it no TLS listener."""
    tls_key: Path | None = None
    """PEM private key of ``tls_certificate``; unset when the certificate file holds it."""
    tls_ca_file: Path | None = None
    """PEM CA certificates that outbound TLS peers are verified against; the system's when unset."""
    tls_verify: bool = True
    """Verify the certificate and name of the peers connected to over TLS (RFC 3261 26.3.1).

    Off, any certificate is accepted and TLS only hides the signalling from
    onlookers: for a test bed, never for a trunk on the internet.
    """


def _rcvbuf_force_option() -> int | None:
    """``SO_RCVBUFFORCE`` (Linux, socket(7)), which Python's socket module does not name."""
    named: int | None = getattr(socket, "SO_RCVBUFFORCE", None)
    if named is not None or sys.platform != "linux":
        return named
    # asm-generic's number, but for the architectures that number their socket options apart.
    return 0x100B if platform.machine().startswith(("alpha", "parisc", "sparc")) else 33


_SO_RCVBUFFORCE: Final = _rcvbuf_force_option()


def set_receive_buffer(sock: socket.socket, size: int, *, force: bool = True) -> int:
    """Ask for a receive buffer of ``size`` bytes; returns the bytes of datagrams it holds.

    With ``force`` (and where the system has it), ``SO_RCVBUFFORCE`` first,
    which passes ``net.core.rmem_max`` for a process with ``CAP_NET_ADMIN``;
    else, or when refused, ``SO_RCVBUF``, which the system caps. Linux
    reports twice what it grants (the other half is its bookkeeping, socket(7)):
    the figure returned is halved there, so that it compares with ``size``.
    """
    option = _SO_RCVBUFFORCE if force else None
    if option is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, option, size)
        except PermissionError:
            option = None
    if option is None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
    granted = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    return granted // 2 if sys.platform == "linux" else granted


def server_tls_context(config: TransportConfig) -> ssl.SSLContext | None:
    """The context of the TLS listener, None without a certificate.

    Raises :class:`ConfigError` naming the file that cannot be used.
    """
    if config.tls_certificate is None:
        if config.tls_key is not None:
            raise ConfigError([f"TLS key {config.tls_key}: no TLS certificate is configured"])
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    _load_certificate(context, config)
    return context


def client_tls_context(config: TransportConfig) -> ssl.SSLContext:
    """The context of outbound TLS connections: the peer's certificate is verified by default.

    It presents ``tls_certificate`` when set (peers that authenticate their
    clients, RFC 3261 26.3.2.2). Raises :class:`ConfigError` naming the file
    that cannot be used. Loading the system's CA certificates takes tens of
    milliseconds: call it off the event loop.
    """
    try:
        context = ssl.create_default_context(
            ssl.Purpose.SERVER_AUTH,
            cafile=None if config.tls_ca_file is None else str(config.tls_ca_file),
        )
    except (OSError, ValueError) as exc:
        raise ConfigError([f"TLS CA file {config.tls_ca_file}: {_reason(exc)}"]) from exc
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if not config.tls_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if config.tls_certificate is not None:
        _load_certificate(context, config)
    return context


def _load_certificate(context: ssl.SSLContext, config: TransportConfig) -> None:
    assert config.tls_certificate is not None
    try:
        context.load_cert_chain(config.tls_certificate, config.tls_key)
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        files = " and key ".join(str(p) for p in (config.tls_certificate, config.tls_key) if p)
        raise ConfigError([f"TLS certificate {files}: {_reason(exc)}"]) from exc


def _reason(exc: Exception) -> str:
    """What is wrong with a TLS file, in words (OpenSSL's say "PEM lib")."""
    if isinstance(exc, ssl.SSLError):
        return _SSL_REASONS.get(exc.reason or "", "not PEM, or without the matching private key")
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc)


_SSL_REASONS: Final = {
    "KEY_VALUES_MISMATCH": "the private key does not match the certificate",
    "NO_CERTIFICATE_OR_CRL_FOUND": "no PEM certificate in it",
}


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
    tcp_connects: int = 0
    """Outbound TCP (and TLS) connections opened."""
    tcp_connect_failed: int = 0
    """Outbound TCP (and TLS) connections that could not be opened (refused, unreachable,
    timed out, or a TLS handshake or certificate that failed)."""
    tcp_reconnects: int = 0
    """Responses sent towards a new connection because their request's connection closed."""


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
        # Tokens left and the time they were counted, by host, least recently seen first.
        self._buckets: OrderedDict[str, list[float]] = OrderedDict()

    def allow(self, host: str, now: float) -> bool:
        """Take one token for ``host``; False when its bucket is empty."""
        buckets = self._buckets
        bucket = buckets.get(host)
        if bucket is None:
            bucket = buckets[host] = [float(self.burst), now]
            if len(buckets) > self.max_sources:
                buckets.popitem(last=False)
        else:
            buckets.move_to_end(host)
        tokens = bucket[0] + (now - bucket[1]) * self.rate
        if tokens > self.burst:
            tokens = float(self.burst)
        bucket[1] = now
        if tokens < 1.0:
            bucket[0] = tokens
            return False
        bucket[0] = tokens - 1.0
        return True


class SipEndpoint:
    """Runs a SIP core on UDP, TCP and TLS sockets of the running loop.

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
        self._tls_server: asyncio.Server | None = None
        self._client_tls: asyncio.Future[ssl.SSLContext] | None = None
        self._streams: dict[Address, asyncio.StreamWriter] = {}
        self._stream_destinations: dict[Address, str | None] = {}
        """Addresses the transaction user reaches over TCP or TLS (:meth:`connect`,
        :meth:`use_tcp`), with the name a TLS peer's certificate must bear (None for TCP)."""
        self._connecting: dict[Address, asyncio.Future[None]] = {}
        self._backlog: dict[Address, list[bytes]] = {}
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

    @property
    def tls_address(self) -> Address:
        """The bound TLS listening address (with a certificate configured)."""
        if self._tls_server is None:
            raise RuntimeError("SIP endpoint has no TLS listener")
        host, port = self._tls_server.sockets[0].getsockname()[:2]
        return (host, port)

    @property
    def tls_port(self) -> int | None:
        """The port of the TLS listener, None without one."""
        return None if self._tls_server is None else self.tls_address[1]

    async def start(self) -> None:
        """Bind the UDP socket and the TCP listener on the configured address and port.

        With a certificate configured, also the TLS listener on ``tls_port``;
        a certificate, key or CA file that cannot be used raises
        :class:`ConfigError` before anything is opened. Without any TLS file
        configured, the outbound TLS context is made on the first TLS
        connection.
        """
        config = self.config
        loop = self._loop = asyncio.get_running_loop()
        server_tls = None
        if config.tls_certificate or config.tls_key or config.tls_ca_file:
            server_tls = await asyncio.to_thread(server_tls_context, config)
            client_tls = await asyncio.to_thread(client_tls_context, config)
            self._client_tls = loop.create_future()
            self._client_tls.set_result(client_tls)
        family = socket.AF_INET6 if ":" in self.config.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.bind((self.config.host, self.config.port))
        except OSError:
            sock.close()
            raise
        granted = set_receive_buffer(sock, config.receive_buffer)
        if granted < config.receive_buffer:
            log.warning(
                "SIP UDP receive buffer: %d bytes granted of %d asked; datagrams arriving"
                " while the server is busy beyond that are dropped (raise the sysctl"
                " net.core.rmem_max, or run with CAP_NET_ADMIN)",
                granted,
                config.receive_buffer,
            )
        self._udp = sock
        loop.add_reader(sock.fileno(), self._on_readable)
        port = sock.getsockname()[1]
        try:
            self._server = await asyncio.start_server(self._serve_tcp, self.config.host, port)
            if server_tls is not None:
                self._tls_server = await asyncio.start_server(
                    self._serve_tcp,
                    self.config.host,
                    self.config.tls_port,
                    ssl=server_tls,
                    ssl_handshake_timeout=self.config.connect_timeout,
                )
        except OSError:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Close the listener, every connection and the UDP socket; cancel the timer."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for server in (self._server, self._tls_server):
            if server is not None:
                server.close()
        for writer in list(self._streams.values()):
            writer.close()
        for pending in list(self._connecting.values()):
            pending.cancel()
        self._backlog.clear()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
        if self._tls_server is not None:
            await self._tls_server.wait_closed()
            self._tls_server = None
        if self._udp is not None and self._loop is not None:
            self._loop.remove_reader(self._udp.fileno())
            self._udp.close()
            self._udp = None

    # -- outbound TCP and TLS ----------------------------------------------------

    def use_tcp(self, destination: Address) -> None:
        """Send to ``destination`` over a stream from now on, opening a connection when needed.

        TCP, unless :meth:`connect` or :meth:`use_tls` chose TLS for it.
        """
        self._stream_destinations.setdefault(destination, None)

    def use_tls(self, destination: Address, server_name: str | None = None) -> None:
        """Send to ``destination`` over TLS from now on, its certificate naming ``server_name``
        (the address itself when None)."""
        self._stream_destinations[destination] = server_name or destination[0]

    async def connect(
        self, destination: Address, *, tls: bool = False, server_name: str | None = None
    ) -> Address:
        """Open a TCP (or TLS) connection to ``destination``, or reuse the open one.

        Later sends to ``destination`` use it. Over TLS the peer's
        certificate must name ``server_name`` (the host of the ``sips:`` URI;
        the address itself when None). Returns our address on the
        connection. Raises :class:`OSError` when the connection cannot be
        opened within ``connect_timeout``, or the TLS handshake or the
        certificate fails (the caller reports a transport error, RFC 3261
        8.1.3.1).
        """
        if tls:
            self.use_tls(destination, server_name)
        else:
            self.use_tcp(destination)
        writer = self._streams.get(destination)
        if writer is None or writer.is_closing():
            pending = self._connecting.get(destination)
            if pending is None:
                target = StreamTarget(destination, self._stream_destinations[destination])
                pending = self._open(target)
            await asyncio.shield(pending)
            writer = self._streams.get(destination)
            if writer is None:
                raise OSError(f"connection to {destination[0]}:{destination[1]} closed at once")
        local = writer.get_extra_info("sockname")
        return (local[0], local[1])

    def connected(self, destination: Address) -> bool:
        """Whether a connection to ``destination``, opened by either side, is open."""
        writer = self._streams.get(destination)
        return writer is not None and not writer.is_closing()

    def _open(self, target: StreamTarget) -> asyncio.Future[None]:
        """Start opening a connection to ``target``; one attempt per address at a time."""
        assert self._loop is not None
        destination = target.address
        opened: asyncio.Future[None] = self._loop.create_future()
        self._connecting[destination] = opened
        kind = "tcp" if target.tls_name is None else "tls"
        task = self._loop.create_task(
            self._run_outbound(target, opened),
            name=f"sip-{kind}-{destination[0]}:{destination[1]}",
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        # Nobody may await the attempt (a send opened it): its failure is counted, not raised.
        opened.add_done_callback(lambda done: done.cancelled() or done.exception())
        return opened

    async def _run_outbound(self, target: StreamTarget, opened: asyncio.Future[None]) -> None:
        destination = target.address
        kind = "TCP" if target.tls_name is None else "TLS"
        try:
            async with asyncio.timeout(self.config.connect_timeout):
                tls = None if target.tls_name is None else await self._client_context()
                reader, writer = await asyncio.open_connection(
                    destination[0],
                    destination[1],
                    ssl=tls,
                    server_hostname=target.tls_name,
                    ssl_handshake_timeout=None if tls is None else self.config.connect_timeout,
                )
        except (OSError, ConfigError) as exc:  # TimeoutError and ssl.SSLError included
            self._connecting.pop(destination, None)
            lost = self._backlog.pop(destination, [])
            self.counters.tcp_connect_failed += 1
            reason = str(exc) or "timed out"
            log.warning("SIP over %s to %s:%d failed: %s", kind, *destination, reason)
            if not opened.done():
                opened.set_exception(
                    OSError(f"{kind} to {destination[0]}:{destination[1]}: {reason}")
                )
            self._undelivered(lost)
            self.flush()
            return
        except asyncio.CancelledError:
            self._connecting.pop(destination, None)
            opened.cancel()
            raise
        self.counters.tcp_connects += 1
        self._connecting.pop(destination, None)
        self._streams[destination] = writer
        for data in self._backlog.pop(destination, []):
            self._write(writer, data, destination)
        opened.set_result(None)
        await self._read_stream(reader, writer, destination)

    async def _client_context(self) -> ssl.SSLContext:
        """The outbound TLS context, made once, in a thread (it reads the system's CAs)."""
        if self._client_tls is None:
            made = self._client_tls = asyncio.ensure_future(
                asyncio.to_thread(client_tls_context, self.config)
            )
            # Every connection waiting for it reports its failure; none may be left unread.
            made.add_done_callback(lambda done: done.cancelled() or done.exception())
        return await asyncio.shield(self._client_tls)

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
        task.add_done_callback(self._tasks.discard)
        self._streams[address] = writer
        await self._read_stream(reader, writer, address)

    async def _read_stream(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, address: Address
    ) -> None:
        """Feed a connection (either side opened it) to the core until it ends, then close it."""
        try:
            await self._feed_stream(reader, writer, address)
        except OSError as exc:
            # Reset by the peer, or (TLS) a record that does not decrypt: the stream has ended.
            log.debug("SIP connection with %s:%d ended: %s", *address, exc)
        finally:
            # Only this connection: another may have been registered for the address since.
            if self._streams.get(address) is writer:
                del self._streams[address]
            writer.close()
            with contextlib.suppress(OSError, asyncio.CancelledError):
                await writer.wait_closed()

    async def _feed_stream(
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
                        self._write(writer, answer, address)
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
            self._write(writer, data, destination)
            return
        if self._loop is not None:
            if destination in self._stream_destinations:
                self._send_stream(
                    data, StreamTarget(destination, self._stream_destinations[destination])
                )
                return
            elsewhere = reconnect_target(data, destination)
            if elsewhere is not None:
                self._reconnect(data, destination, elsewhere)
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

    def _send_stream(self, data: bytes, target: StreamTarget) -> None:
        """Write on the open connection to ``target``, else hold ``data`` while one opens."""
        destination = target.address
        writer = self._streams.get(destination)
        if writer is not None and not writer.is_closing():
            self._write(writer, data, destination)
            return
        backlog = self._backlog.setdefault(destination, [])
        if len(backlog) >= _MAX_BACKLOG:
            self.counters.send_failed += 1
            return
        backlog.append(data)
        if destination not in self._connecting:
            self._open(target)

    def _reconnect(self, data: bytes, source: Address, target: StreamTarget) -> None:
        """RFC 3261 18.2.2: the request's connection closed; its response takes a new one."""
        destination = target.address
        opening = destination in self._connecting or self.connected(destination)
        if (
            not opening
            and len(self._streams) + len(self._connecting) >= self.config.max_tcp_connections
        ):
            # The peer's Via chose the port: the connections it makes us open are bounded too.
            log.warning("SIP response to %s:%d lost: too many TCP connections", *source)
            self._undelivered([data])
            return
        log.info("SIP connection from %s:%d closed; answering on %s:%d", *source, *destination)
        self.counters.tcp_reconnects += 1
        self._send_stream(data, target)

    def _undelivered(self, messages: list[bytes]) -> None:
        """Tell the transaction layer of messages that could not be sent (17.1.4, 17.2.4).

        Its events reach the transaction user on the next :meth:`flush`.
        """
        self.counters.send_failed += len(messages)
        for data in messages:
            try:
                message = parse_message(data)
            except SipParseError:
                continue  # a 400 to an unparsable request: no transaction to tell
            if isinstance(message, SipResponse):
                self.core.transport_error(server_key(message, message.cseq.method), server=True)
            elif message.method != "ACK":
                self.core.transport_error(client_key(message))

    def _write(self, writer: asyncio.StreamWriter, data: bytes, destination: Address) -> None:
        writer.write(data)
        if writer.transport.get_write_buffer_size() > _MAX_WRITE_BUFFER:
            # The peer stopped reading: memory must not grow without bound. Aborted, not
            # closed: a graceful close would wait, holding the buffer, for a flush that never
            # comes.
            log.warning("SIP peer %s:%d does not read its TCP stream; dropping it", *destination)
            self.counters.send_failed += 1
            writer.transport.abort()

    def _arm_timer(self) -> None:
        deadline = self.core.get_timer()
        if deadline is None or self._loop is None:
            return
        armed = self._timer_deadline
        if self._timer is not None:
            # Most timers are stopped well before they are due (a response comes), so the
            # core's earliest deadline moves later with nearly every message. The handle
            # armed earlier then stays: it fires early, finds nothing due and is armed again
            # from there. Only an earlier deadline takes a new handle.
            if armed is not None and armed <= deadline:
                return
            self._timer.cancel()
        self._timer_deadline = deadline
        self._timer = self._loop.call_at(deadline, self._on_timer)
