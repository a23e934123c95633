"""RFC 4733 telephone-events (DTMF over RTP), sans-I/O.

* :class:`TelephoneEvent` is the 4-byte payload (RFC 4733 2.3).
* :class:`DtmfReceiver` turns a stream of event packets into exactly one
  :class:`DigitStarted` and one :class:`DigitEnded` per key press, despite
  retransmitted start packets, progress updates and the repeated end packets.
  Packets of one event share an RTP timestamp, which is the key.
* :class:`DtmfSender` plays one digit onto an :class:`OutgoingStream`, one
  packet per packet time.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from callwhisper.errors import LocalProtocolError, RtpError
from callwhisper.media.rtp import OutgoingStream, RtpPacket

__all__ = [
    "DTMF_DIGITS",
    "DigitEnded",
    "DigitStarted",
    "DtmfEvent",
    "DtmfReceiver",
    "DtmfSender",
    "TelephoneEvent",
    "digit_to_event",
    "event_to_digit",
]

DTMF_DIGITS: Final = "0123456789*#ABCD"
"""The DTMF digits by RFC 4733 event code (3.2): 0-9, * is 10, # is 11, A-D are 12-15."""

MAX_DURATION: Final = 0xFFFF
_PAYLOAD: Final = struct.Struct("!BBH")
_TS_HALF: Final = 1 << 31
_TS_MOD: Final = 1 << 32


def event_to_digit(event: int) -> str | None:
    """The DTMF digit of an event code, or None for other events (flash, tones)."""
    return DTMF_DIGITS[event] if 0 <= event < len(DTMF_DIGITS) else None


def digit_to_event(digit: str) -> int:
    """The RFC 4733 event code of a DTMF digit (case-insensitive for A-D)."""
    event = DTMF_DIGITS.find(digit.upper()) if len(digit) == 1 else -1
    if event < 0:
        raise LocalProtocolError(f"{digit!r} is not a DTMF digit (one of {DTMF_DIGITS})")
    return event


@dataclass(frozen=True, slots=True)
class TelephoneEvent:
    """An RFC 4733 2.3 payload: event code, end bit, volume (-dBm0) and duration (samples)."""

    event: int
    end: bool
    volume: int
    duration: int

    @classmethod
    def parse(cls, data: bytes) -> TelephoneEvent:
        """Parse the payload; raise :class:`RtpError` if it is too short."""
        if len(data) < 4:
            raise RtpError(f"telephone-event payload is {len(data)} bytes, expected 4")
        event, flags, duration = _PAYLOAD.unpack_from(data)
        # The R bit (0x40) is reserved: ignored on receipt.
        return cls(event, bool(flags & 0x80), flags & 0x3F, duration)

    def serialize(self) -> bytes:
        """Serialize the payload; raise :class:`LocalProtocolError` for out-of-range fields."""
        if not 0 <= self.event <= 255:
            raise LocalProtocolError(f"telephone-event code {self.event} is not in 0-255")
        if not 0 <= self.volume <= 63:
            raise LocalProtocolError(f"telephone-event volume {self.volume} is not in 0-63")
        if not 0 <= self.duration <= MAX_DURATION:
            raise LocalProtocolError(
                f"telephone-event duration {self.duration} is not in 0-{MAX_DURATION}"
            )
        return _PAYLOAD.pack(self.event, (0x80 if self.end else 0) | self.volume, self.duration)


@dataclass(frozen=True, slots=True)
class DigitStarted:
    """The first packet of a key press arrived: act on it at once (barge-in)."""

    digit: str
    timestamp: int
    """RTP timestamp of the event, which identifies it."""


@dataclass(frozen=True, slots=True)
class DigitEnded:
    """A key press ended (end packet, or no packet for the receiver's timeout)."""

    digit: str
    timestamp: int
    """RTP timestamp of the event, as in its :class:`DigitStarted`."""
    duration: int
    """Duration in RTP timestamp units (samples)."""
    duration_ms: int


DtmfEvent = DigitStarted | DigitEnded


class DtmfReceiver:
    """Turns RFC 4733 packets of one stream into digit events.

    Feed every packet of the telephone-event payload type to :meth:`receive`.
    An event that stops without an end packet is ended ``timeout`` seconds
    after its last packet: ask :meth:`get_timer` when to call
    :meth:`handle_timer`. Events other than the 16 DTMF digits are ignored.
    """

    def __init__(self, clock_rate: int = 8000, timeout: float = 0.3) -> None:
        """Create a receiver for a stream with the given RTP clock rate."""
        self.clock_rate = clock_rate
        self.timeout = timeout
        self._timestamp = -1  # RTP timestamp of the current or last event, -1 before any
        self._start = 0  # timestamp of the event's first segment, which names it
        self._digit = ""
        self._event = -1
        self._ended = True
        self._base = 0  # duration of earlier segments of a long event (RFC 4733 2.5.1.3)
        self._duration = 0
        self._last_time = 0.0

    @property
    def last_timestamp(self) -> int | None:
        """RTP timestamp of the current or last event's packets, None before any event.

        Later packets with this timestamp belong to that event (its updates
        and repeated end packets), never to a new key press.
        """
        return None if self._timestamp < 0 else self._timestamp

    def receive(self, packet: RtpPacket, now: float) -> list[DtmfEvent]:
        """Account for one telephone-event packet; return the digit events it causes."""
        event = TelephoneEvent.parse(packet.payload)
        ts = packet.timestamp
        if ts == self._timestamp:
            if self._ended:
                return []  # a repeated end packet, or a straggler of a finished event
            self._last_time = now
            self._duration = event.duration
            return [self._end()] if event.end else []
        if self._timestamp >= 0 and (ts - self._timestamp) % _TS_MOD >= _TS_HALF:
            return []  # older than the current event: reordered or retransmitted late
        if (
            not self._ended
            and not packet.marker
            and event.event == self._event
            and self._duration == MAX_DURATION
        ):
            # RFC 4733 2.5.1.3: the next segment of a long event, not a new key press.
            self._timestamp = ts
            self._base += MAX_DURATION
            self._duration = event.duration
            self._last_time = now
            return [self._end()] if event.end else []
        events: list[DtmfEvent] = []
        if not self._ended:
            events.append(self._end())  # the previous event's end packets were all lost
        self._timestamp = self._start = ts
        self._last_time = now
        self._event = event.event
        self._base = 0
        self._duration = event.duration
        digit = event_to_digit(event.event)
        if digit is None:
            self._ended = True
            return events
        self._digit = digit
        self._ended = False
        events.append(DigitStarted(digit, ts))
        if event.end:
            events.append(self._end())
        return events

    def _end(self) -> DigitEnded:
        self._ended = True
        total = self._base + self._duration
        return DigitEnded(self._digit, self._start, total, total * 1000 // self.clock_rate)

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` must be called, or None while no event is open."""
        return None if self._ended else self._last_time + self.timeout

    def handle_timer(self, now: float) -> list[DtmfEvent]:
        """End an open event whose packets stopped; return the events this causes."""
        timer = self.get_timer()
        if timer is None or now < timer:
            return []
        return [self._end()]


class DtmfSender:
    """Plays one digit as RFC 4733 packets on an outgoing stream.

    Call :meth:`tick` once per packet time (``ptime_ms``) until it returns
    None. RFC 4733 2.5.1: the first packet has the marker bit; updates every
    packet time carry the growing duration; the final packet (E bit) is sent
    three times (2.5.1.4). All share the timestamp of the event's start,
    while the stream's own position advances with time so the audio that
    follows lines up.
    """

    def __init__(
        self,
        stream: OutgoingStream,
        payload_type: int,
        digit: str,
        *,
        duration_ms: int = 100,
        volume: int = 10,
        ptime_ms: int = 20,
    ) -> None:
        """Prepare the packets of ``digit`` lasting ``duration_ms`` (at least one packet time)."""
        self._stream = stream
        self._payload_type = payload_type
        self._frame = stream.clock_rate * ptime_ms // 1000
        event = digit_to_event(digit)
        updates = max(1, -(-duration_ms // ptime_ms))
        total = updates * self._frame
        if total > MAX_DURATION:
            raise LocalProtocolError(
                f"a {duration_ms} ms digit exceeds one telephone-event ({MAX_DURATION} samples)"
            )
        payloads = [
            TelephoneEvent(event, False, volume, (k + 1) * self._frame).serialize()
            for k in range(updates - 1)
        ]
        payloads += [TelephoneEvent(event, True, volume, total).serialize()] * 3
        self._payloads = payloads
        self._index = 0
        self._timestamp: int | None = None

    @property
    def done(self) -> bool:
        """Whether every packet has been produced."""
        return self._index >= len(self._payloads)

    def tick(self, now: float) -> bytes | None:
        """The RTP packet to send at this packet time, or None when the digit is over."""
        if self.done:
            return None
        if self._timestamp is None:
            self._timestamp = self._stream.next_timestamp(now)
        packet = self._stream.send(
            self._payloads[self._index],
            self._payload_type,
            now,
            samples=self._frame,
            marker=self._index == 0,
            timestamp=self._timestamp,
        )
        self._index += 1
        return packet
