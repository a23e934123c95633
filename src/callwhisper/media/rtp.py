"""RTP (RFC 3550) packets and the per-leg stream state of the relay, sans-I/O.

* :class:`RtpPacket` parses and serializes one packet with exact errors.
* :func:`is_rtcp` tells RTCP from RTP on a multiplexed port (RFC 5761).
* :class:`OutgoingStream` owns our numbering towards one peer: locally played
  frames (ringback, whisper) and relayed packets (the other party) share one
  continuous sequence/timestamp space and one SSRC, with the marker bit set
  where the source changes.
* :class:`IncomingStream` latches the peer's address (symmetric RTP) and keeps
  reception statistics (RFC 3550 A.1, A.3, A.8).

The relay path works on raw ``bytes`` (:meth:`OutgoingStream.relay`,
:meth:`IncomingStream.receive`): a couple of ``struct`` calls per packet and no
object allocation besides the output buffer.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from callwhisper.errors import LocalProtocolError, RtpError

__all__ = [
    "RTCP_PACKET_TYPES",
    "RTP_HEADER_SIZE",
    "IncomingStream",
    "OutgoingStream",
    "ReceptionStats",
    "RtpExtension",
    "RtpPacket",
    "is_rtcp",
]

RTP_VERSION: Final = 2
RTP_HEADER_SIZE: Final = 12
"""Size of the fixed RTP header (RFC 3550 5.1)."""

RTCP_PACKET_TYPES: Final = range(192, 224)
"""Second-octet values that are RTCP, not RTP, on a multiplexed port (RFC 5761 4).

SR, RR, SDES, BYE and APP (200-204) read as RTP payload types 72-76 with the
marker bit set; RFC 5761 reserves the whole of 64-95 (192-223 with the marker)."""

_HEADER: Final = struct.Struct("!BBHII")
_SEQ_TS_SSRC: Final = struct.Struct("!HII")
_EXTENSION_HEADER: Final = struct.Struct("!HH")

_SEQ_MOD: Final = 1 << 16
# RFC 3550 A.1: beyond these, a jump in sequence numbers is a restart, not loss.
_MAX_DROPOUT: Final = 3000
_MAX_MISORDER: Final = 100
_TS_MOD: Final = 1 << 32
_TS_HALF: Final = 1 << 31


def is_rtcp(data: bytes) -> bool:
    """Whether a datagram on an rtcp-mux port is RTCP (RFC 5761 4: second octet 192-223)."""
    return len(data) >= 2 and data[1] in RTCP_PACKET_TYPES


@dataclass(frozen=True, slots=True)
class RtpExtension:
    """An RTP header extension (RFC 3550 5.3.1): a 16-bit profile and 32-bit-word data."""

    profile: int
    data: bytes


@dataclass(frozen=True, slots=True)
class RtpPacket:
    """One RTP data packet (RFC 3550 5.1).

    ``padding`` is the number of padding octets at the end, 0 for none; as on
    the wire (RFC 3550 5.1) it includes the last octet, which holds the count.
    """

    payload_type: int
    sequence_number: int
    timestamp: int
    ssrc: int
    payload: bytes = b""
    marker: bool = False
    csrc: tuple[int, ...] = ()
    extension: RtpExtension | None = None
    padding: int = 0

    @classmethod
    def parse(cls, data: bytes) -> RtpPacket:
        """Parse one RTP packet; raise :class:`RtpError` if it is malformed."""
        _check_header(data)
        length = len(data)
        first, second, sequence_number, timestamp, ssrc = _HEADER.unpack_from(data)
        offset = RTP_HEADER_SIZE
        csrc: tuple[int, ...] = ()
        csrc_count = first & 0x0F
        if csrc_count:
            end = offset + 4 * csrc_count
            if end > length:
                raise RtpError(
                    f"RTP packet truncated in its CSRC list: {end - offset} bytes declared, "
                    f"{length - offset} present"
                )
            csrc = struct.unpack_from(f"!{csrc_count}I", data, offset)
            offset = end
        extension = None
        if first & 0x10:
            if offset + 4 > length:
                raise RtpError("RTP packet truncated in its header extension header")
            profile, words = _EXTENSION_HEADER.unpack_from(data, offset)
            offset += 4
            end = offset + 4 * words
            if end > length:
                raise RtpError(
                    f"RTP packet truncated in its header extension: {end - offset} bytes "
                    f"declared, {length - offset} present"
                )
            extension = RtpExtension(profile, data[offset:end])
            offset = end
        padding = 0
        end = length
        if first & 0x20:
            # RFC 3550 5.1: the last octet counts the padding octets, itself included.
            padding = data[-1]
            if padding == 0 or padding > length - offset:
                raise RtpError(
                    f"RTP padding length {padding} is invalid for {length - offset} bytes "
                    "after the header"
                )
            end = length - padding
        return cls(
            second & 0x7F,
            sequence_number,
            timestamp,
            ssrc,
            data[offset:end],
            bool(second & 0x80),
            csrc,
            extension,
            padding,
        )

    def serialize(self) -> bytes:
        """Serialize the packet; raise :class:`LocalProtocolError` for out-of-range fields."""
        if not 0 <= self.payload_type <= 127:
            raise LocalProtocolError(f"RTP payload type {self.payload_type} is not in 0-127")
        if len(self.csrc) > 15:
            raise LocalProtocolError(f"RTP allows at most 15 CSRCs, got {len(self.csrc)}")
        if not 0 <= self.padding <= 255:
            raise LocalProtocolError(f"RTP padding {self.padding} is not in 0-255")
        first = 0x80 | len(self.csrc)
        if self.padding:
            first |= 0x20
        if self.extension is not None:
            first |= 0x10
        try:
            parts = [
                _HEADER.pack(
                    first,
                    (0x80 if self.marker else 0) | self.payload_type,
                    self.sequence_number,
                    self.timestamp,
                    self.ssrc,
                )
            ]
            if self.csrc:
                parts.append(struct.pack(f"!{len(self.csrc)}I", *self.csrc))
            if self.extension is not None:
                words, remainder = divmod(len(self.extension.data), 4)
                if remainder:
                    raise LocalProtocolError(
                        "RTP header extension data must be a multiple of 4 bytes, "
                        f"got {len(self.extension.data)}"
                    )
                parts.append(_EXTENSION_HEADER.pack(self.extension.profile, words))
                parts.append(self.extension.data)
        except struct.error as exc:
            raise LocalProtocolError(f"RTP header field out of range: {exc}") from None
        parts.append(self.payload)
        if self.padding:
            parts.append(bytes(self.padding - 1) + bytes((self.padding,)))
        return b"".join(parts)


def _check_header(data: bytes) -> None:
    if len(data) < RTP_HEADER_SIZE:
        raise RtpError(f"RTP packet is {len(data)} bytes, shorter than the 12-byte header")
    if data[0] >> 6 != RTP_VERSION:
        raise RtpError(f"RTP version is {data[0] >> 6}, expected 2")


def _payload_bounds(data: bytearray) -> tuple[int, int]:
    start = RTP_HEADER_SIZE + 4 * (data[0] & 0x0F)
    if data[0] & 0x10 and start + 4 <= len(data):
        start += 4 + 4 * _EXTENSION_HEADER.unpack_from(data, start)[1]
    end = len(data) - data[-1] if data[0] & 0x20 else len(data)
    return min(start, len(data)), max(start, end)


class OutgoingStream:
    """Our RTP numbering towards one peer, continuous across changes of audio source.

    The caller hears ringback, then the buyer's voice, possibly ringback again
    (cascade, revenue recovery): one SSRC, one sequence space, one timeline
    (RFC 3550 5.1). Locally generated frames go through :meth:`send`; packets
    relayed from another leg go through :meth:`relay`, which rewrites their
    sequence number, timestamp and SSRC by fixed offsets chosen when that
    source starts, so their own gaps and reordering survive. The first packet
    after a change of source carries the marker bit, which tells the receiver
    to resynchronise its jitter buffer.

    Time (``now``, seconds on any monotonic clock) is used only at a change of
    source, so that a pause (nobody sending) shows as a timestamp gap.
    """

    __slots__ = (
        "_duration",
        "_last_time",
        "_last_ts",
        "_next_seq",
        "_seq_offset",
        "_source",
        "_ts_offset",
        "clock_rate",
        "ssrc",
    )

    def __init__(
        self, ssrc: int, sequence_number: int, timestamp: int, clock_rate: int = 8000
    ) -> None:
        """Start a stream; pick ``ssrc``, ``sequence_number`` and ``timestamp`` at random."""
        self.ssrc = ssrc
        self.clock_rate = clock_rate
        self._next_seq = sequence_number
        self._last_ts = timestamp
        self._duration = 0  # samples covered by the last packet sent
        self._last_time: float | None = None
        self._source: int | None = None  # SSRC being relayed, None while playing locally
        self._seq_offset = 0
        self._ts_offset = 0

    @property
    def next_sequence_number(self) -> int:
        """The sequence number the next packet will carry."""
        return self._next_seq

    def _resume_timestamp(self, now: float) -> int:
        # Continue right after the last packet, or later if time has passed in between.
        if self._last_time is None:
            return self._last_ts
        elapsed = round((now - self._last_time) * self.clock_rate)
        return (self._last_ts + max(self._duration, elapsed)) % _TS_MOD

    def send(
        self,
        payload: bytes,
        payload_type: int,
        now: float,
        *,
        samples: int,
        marker: bool = False,
        timestamp: int | None = None,
    ) -> bytes:
        """Packetize a locally generated frame covering ``samples`` samples.

        ``timestamp`` overrides the packet's timestamp while the stream still
        advances by ``samples``: RFC 4733 events keep their start timestamp.
        Use :meth:`next_timestamp` to learn it.
        """
        # next_timestamp, inline: this runs for every frame played.
        if self._source is not None:
            ts = self._resume_timestamp(now)
            self._source = None
            marker = True
        elif self._last_time is None:
            ts = self._last_ts
        else:
            ts = (self._last_ts + self._duration) % _TS_MOD
        seq = self._next_seq
        self._next_seq = (seq + 1) % _SEQ_MOD
        self._last_ts = ts
        self._duration = samples
        self._last_time = now
        return (
            _HEADER.pack(
                0x80,
                payload_type | 0x80 if marker else payload_type,
                seq,
                ts if timestamp is None else timestamp,
                self.ssrc,
            )
            + payload
        )

    def next_timestamp(self, now: float) -> int:
        """The timestamp that the next :meth:`send` at ``now`` will use by default."""
        if self._source is not None:
            return self._resume_timestamp(now)
        if self._last_time is None:
            return self._last_ts
        return (self._last_ts + self._duration) % _TS_MOD

    def relay(
        self,
        packet: bytes,
        now: float,
        *,
        payload_type: int | None = None,
        translate: bytes | None = None,
    ) -> bytes:
        """Rewrite a packet received from another leg onto this stream.

        ``payload_type`` replaces the packet's (the legs may have negotiated
        different numbers, e.g. for telephone-event); ``translate`` is a
        256-byte table applied to the payload, which is how G.711 is
        transcoded between the laws (``g711.ALAW_TO_ULAW``). Raises
        :class:`RtpError` if ``packet`` is not RTP version 2.
        """
        _check_header(packet)
        out = bytearray(packet)
        self.rewrite(out, now)
        if payload_type is not None:
            out[1] = (out[1] & 0x80) | payload_type
        if translate is not None:
            start, end = _payload_bounds(out)
            out[start:end] = out[start:end].translate(translate)
        return bytes(out)

    def rewrite(self, packet: bytearray, now: float) -> None:
        """Renumber a relayed packet in place: the core of :meth:`relay`.

        For the relay's hot path, which has already checked the header and
        writes the result straight to a socket; ``packet`` must be at least
        an RTP header long.
        """
        seq, ts, ssrc = _SEQ_TS_SSRC.unpack_from(packet, 2)
        if ssrc != self._source:
            # A new source: map its numbering so it lands right after what we sent last.
            start_ts = self._resume_timestamp(now)
            self._seq_offset = self._next_seq - seq
            self._ts_offset = start_ts - ts
            self._source = ssrc
            self._last_ts = start_ts
            self._duration = 0
            packet[1] |= 0x80
        out_seq = (seq + self._seq_offset) % _SEQ_MOD
        out_ts = (ts + self._ts_offset) % _TS_MOD
        _SEQ_TS_SSRC.pack_into(packet, 2, out_seq, out_ts, self.ssrc)
        # Keep the latest position only: a late (reordered) packet must not move it back.
        if (out_seq - self._next_seq) % _SEQ_MOD < 0x8000:
            self._next_seq = (out_seq + 1) % _SEQ_MOD
            step = (out_ts - self._last_ts) % _TS_MOD
            if 0 < step < 0x80000000:
                self._duration = step
                self._last_ts = out_ts
        self._last_time = now


@dataclass(frozen=True, slots=True)
class ReceptionStats:
    """Reception statistics of one incoming source (RFC 3550 6.4.1 / A.3 / A.8)."""

    ssrc: int | None
    received: int
    expected: int
    lost: int
    jitter: float
    """Interarrival jitter in timestamp units."""


class IncomingStream:
    """Receive side of one leg: address latching and reception statistics.

    Symmetric RTP: the first address a packet comes from is latched and
    packets from any other address are refused. With ``relatch_after`` set,
    that many consecutive packets from one new address move the latch (the
    peer's NAT binding changed); :meth:`unlatch` forgets it (after a
    re-INVITE). Statistics restart when the SSRC changes or the sequence
    number jumps by more than ``MAX_DROPOUT`` (RFC 3550 A.1 without its
    probation of two packets: one stray packet restarts them too).
    """

    __slots__ = (
        "_base_seq",
        "_candidate",
        "_candidate_count",
        "_cycles",
        "_jitter",
        "_max_seq",
        "_received",
        "_ssrc",
        "_transit",
        "clock_rate",
        "latched",
        "relatch_after",
    )

    MAX_DROPOUT: Final = _MAX_DROPOUT
    MAX_MISORDER: Final = _MAX_MISORDER

    def __init__(self, clock_rate: int = 8000, relatch_after: int | None = None) -> None:
        """Create an unlatched stream; ``relatch_after`` None never moves the latch."""
        self.clock_rate = clock_rate
        self.relatch_after = relatch_after
        self.latched: tuple[str, int] | None = None
        self._candidate: tuple[str, int] | None = None
        self._candidate_count = 0
        self._ssrc: int | None = None
        self._reset_source(None, 0)

    def _reset_source(self, ssrc: int | None, seq: int) -> None:
        self._ssrc = ssrc
        self._base_seq = seq
        self._max_seq = seq
        self._cycles = 0
        self._received = 0
        self._jitter = 0.0
        self._transit: float | None = None

    def unlatch(self) -> None:
        """Forget the latched address: the next packet latches again."""
        self.latched = None
        self._candidate = None
        self._candidate_count = 0

    def _accept_address(self, addr: tuple[str, int]) -> bool:
        if self.latched is None:
            self.latched = addr
            return True
        if addr == self.latched:
            self._candidate = None
            self._candidate_count = 0
            return True
        if self.relatch_after is None:
            return False
        if addr == self._candidate:
            self._candidate_count += 1
        else:
            self._candidate = addr
            self._candidate_count = 1
        if self._candidate_count >= self.relatch_after:
            self.unlatch()
            self.latched = addr
            return True
        return False

    def receive(self, data: bytes, addr: tuple[str, int], now: float) -> bool:
        """Account for one datagram from ``addr``; return whether to accept it.

        RTCP (RFC 5761) is subject to latching but not counted. Raises
        :class:`RtpError` for a malformed RTP header (the latch is unchanged).
        """
        rtcp = is_rtcp(data)
        if not rtcp:
            _check_header(data)
        if not self._accept_address(addr):
            return False
        if not rtcp:
            seq, ts, ssrc = _SEQ_TS_SSRC.unpack_from(data, 2)
            self.count(seq, ts, ssrc, now)
        return True

    def count(self, seq: int, ts: int, ssrc: int, now: float) -> None:
        """Account for one RTP packet from the accepted address, header already unpacked.

        :meth:`receive` without its checks, for the relay's hot path, which
        has already checked the header and the latch.
        """
        if ssrc != self._ssrc:
            self._reset_source(ssrc, seq)
        elif self._received:
            delta = (seq - self._max_seq) % _SEQ_MOD
            if 0 < delta < _MAX_DROPOUT:
                if seq < self._max_seq:
                    self._cycles += _SEQ_MOD
                self._max_seq = seq
            elif delta != 0 and delta <= _SEQ_MOD - _MAX_MISORDER:
                # RFC 3550 A.1: a very large jump; the source restarted its numbering.
                self._reset_source(ssrc, seq)
        self._received += 1
        # RFC 3550 A.8: D(i-1, i) from relative transit times, J += (|D| - J) / 16.
        transit = now * self.clock_rate - ts
        if self._transit is not None:
            d = abs(transit - self._transit)
            if d < _TS_HALF:  # ignore timestamp wrap-around and jumps
                self._jitter += (d - self._jitter) / 16
        self._transit = transit

    @property
    def stats(self) -> ReceptionStats:
        """Statistics of the current source."""
        if self._ssrc is None:
            return ReceptionStats(None, 0, 0, 0, 0.0)
        expected = self._cycles + self._max_seq - self._base_seq + 1
        # RFC 3550 A.3: duplicates can make this negative; report no loss then.
        lost = max(expected - self._received, 0)
        return ReceptionStats(self._ssrc, self._received, expected, lost, self._jitter)
