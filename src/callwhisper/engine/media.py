"""The RTP media engine: one UDP socket per leg, playback from the shared clock, bridging.

Hot path: on Linux every leg's socket is in one ``epoll`` set, itself a
single reader of the event loop; each readiness event reads exactly one
datagram (the set is level-triggered, so a socket with more waiting is
reported again), which spares the loop's per-socket callback and the
exception of the empty read that ends a drain loop. Elsewhere each socket is
a loop reader drained a few datagrams at a time. A relayed packet goes from
the reader of one leg straight to the socket of the other, rewritten in
place onto that leg's outgoing stream; it never waits for the clock. Plain
audio from the latched peer (the common case) takes a short path,
:meth:`_Route.forward`; everything else (DTMF, RTCP, bad or unexpected
packets) the general one, :meth:`MediaLeg._receive`.

Everything a leg *plays* (ringback, whisper, silence) is sent from the one
shared :class:`~callwhisper.engine.clock.MediaClock`.

With ``kernel_forwarding`` on, a bridge that only relays (no recording, no
transcoding) is handed to the kernel once both peers have sent and any key
press begun before it has ended (:mod:`callwhisper.engine.offload`): its
packets are then forwarded by nftables rules without reaching us. The
sockets stay open and read; whatever the kernel does not forward (a
stranger, a peer that moved) still arrives here, and the bridge comes back
to user space when it ends, a peer holds or moves, or the kernel stops
forwarding it.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import logging
import os
import select
import socket
import struct
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final, Literal, Protocol

from callwhisper.audio import FRAME_SAMPLES, Codec
from callwhisper.engine.clock import PTIME, MediaClock
from callwhisper.engine.nftables import KernelForwardingUnavailable, NftablesForwarder
from callwhisper.engine.offload import (
    KERNEL_FORWARDING_MODES,
    Done,
    Forwarded,
    KernelForwarding,
    LegState,
    Offload,
    Refusal,
    Removed,
    plan,
)
from callwhisper.engine.playback import LegCodec, Playback, PlaybackSource, silence_frame
from callwhisper.engine.recording import BUYER, CALLER, CallRecorder, Channel
from callwhisper.errors import ConfigError, LocalProtocolError, RtpError
from callwhisper.media.dtmf import DigitStarted, DtmfReceiver
from callwhisper.media.g711 import ALAW_TO_ULAW, ULAW_TO_ALAW, alaw_encode, ulaw_encode
from callwhisper.media.rtp import (
    RTCP_PACKET_TYPES,
    RTP_HEADER_SIZE,
    IncomingStream,
    OutgoingStream,
    RtpPacket,
    is_rtcp,
)
from callwhisper.media.tones import RingbackStyle, ToneSource, ringback

__all__ = [
    "Bridge",
    "DigitReceived",
    "EpollPoller",
    "KernelForwarder",
    "LegCounters",
    "LegRecording",
    "LegStats",
    "LoopPoller",
    "MediaConfig",
    "MediaEngine",
    "MediaEvent",
    "MediaLeg",
    "PlaybackFinished",
    "PortAllocator",
]

log = logging.getLogger(__name__)

Address = tuple[str, int]

MAX_DATAGRAM: Final = 1500
"""Largest RTP datagram accepted: one Ethernet MTU; G.711 at 20 ms is 172 bytes."""
_DRAIN_BATCH: Final = 64
"""Datagrams read per loop reader callback, so one busy leg cannot starve the others."""
_MAX_EVENTS: Final = 256
"""Readiness events handled per epoll reader callback: a bounded slice of the loop's time."""
_PLAIN_RTP: Final = 0x80
"""First octet of RTP version 2 without padding, extension or CSRCs: payload at octet 12."""
_SEQ_TS_SSRC: Final = struct.Struct("!HII")
_NONBLOCK: Final[int] = getattr(socket, "SOCK_NONBLOCK", 0)
"""Where the system has it (Linux), a socket is created non-blocking: one system call less."""
RECORDING_FLUSH_INTERVAL: Final = 0.5
"""Seconds between two writes of the recordings in progress."""
OFFLOAD_CHECK_INTERVAL: Final = 0.2
"""Seconds between two looks at the bridges waiting for kernel forwarding."""
LEAK_GRACE: Final = 1.0
"""Seconds after the kernel took a bridge over during which packets from its peers may still
reach us: those that were queued on the sockets before."""
LEAK_PACKETS: Final = 50
"""Packets from a latched peer that reach us after :data:`LEAK_GRACE` before the kernel is
deemed to have stopped forwarding the bridge (one second of 20 ms audio)."""


@dataclass(frozen=True, slots=True)
class MediaConfig:
    """Where the engine opens its RTP sockets."""

    address: str = "127.0.0.1"
    """Local address of every RTP socket (the address put in our SDP)."""
    port_min: int = 20000
    """Lowest RTP port; rounded up to even (RFC 3550 11: RTP on even ports)."""
    port_max: int = 30000
    """Highest RTP port (inclusive)."""
    relatch_after: int | None = None
    """Consecutive packets from a new address that move the latch; None never moves it."""
    kernel_forwarding: KernelForwarding = "off"
    """Whether bridged calls are forwarded by the kernel (nftables, needs CAP_NET_ADMIN):
    ``off``; ``auto``, where the host allows it, else in user space after one warning; ``on``,
    or the engine does not start."""

    def __post_init__(self) -> None:
        """Reject an empty or out-of-range port range or an unknown forwarding mode."""
        if not 0 < self.port_min <= self.port_max <= 65535:
            raise ValueError(f"invalid RTP port range {self.port_min}-{self.port_max}")
        if self.kernel_forwarding not in KERNEL_FORWARDING_MODES:
            raise ValueError(
                f"kernel_forwarding must be one of {', '.join(KERNEL_FORWARDING_MODES)}, "
                f"not {self.kernel_forwarding!r}"
            )


class PortAllocator:
    """Hands out the even ports of a range round-robin, so a port just freed rests a while."""

    def __init__(self, low: int, high: int) -> None:
        """Use the even ports in ``low``-``high`` inclusive."""
        self.low = low + (low & 1)
        self.high = high
        if self.low > high:
            raise ValueError(f"no even port in {low}-{high}")
        self._next = self.low

    @property
    def size(self) -> int:
        """Number of even ports in the range."""
        return (self.high - self.low) // 2 + 1

    def candidates(self) -> Iterator[int]:
        """Every port of the range once, starting after the last one handed out."""
        for _ in range(self.size):
            port = self._next
            self._next = port + 2 if port + 2 <= self.high else self.low
            yield port


@dataclass(frozen=True, slots=True)
class DigitReceived:
    """A DTMF key press (RFC 4733) started on a leg: reported at once, for barge-in."""

    leg: str
    digit: str
    at: float
    """Loop time of the event's first packet."""


@dataclass(frozen=True, slots=True)
class PlaybackFinished:
    """A playback started with :meth:`MediaLeg.play` has played its last frame."""

    leg: str
    playback: int
    at: float


MediaEvent = DigitReceived | PlaybackFinished
EventHandler = Callable[[MediaEvent], None]


@dataclass(slots=True)
class LegCounters:
    """Live packet counters of one leg."""

    packets_in: int = 0
    """Datagrams read from the socket, good or bad."""
    packets_out: int = 0
    """Datagrams handed to the kernel."""
    malformed: int = 0
    """Dropped: not RTP version 2, truncated, oversized or a bad telephone-event."""
    rejected: int = 0
    """Dropped: from an address other than the latched one."""
    rtcp: int = 0
    """RTCP received (consumed, not relayed: each leg is its own RTP session)."""
    unknown_payload: int = 0
    """Dropped: a payload type that was not negotiated."""
    send_failed: int = 0
    """Not sent: no destination yet, socket buffer full or a socket error."""
    kernel_forwarded: int = 0
    """Datagrams from the peer that the kernel forwarded to the other leg's peer without us
    (kernel forwarding), added when the engine takes the bridge back."""


@dataclass(frozen=True, slots=True)
class LegStats:
    """A snapshot of a leg's counters and reception statistics."""

    packets_in: int
    packets_out: int
    malformed: int
    rejected: int
    rtcp: int
    unknown_payload: int
    send_failed: int
    kernel_forwarded: int
    lost: int
    """Packets missing by sequence number from the current source (RFC 3550 A.3)."""
    jitter_ms: float
    """Interarrival jitter of the current source (RFC 3550 A.8)."""


@dataclass(slots=True)
class _Route:
    """How packets received on one leg of a bridge reach the other leg."""

    source: MediaLeg
    target: MediaLeg
    source_encoding: Codec
    source_pt: int
    """The source's audio payload type."""
    audio_pt: int | None
    """The target's audio payload type where it differs from the source's, else None."""
    event_pt: int | None
    """The target's telephone-event payload type, None to drop events (not negotiated)."""
    translate: bytes | None
    """G.711 transcoding table when the laws differ."""
    recorder: CallRecorder | None
    channel: Channel
    fast: bool
    """Whether plain audio may take :meth:`forward`: the source's latch never moves and its
    audio payload type cannot be mistaken for RTCP (RFC 5761 4)."""
    held_event: int | None = None
    """RTP timestamp of an event begun before the bridge: the rest of it is not relayed."""
    held_seen: float = 0.0
    """Loop time of the held event's last packet, or of the bridge: until it has been quiet
    for a while, the kernel must not take over (it would relay the rest)."""
    offloaded: bool = False
    """Whether the kernel forwards this direction: what still reaches us is watched."""

    def forward(self, data: bytes, address: Address, now: float) -> bool:
        """Relay plain audio from the latched peer; False leaves the datagram to the general path.

        The same outcome as :meth:`MediaLeg._receive` and :meth:`audio` for
        the common packet (RTP version 2 without padding, extension or CSRCs,
        the source's audio payload type, from the latched address) with
        fewer checks and copies: the hot path of a bridged call.
        """
        if (
            not self.fast
            or not RTP_HEADER_SIZE <= len(data) <= MAX_DATAGRAM
            or data[0] != _PLAIN_RTP
            or data[1] & 0x7F != self.source_pt
        ):
            return False
        source = self.source
        incoming = source.incoming
        if address != incoming.latched:
            return False
        seq, ts, ssrc = _SEQ_TS_SSRC.unpack_from(data, 2)
        source.counters.packets_in += 1
        incoming.count(seq, ts, ssrc, now)
        if self.recorder is not None:
            self.recorder.add(
                self.channel, ssrc, ts, data[RTP_HEADER_SIZE:], self.source_encoding, now
            )
        packet = bytearray(data)
        target = self.target
        target.outgoing.rewrite(packet, now)
        if self.audio_pt is not None:
            packet[1] = (packet[1] & 0x80) | self.audio_pt
        if self.translate is not None:
            packet[RTP_HEADER_SIZE:] = packet[RTP_HEADER_SIZE:].translate(self.translate)
        target._send(packet)
        return True

    def audio(self, data: bytes, now: float) -> None:
        if self.recorder is not None:
            _record(self.recorder, self.channel, data, self.source_encoding, now)
        target = self.target
        target._send(
            target.outgoing.relay(data, now, payload_type=self.audio_pt, translate=self.translate)
        )

    def event(self, data: bytes, now: float) -> None:
        if self.event_pt is None:
            return
        # The accept key's own updates and end packets come after the bridge it caused:
        # relayed, they would reach the caller as a key press (call-flow.md 1.2).
        if self.held_event is not None and int.from_bytes(data[4:8]) == self.held_event:
            self.held_seen = now
            return
        target = self.target
        target._send(target.outgoing.relay(data, now, payload_type=self.event_pt))


def _leg_state(leg: MediaLeg) -> LegState:
    route = leg._route
    assert route is not None
    return LegState(
        port=leg.local_address[1],
        peer=leg.incoming.latched,
        sends=leg._sends,
        codec=leg.codec,
        key_press_seen=None if route.held_event is None else route.held_seen,
    )


def _name(bridge: Bridge) -> str:
    return f"the bridge of {bridge.caller.ident} and {bridge.buyer.ident}"


def _record(
    recorder: CallRecorder, channel: Channel, data: bytes, encoding: Codec, now: float
) -> None:
    """Queue the audio of a datagram the general path accepted, whatever its header holds."""
    packet = RtpPacket.parse(data)
    recorder.add(channel, packet.ssrc, packet.timestamp, packet.payload, encoding, now)


def _route(
    source: MediaLeg,
    target: MediaLeg,
    recorder: CallRecorder | None,
    channel: Channel,
    held_event: int | None,
    now: float,
) -> _Route:
    translate: bytes | None = None
    if source.codec.encoding != target.codec.encoding:
        translate = ULAW_TO_ALAW if source.codec.encoding == "PCMU" else ALAW_TO_ULAW
    audio_pt = target.codec.payload_type
    source_pt = source.codec.payload_type
    return _Route(
        source=source,
        target=target,
        source_encoding=source.codec.encoding,
        source_pt=source_pt,
        audio_pt=None if audio_pt == source_pt else audio_pt,
        event_pt=target.codec.telephone_event,
        translate=translate,
        recorder=recorder,
        channel=channel,
        fast=_fast(source),
        held_event=held_event,
        held_seen=now,
    )


def _fast(source: MediaLeg) -> bool:
    """Whether the plain audio of ``source`` may take :meth:`_Route.forward`."""
    return (
        source.incoming.relatch_after is None
        and (source.codec.payload_type | 0x80) not in RTCP_PACKET_TYPES
    )


class _Recorded:
    """Something whose recording is fed on the loop and written by worker threads."""

    def __init__(self, recorder: CallRecorder | None) -> None:
        self.recorder = recorder
        self.lock = asyncio.Lock()
        """Serializes the worker-thread writes of the recording."""
        self._closed = asyncio.Event()
        self._error: BaseException | None = None

    def _drop_recorder(self) -> None:
        """Feed the recording no more: a write failed, its file keeps what was written."""
        self.recorder = None

    def _set_closed(self, error: BaseException | None = None) -> None:
        self._error = error
        self._closed.set()

    async def wait_closed(self) -> None:
        """Wait until it is torn down and its recording is written and closed.

        Raises the error that prevented the recording from being completed, if any.
        """
        await self._closed.wait()
        if self._error is not None:
            raise self._error


KernelState = Literal["waiting", "installing", "active", "idle"]
"""A bridge and kernel forwarding: the engine asks the planner every
:data:`OFFLOAD_CHECK_INTERVAL` (``waiting``), the forwarder adds its elements
(``installing``), the kernel forwards it (``active``), or it stays in user
space for good (``idle``)."""


class _Kernel:
    """Where one bridge stands with kernel forwarding."""

    __slots__ = ("cancelled", "leaked", "offload", "retry", "since", "state")

    def __init__(self) -> None:
        self.state: KernelState = "waiting"
        self.offload: Offload | None = None
        """The elements in the kernel or on their way there."""
        self.cancelled = False
        """Taken back while installing: remove the elements once they are in."""
        self.retry = False
        """After a removal, wait to be forwarded again (a peer held or moved)."""
        self.since = 0.0
        """Loop time the kernel took over."""
        self.leaked = 0
        """Packets from the latched peers that reached us after :data:`LEAK_GRACE`."""


class Bridge(_Recorded):
    """Two legs relaying RTP to each other, optionally recorded (caller left, buyer right)."""

    def __init__(self, caller: MediaLeg, buyer: MediaLeg, recorder: CallRecorder | None) -> None:
        """Created by :meth:`MediaEngine.bridge`."""
        super().__init__(recorder)
        self.caller = caller
        self.buyer = buyer
        self._kernel: _Kernel | None = None

    @property
    def kernel_forwarded(self) -> bool:
        """Whether the kernel forwards the bridge's packets now (they no longer reach us)."""
        return self._kernel is not None and self._kernel.state == "active"

    def _drop_recorder(self) -> None:
        super()._drop_recorder()
        for leg in (self.caller, self.buyer):
            # Torn down while its write failed, a leg may be in another bridge by now.
            if leg.bridge is self and leg._route is not None:
                leg._route.recorder = None


class LegRecording(_Recorded):
    """What one leg receives, recorded alone into a mono WAV (a caller's voicemail)."""

    def __init__(self, leg: MediaLeg, recorder: CallRecorder) -> None:
        """Created by :meth:`MediaEngine.record`."""
        super().__init__(recorder)
        self.leg = leg


ReadHandler = Callable[[float], bool]
"""Reads and handles one datagram of a socket at loop time ``now``; False if none waited."""


class _Poller(Protocol):
    """Watches the legs' sockets for the engine and calls their read handler."""

    def register(self, fd: int, read: ReadHandler) -> None: ...

    def unregister(self, fd: int) -> None: ...

    def close(self) -> None: ...


class LoopPoller:
    """One loop reader per socket, draining up to :data:`_DRAIN_BATCH` datagrams: any loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        """Use ``loop``'s ``add_reader``."""
        self._loop = loop

    def register(self, fd: int, read: ReadHandler) -> None:
        """Call ``read`` while ``fd`` has datagrams, from the next loop iteration."""
        self._loop.add_reader(fd, self._drain, read)

    def unregister(self, fd: int) -> None:
        """Stop watching ``fd``; call before closing it."""
        self._loop.remove_reader(fd)

    def close(self) -> None:
        """Nothing to release: the loop owns the readers."""

    def _drain(self, read: ReadHandler) -> None:
        now = self._loop.time()
        for _ in range(_DRAIN_BATCH):
            if not read(now):
                return


class EpollPoller:
    """One level-triggered epoll set for every media socket, one reader of the loop (Linux).

    Each readiness event reads one datagram, so a call costs the loop nothing
    per socket and no failed read ends a drain.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        """Create the epoll set and watch it from ``loop``."""
        self._loop = loop
        self._epoll = select.epoll()
        self._readers: dict[int, ReadHandler] = {}
        loop.add_reader(self._epoll.fileno(), self._on_ready)

    def register(self, fd: int, read: ReadHandler) -> None:
        """Call ``read`` once per readiness of ``fd``."""
        self._epoll.register(fd, select.EPOLLIN)
        self._readers[fd] = read

    def unregister(self, fd: int) -> None:
        """Stop watching ``fd``, which the caller closes next.

        Closing it takes it out of the set (epoll(7): the engine never
        duplicates a leg's socket), so no system call is spent here; an
        event of it already read is dropped.
        """
        self._readers.pop(fd, None)

    def close(self) -> None:
        """Stop watching the set and close it."""
        self._loop.remove_reader(self._epoll.fileno())
        self._epoll.close()

    def _on_ready(self) -> None:
        readers = self._readers
        now = self._loop.time()
        for fd, _ in self._epoll.poll(0, _MAX_EVENTS):
            read = readers.get(fd)
            if read is not None:
                read(now)


def _poller(loop: asyncio.AbstractEventLoop) -> _Poller:
    return EpollPoller(loop) if hasattr(select, "epoll") else LoopPoller(loop)


class KernelForwarder(Protocol):
    """Forwards bridges in the kernel (:class:`~callwhisper.engine.nftables.NftablesForwarder`)."""

    def install(self, offload: Offload, done: Done) -> None:
        """Start forwarding a bridge; returns at once."""

    def remove(self, offload: Offload, done: Removed) -> None:
        """Stop forwarding a bridge; returns at once."""

    async def close(self) -> None:
        """Stop forwarding everything."""


OpenForwarder = Callable[[str, int, int], Awaitable[KernelForwarder]]
"""Opens a forwarder for RTP to an address and port range; raises
:class:`~callwhisper.engine.nftables.KernelForwardingUnavailable` naming what is missing."""


class MediaLeg:
    """The RTP endpoint of one call leg: a UDP socket, our outgoing stream and the peer's.

    Created by :meth:`MediaEngine.open_leg`. Send towards :attr:`remote` (from
    the peer's SDP) until the peer's first packet latches its real address
    (symmetric RTP, RFC 4961).
    """

    __slots__ = (
        "_codec",
        "_engine",
        "_plain_pt",
        "_playback",
        "_route",
        "_sends",
        "_sock",
        "_tap",
        "bridge",
        "counters",
        "dtmf",
        "ident",
        "incoming",
        "local_address",
        "on_event",
        "outgoing",
        "remote",
    )

    def __init__(
        self,
        engine: MediaEngine,
        sock: socket.socket,
        ident: str,
        codec: LegCodec,
        remote: Address | None,
        on_event: EventHandler | None,
        relatch_after: int | None,
    ) -> None:
        """Wrap a bound non-blocking socket; use :meth:`MediaEngine.open_leg`."""
        self._engine = engine
        self._sock = sock
        self.ident = ident
        self.incoming = IncomingStream(relatch_after=relatch_after)
        self.codec = codec
        self.remote = remote
        self._sends = True
        self.on_event = on_event
        """Called with the leg's events (a key press, a playback's end); None drops them."""
        host, port = sock.getsockname()[:2]
        self.local_address: Address = (host, port)
        self.counters = LegCounters()
        # RFC 3550 5.1: random initial SSRC, sequence number and timestamp, drawn at once
        # from the system's generator (what ``secrets`` draws from).
        numbering = int.from_bytes(os.urandom(10))
        self.outgoing = OutgoingStream(
            numbering >> 48, (numbering >> 32) & 0xFFFF, numbering & 0xFFFFFFFF
        )
        self.dtmf = DtmfReceiver()
        self._playback: Playback | None = None
        self._route: _Route | None = None
        self._tap: LegRecording | None = None
        self.bridge: Bridge | None = None

    def __repr__(self) -> str:
        """Name the leg and its local port."""
        return f"<MediaLeg {self.ident} {self.local_address[0]}:{self.local_address[1]}>"

    @property
    def codec(self) -> LegCodec:
        """The leg's negotiated media format."""
        return self._codec

    @codec.setter
    def codec(self, codec: LegCodec) -> None:
        self._codec = codec
        # The audio payload type that may take the short path of :meth:`_receive`: none
        # (-1) where the latch may move or the type could be mistaken for RTCP.
        self._plain_pt = codec.payload_type if _fast(self) else -1

    @property
    def closed(self) -> bool:
        """Whether the leg's socket is closed."""
        return self._sock.fileno() < 0

    @property
    def destination(self) -> Address | None:
        """Where our packets go: the latched source of the peer's packets, else its SDP address."""
        return self.incoming.latched or self.remote

    @property
    def sends(self) -> bool:
        """False while the peer's SDP says sendonly or inactive (on hold).

        RFC 3264 6.1 forbids sending to it then; our stream's numbering still
        advances, as in a pause. A held bridge comes back from the kernel.
        """
        return self._sends

    @sends.setter
    def sends(self, sends: bool) -> None:
        self._sends = sends
        if not sends and self.bridge is not None:
            self._engine._take_back(self.bridge, retry=True)

    def set_remote(self, address: Address, *, relatch: bool = False) -> None:
        """Set the peer's address from its SDP; ``relatch`` after a re-INVITE moved it."""
        self.remote = address
        if relatch:
            self.incoming.unlatch()
            if self.bridge is not None:
                self._engine._take_back(self.bridge, retry=True)

    def stats(self) -> LegStats:
        """Counters and reception statistics at this moment."""
        reception = self.incoming.stats
        return LegStats(
            **asdict(self.counters),
            lost=reception.lost,
            jitter_ms=reception.jitter * 1000 / self.incoming.clock_rate,
        )

    # -- playback -------------------------------------------------------------------

    @property
    def playing(self) -> int | None:
        """The identifier of the playback in progress, if any."""
        return None if self._playback is None else self._playback.ident

    def play(self, source: PlaybackSource, *, loop: bool = False) -> int:
        """Play a prompt, payloads in this leg's codec or a tone from the next clock tick.

        Replaces any playback in progress (without a :class:`PlaybackFinished`
        for it). Returns the identifier reported in :class:`PlaybackFinished`.
        Raises :class:`LocalProtocolError` on a bridged or closed leg.
        """
        if self.bridge is not None:
            raise LocalProtocolError(f"{self.ident} is bridged: unbridge it before playing")
        if self.closed:
            raise LocalProtocolError(f"{self.ident} is closed")
        playback = Playback(self._engine._next_playback(), source, self._codec.encoding, loop=loop)
        self._playback = playback
        self._engine._playing[self] = None
        return playback.ident

    def play_silence(self, seconds: float) -> int:
        """Play G.711 silence for ``seconds`` (rounded up to whole 20 ms frames)."""
        count = max(1, -int(-seconds // PTIME))
        return self.play([silence_frame(self._codec.encoding)] * count)

    def play_ringback(self, style: RingbackStyle = "north_america") -> int:
        """Play ringback in the leg's codec until stopped or bridged (call-flow.md 1.2)."""
        return self.play(self._engine._ringback(style, self._codec.encoding))

    def stop_playback(self) -> None:
        """Stop the playback in progress, if any, without reporting it finished."""
        self._playback = None
        self._engine._playing.pop(self, None)

    def _tick(self, now: float) -> None:
        playback = self._playback
        if playback is None:
            self._engine._playing.pop(self, None)
            return
        frame = playback.next_frame()
        if frame is None:
            self.stop_playback()
            self._emit(PlaybackFinished(self.ident, playback.ident, now))
            return
        # RFC 3551 4.1: the marker bit starts a talkspurt; the receiver resynchronises.
        self._send(
            self.outgoing.send(
                frame, self._codec.payload_type, now,
                samples=FRAME_SAMPLES, marker=playback.frames_played == 1,
            )
        )  # fmt: skip

    # -- socket I/O -----------------------------------------------------------------

    def _send(self, packet: bytes | bytearray) -> None:
        if not self._sends:
            return
        destination = self.incoming.latched or self.remote
        if destination is None:
            self.counters.send_failed += 1
            return
        try:
            self._sock.sendto(packet, destination)
        except OSError:
            # Buffer full (EAGAIN) or an ICMP error: RTP tolerates a lost packet.
            self.counters.send_failed += 1
            return
        self.counters.packets_out += 1

    def _read(self, now: float) -> bool:
        """Read and handle one datagram; False when none was waiting."""
        try:
            data, address = self._sock.recvfrom(MAX_DATAGRAM + 1)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            # Linux reports a previous send's ICMP error here; the next read goes on.
            return True
        route = self._route
        if route is None or not route.forward(data, address, now):
            if route is not None and route.offloaded:
                self._receive_offloaded(data, address, now)
            else:
                self._receive(data, address, now)
        return True

    def _receive_offloaded(self, data: bytes, address: Address, now: float) -> None:
        """Handle as usual what reached us though the kernel forwards the bridge; watch it."""
        latched = self.incoming.latched
        self._receive(data, address, now)
        bridge = self.bridge
        route = self._route
        if bridge is None or route is None or not route.offloaded:
            return  # the event handler ended the bridge
        if self.incoming.latched != latched:
            # The peer moved (relatch_after): the kernel would go on with the old address.
            self._engine._take_back(bridge, retry=True)
        elif address == latched:
            self._engine._leaked(bridge, now)

    def _receive(self, data: bytes, address: Address, now: float) -> None:
        counters = self.counters
        counters.packets_in += 1
        incoming = self.incoming
        if (
            RTP_HEADER_SIZE <= len(data) <= MAX_DATAGRAM
            and data[0] == _PLAIN_RTP
            and data[1] & 0x7F == self._plain_pt
            and address == incoming.latched
        ):
            # Plain audio from the latched peer, the common packet: what the general path
            # below does with it, without its checks (a leg waiting for its bridge reads
            # and drops its peer's audio here).
            seq, ts, ssrc = _SEQ_TS_SSRC.unpack_from(data, 2)
            incoming.count(seq, ts, ssrc, now)
            route = self._route
            if route is not None:
                route.audio(data, now)
            elif self._tap is not None and self._tap.recorder is not None:
                self._tap.recorder.add(
                    CALLER, ssrc, ts, data[RTP_HEADER_SIZE:], self._codec.encoding, now
                )
            return
        if len(data) > MAX_DATAGRAM:
            counters.malformed += 1
            return
        try:
            if not self.incoming.receive(data, address, now):
                counters.rejected += 1
                return
            if is_rtcp(data):
                counters.rtcp += 1
                return
            payload_type = data[1] & 0x7F
            route = self._route
            if payload_type == self._codec.payload_type:
                if route is not None:
                    route.audio(data, now)
                elif self._tap is not None and self._tap.recorder is not None:
                    _record(self._tap.recorder, CALLER, data, self._codec.encoding, now)
            elif payload_type == self._codec.telephone_event:
                self._receive_event(data, now)
                if route is not None:
                    route.event(data, now)
            else:
                counters.unknown_payload += 1
        except RtpError:
            counters.malformed += 1

    def _receive_event(self, data: bytes, now: float) -> None:
        for event in self.dtmf.receive(RtpPacket.parse(data), now):
            if isinstance(event, DigitStarted):
                self._emit(DigitReceived(self.ident, event.digit, now))

    def _emit(self, event: MediaEvent) -> None:
        if self.on_event is None:
            return
        try:
            self.on_event(event)
        except Exception:
            # The handler's bug must not break the reader callback or the shared clock.
            log.exception("media event handler failed on %r", event)

    def _close_socket(self) -> None:
        fd = self._sock.fileno()
        if fd >= 0:
            self._engine._poller.unregister(fd)
            self._sock.close()


class MediaEngine:
    """Owns every RTP leg of the process, the shared media clock and recording writes.

    Lifecycle: ``await start()`` on the loop that will serve the media, then
    :meth:`open_leg`, :meth:`bridge`... and finally ``await stop()``, which
    closes every leg, finishes every recording and cancels the engine's tasks.
    """

    def __init__(
        self, config: MediaConfig | None = None, *, open_forwarder: OpenForwarder | None = None
    ) -> None:
        """Prepare the engine; no socket is opened and no task started before :meth:`start`.

        ``open_forwarder`` replaces nftables as the kernel forwarder.
        """
        self.config = config or MediaConfig()
        self._open_forwarder: OpenForwarder = open_forwarder or NftablesForwarder.open
        self._forwarder: KernelForwarder | None = None
        self._waiting: dict[Bridge, None] = {}
        self.ports = PortAllocator(self.config.port_min, self.config.port_max)
        self.clock = MediaClock(self._tick)
        self.legs: dict[str, MediaLeg] = {}
        self.bridges: set[Bridge] = set()
        self.recordings: set[LegRecording] = set()
        self._playing: dict[MediaLeg, None] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._watcher: _Poller | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._playback_ids = 0
        self._ringbacks: dict[tuple[RingbackStyle, Codec], ToneSource] = {}
        self._leg_ids = 0

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The loop the engine runs on; raises if the engine is not started."""
        if self._loop is None:
            raise LocalProtocolError("media engine is not started")
        return self._loop

    @property
    def _poller(self) -> _Poller:
        if self._watcher is None:
            raise LocalProtocolError("media engine is not started")
        return self._watcher

    async def start(self) -> None:
        """Start the media clock and the recording writer on the running loop.

        With kernel forwarding ``on``, raises :class:`ConfigError` when the
        host or the process cannot do it (``auto`` logs why and goes on).
        """
        if self._loop is not None:
            raise LocalProtocolError("media engine already started")
        forwarder = await self._start_forwarder()
        self._loop = asyncio.get_running_loop()
        self._watcher = _poller(self._loop)
        self.clock.start()
        self._spawn(self._flush_recordings(), "media-recording-flush")
        if forwarder is not None:
            self._forwarder = forwarder
            self._spawn(self._watch_bridges(), "media-kernel-forwarding")

    async def _start_forwarder(self) -> KernelForwarder | None:
        config = self.config
        if config.kernel_forwarding == "off":
            return None
        try:
            return await self._open_forwarder(config.address, config.port_min, config.port_max)
        except KernelForwardingUnavailable as exc:
            if config.kernel_forwarding == "on":
                problem = f"media kernel forwarding is on but unavailable: {exc}"
                raise ConfigError([problem]) from exc
            log.warning("media kernel forwarding unavailable, relaying in user space: %s", exc)
            return None

    async def stop(self, grace: float = 5.0) -> None:
        """Close every leg, wait up to ``grace`` seconds for recordings to close, cancel tasks."""
        if self._loop is None:
            return
        for leg in list(self.legs.values()):
            self.close_leg(leg)
        closing = [t for t in self._tasks if t.get_name().startswith("media-recording-close")]
        if closing:
            await asyncio.wait(closing, timeout=grace)
        await self.clock.stop()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._forwarder is not None:
            forwarder, self._forwarder = self._forwarder, None
            await forwarder.close()
        if self._watcher is not None:
            self._watcher.close()
            self._watcher = None
        self._loop = None

    def _spawn(self, coroutine: Coroutine[Any, Any, None], name: str) -> None:
        task = self.loop.create_task(coroutine, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _ringback(self, style: RingbackStyle, encoding: Codec) -> ToneSource:
        # One precomputed cadence period per style and law, shared by every caller.
        key = (style, encoding)
        source = self._ringbacks.get(key)
        if source is None:
            encode = ulaw_encode if encoding == "PCMU" else alaw_encode
            source = self._ringbacks[key] = ringback(style, encode=encode)
        return source

    def _next_playback(self) -> int:
        self._playback_ids += 1
        return self._playback_ids

    def _tick(self, now: float) -> None:
        for leg in list(self._playing):
            leg._tick(now)

    # -- legs -----------------------------------------------------------------------

    def open_leg(
        self,
        codec: LegCodec,
        *,
        remote: Address | None = None,
        on_event: EventHandler | None = None,
        name: str | None = None,
    ) -> MediaLeg:
        """Bind a socket on the next free even port and start reading it.

        Raises :class:`OSError` (``EADDRINUSE``) when every port of the range is taken.
        """
        poller = self._poller
        if name is None:
            self._leg_ids += 1
            name = f"leg-{self._leg_ids}"
        if name in self.legs:
            raise LocalProtocolError(f"a media leg named {name!r} is already open")
        sock = self._bind()
        leg = MediaLeg(self, sock, name, codec, remote, on_event, self.config.relatch_after)
        poller.register(sock.fileno(), leg._read)
        self.legs[name] = leg
        return leg

    def _bind(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.config.address else socket.AF_INET
        for port in self.ports.candidates():
            sock = socket.socket(family, socket.SOCK_DGRAM | _NONBLOCK)
            try:
                if not _NONBLOCK:
                    sock.setblocking(False)
                sock.bind((self.config.address, port))
            except OSError as exc:
                sock.close()
                if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                    continue
                raise
            return sock
        raise OSError(
            errno.EADDRINUSE,
            f"no free even RTP port in {self.config.port_min}-{self.config.port_max}",
        )

    def close_leg(self, leg: MediaLeg) -> None:
        """Stop the leg's playback, recording and bridge, and close its socket."""
        if leg.bridge is not None:
            self.unbridge(leg.bridge)
        if leg._tap is not None:
            self.stop_recording(leg._tap)
        leg.stop_playback()
        leg._close_socket()
        # The handler leads back to the call that owns the leg: dropping it lets the
        # call's objects go when the call does, not at the next full collection.
        leg.on_event = None
        self.legs.pop(leg.ident, None)

    # -- bridges --------------------------------------------------------------------

    def bridge(self, caller: MediaLeg, buyer: MediaLeg, *, record_to: Path | None = None) -> Bridge:
        """Connect two legs both ways from the next packet; record to ``record_to`` if given.

        Playbacks on both legs stop; each leg's outgoing stream goes on with
        the same SSRC and continuous numbering, the first relayed packet
        carrying the marker bit. Key presses are relayed, but not the rest of
        one begun before the bridge (the accept key that caused it).

        With kernel forwarding, an unrecorded bridge between legs of the same
        format goes to the kernel once both peers have sent and that key
        press is over (:attr:`Bridge.kernel_forwarded`): the kernel then
        relays the peers' packets unchanged, and key presses are no longer
        reported.
        """
        for leg in (caller, buyer):
            if leg.bridge is not None:
                raise LocalProtocolError(f"{leg.ident} is already bridged")
            if leg.closed:
                raise LocalProtocolError(f"{leg.ident} is closed")
        if caller is buyer:
            raise LocalProtocolError("cannot bridge a leg to itself")
        now = self.loop.time()
        recorder = None if record_to is None else CallRecorder(record_to, now)
        bridge = Bridge(caller, buyer, recorder)
        for leg in (caller, buyer):
            leg.stop_playback()
            leg.bridge = bridge
        caller._route = _route(caller, buyer, recorder, CALLER, caller.dtmf.last_timestamp, now)
        buyer._route = _route(buyer, caller, recorder, BUYER, buyer.dtmf.last_timestamp, now)
        self.bridges.add(bridge)
        if self._forwarder is not None:
            bridge._kernel = _Kernel()
            self._waiting[bridge] = None
        return bridge

    def unbridge(self, bridge: Bridge) -> None:
        """Stop relaying at once; the recording is finished in the background.

        Await :meth:`Bridge.wait_closed` to know the file is complete.
        """
        if bridge not in self.bridges:
            return
        self._take_back(bridge, retry=False)
        self.bridges.discard(bridge)
        for leg in (bridge.caller, bridge.buyer):
            leg._route = None
            leg.bridge = None
        if bridge.recorder is None:
            bridge._set_closed()
        else:
            self._spawn(
                self._close_recording(bridge), f"media-recording-close-{bridge.caller.ident}"
            )

    # -- kernel forwarding ----------------------------------------------------------

    async def _watch_bridges(self) -> None:
        while True:
            await asyncio.sleep(OFFLOAD_CHECK_INTERVAL)
            if self._waiting:
                self._offload(self.loop.time())

    def _offload(self, now: float) -> None:
        """Hand the waiting bridges that the planner accepts to the kernel."""
        forwarder = self._forwarder
        if forwarder is None:
            return
        for bridge in list(self._waiting):
            kernel = bridge._kernel
            assert kernel is not None
            decision = plan(
                _leg_state(bridge.caller),
                _leg_state(bridge.buyer),
                recorded=bridge.recorder is not None,
                now=now,
            )
            if isinstance(decision, Refusal):
                if decision.final:
                    del self._waiting[bridge]
                    kernel.state = "idle"
                    log.debug("%s stays in user space: %s", _name(bridge), decision.reason)
                continue
            del self._waiting[bridge]
            kernel.state = "installing"
            kernel.offload = decision
            forwarder.install(decision, functools.partial(self._installed, bridge))

    def _installed(self, bridge: Bridge, error: str | None) -> None:
        kernel = bridge._kernel
        assert kernel is not None
        if self._forwarder is None:
            return  # stopped meanwhile: the table is gone
        if error is not None:
            kernel.state = "idle"
            log.warning(
                "kernel forwarding of %s failed, relaying in user space: %s", _name(bridge), error
            )
            return
        if kernel.cancelled:
            kernel.cancelled = False
            kernel.state = "active"  # for the removal to undo
            self._take_back(bridge, retry=kernel.retry)
            return
        kernel.state = "active"
        kernel.since = self.loop.time()
        kernel.leaked = 0
        for leg in (bridge.caller, bridge.buyer):
            route = leg._route
            assert route is not None
            route.offloaded = True
            route.fast = False  # what still arrives takes the general path, which watches it
        log.debug("%s is forwarded by the kernel", _name(bridge))

    def _take_back(self, bridge: Bridge, *, retry: bool) -> None:
        """Relay ``bridge`` in user space again; with ``retry``, offload it again when it can."""
        kernel = bridge._kernel
        if kernel is None:
            return
        match kernel.state:
            case "waiting" if not retry:
                kernel.state = "idle"
                self._waiting.pop(bridge, None)
            case "installing":
                kernel.cancelled = True
                kernel.retry = retry
            case "active":
                for leg in (bridge.caller, bridge.buyer):
                    route = leg._route
                    if route is not None:
                        route.offloaded = False
                        route.fast = _fast(leg)
                assert kernel.offload is not None
                if self._forwarder is not None:
                    self._forwarder.remove(
                        kernel.offload, functools.partial(self._removed, bridge, kernel.offload)
                    )
                kernel.state = "idle"
                if retry and bridge in self.bridges:
                    kernel.state = "waiting"
                    self._waiting[bridge] = None

    @staticmethod
    def _removed(
        bridge: Bridge, offload: Offload, forwarded: Forwarded | None, error: str | None
    ) -> None:
        if forwarded is not None:
            bridge.caller.counters.kernel_forwarded += forwarded.caller
            bridge.buyer.counters.kernel_forwarded += forwarded.buyer
        if error is not None:
            # The kernel may go on relaying those ports until the engine stops.
            log.error(
                "kernel forwarding of %s could not be removed: %s; ports %d and %d",
                _name(bridge),
                error,
                offload.caller_port,
                offload.buyer_port,
            )

    def _leaked(self, bridge: Bridge, now: float) -> None:
        """A packet from a latched peer reached us though the kernel should have forwarded it."""
        kernel = bridge._kernel
        assert kernel is not None
        if now - kernel.since < LEAK_GRACE:
            return  # queued on the socket before the kernel took over
        kernel.leaked += 1
        if kernel.leaked >= LEAK_PACKETS:
            log.warning(
                "the kernel no longer forwards %s (its peers' packets reach the engine), "
                "relaying in user space",
                _name(bridge),
            )
            self._take_back(bridge, retry=False)

    # -- one leg recorded alone -----------------------------------------------------

    def record(self, leg: MediaLeg, path: Path) -> LegRecording:
        """Record the audio ``leg`` receives into a mono WAV at ``path``, from the next packet.

        Until :meth:`stop_recording` or the leg's close; only while the leg is
        not bridged (a bridge records both directions with ``record_to``).
        """
        if leg.closed:
            raise LocalProtocolError(f"{leg.ident} is closed")
        if leg._tap is not None:
            raise LocalProtocolError(f"{leg.ident} is already recorded")
        recording = LegRecording(leg, CallRecorder(path, self.loop.time(), channels=1))
        leg._tap = recording
        self.recordings.add(recording)
        return recording

    def stop_recording(self, recording: LegRecording) -> None:
        """Stop recording at once; the file is finished in the background (``wait_closed``)."""
        if recording not in self.recordings:
            return
        self.recordings.discard(recording)
        recording.leg._tap = None
        if recording.recorder is None:
            recording._set_closed()
        else:
            self._spawn(
                self._close_recording(recording), f"media-recording-close-{recording.leg.ident}"
            )

    async def _close_recording(self, recorded: _Recorded) -> None:
        async with recorded.lock:
            recorder = recorded.recorder
            if recorder is None:  # a write failed while we waited: the file is closed already
                recorded._set_closed()
                return
            try:
                await asyncio.to_thread(recorder.close, recorder.take(self.loop.time(), final=True))
            except Exception as exc:
                log.exception("closing recording %s failed", recorder.path)
                recorded._set_closed(exc)
            else:
                recorded._set_closed()

    async def _flush_recordings(self) -> None:
        while True:
            await asyncio.sleep(RECORDING_FLUSH_INTERVAL)
            await self._flush_all()

    async def _flush_all(self) -> None:
        # A frame of its own: the loop's variable must not keep the last call's bridge
        # (and its legs) alive while the flusher sleeps.
        for recorded in [*self.bridges, *self.recordings]:
            await self._flush_recording(recorded)

    async def _flush_recording(self, recorded: _Recorded) -> None:
        recorder = recorded.recorder
        if recorder is None:
            return
        async with recorded.lock:
            if recorded not in self.bridges and recorded not in self.recordings:
                return  # torn down while we waited; the close writes the rest
            try:
                await asyncio.to_thread(recorder.write, recorder.take(self.loop.time()))
            except Exception:
                log.exception("writing recording %s failed; recording stopped", recorder.path)
                recorded._drop_recorder()
                await asyncio.to_thread(recorder.abandon)
