"""RFC 4733 telephone-events: payload codec, receiver de-duplication, sender, SIPp captures."""

from __future__ import annotations

import pytest

from callwhisper.errors import LocalProtocolError, RtpError
from callwhisper.media.dtmf import (
    DigitEnded,
    DigitStarted,
    DtmfEvent,
    DtmfReceiver,
    DtmfSender,
    TelephoneEvent,
    digit_to_event,
    event_to_digit,
)
from callwhisper.media.rtp import OutgoingStream, RtpPacket
from tests.unit.media.pcap import SIPP_PCAP_DIR, read_udp

PT = 101


def test_parses_a_captured_end_payload() -> None:
    assert TelephoneEvent.parse(bytes.fromhex("018a08c0")) == TelephoneEvent(1, True, 10, 2240)


def test_reserved_bit_is_ignored() -> None:
    assert TelephoneEvent.parse(bytes.fromhex("0bca0140")) == TelephoneEvent(11, True, 10, 320)


def test_serializes_exact_bytes() -> None:
    assert TelephoneEvent(11, False, 10, 320).serialize() == bytes.fromhex("0b0a0140")
    assert TelephoneEvent(1, True, 63, 0xFFFF).serialize() == bytes.fromhex("01bfffff")


@pytest.mark.parametrize("length", [0, 1, 2, 3])
def test_truncated_payload_raises_exact_error(length: int) -> None:
    with pytest.raises(RtpError) as caught:
        TelephoneEvent.parse(bytes.fromhex("018a08c0")[:length])
    assert str(caught.value) == f"telephone-event payload is {length} bytes, expected 4"


@pytest.mark.parametrize(
    ("event", "message"),
    [
        (TelephoneEvent(256, False, 10, 0), "telephone-event code 256 is not in 0-255"),
        (TelephoneEvent(1, False, 64, 0), "telephone-event volume 64 is not in 0-63"),
        (TelephoneEvent(1, False, 10, 65536), "telephone-event duration 65536 is not in 0-65535"),
    ],
)
def test_out_of_range_fields_are_local_errors(event: TelephoneEvent, message: str) -> None:
    with pytest.raises(LocalProtocolError) as caught:
        event.serialize()
    assert str(caught.value) == message


def test_digit_mapping_follows_rfc4733_table() -> None:
    assert [event_to_digit(e) for e in (0, 9, 10, 11, 12, 15, 16)] == [
        "0",
        "9",
        "*",
        "#",
        "A",
        "D",
        None,
    ]
    assert digit_to_event("#") == 11
    assert digit_to_event("d") == 15
    with pytest.raises(LocalProtocolError, match=r"^'x' is not a DTMF digit"):
        digit_to_event("x")


def event_packet(
    ts: int, event: int, end: bool, duration: int, *, seq: int = 0, marker: bool = False
) -> RtpPacket:
    payload = TelephoneEvent(event, end, 10, duration).serialize()
    return RtpPacket(PT, seq, ts, 0x1234, payload, marker)


def test_one_digit_per_event_despite_repeats() -> None:
    """Retransmitted start, progress updates and three end packets: one start, one end."""
    receiver = DtmfReceiver()
    packets = [
        event_packet(1000, 5, False, 0, marker=True),
        event_packet(1000, 5, False, 0, marker=True),
        event_packet(1000, 5, False, 160),
        event_packet(1000, 5, False, 320),
        event_packet(1000, 5, True, 480),
        event_packet(1000, 5, True, 480),
        event_packet(1000, 5, True, 480),
    ]
    events = [e for i, p in enumerate(packets) for e in receiver.receive(p, i * 0.02)]
    assert events == [DigitStarted("5", 1000), DigitEnded("5", 1000, 480, 60)]
    assert receiver.get_timer() is None


def test_the_same_digit_twice_is_two_presses() -> None:
    receiver = DtmfReceiver()
    events: list[DtmfEvent] = []
    for ts in (1000, 3000):
        events += receiver.receive(event_packet(ts, 1, False, 160, marker=True), 0.0)
        events += receiver.receive(event_packet(ts, 1, True, 320), 0.0)
    assert events == [
        DigitStarted("1", 1000),
        DigitEnded("1", 1000, 320, 40),
        DigitStarted("1", 3000),
        DigitEnded("1", 3000, 320, 40),
    ]


def test_a_late_packet_of_a_previous_event_is_ignored() -> None:
    receiver = DtmfReceiver()
    receiver.receive(event_packet(1000, 1, True, 320), 0.0)
    receiver.receive(event_packet(3000, 2, False, 160), 0.1)
    assert receiver.receive(event_packet(1000, 1, True, 320), 0.12) == []


def test_lost_end_packets_are_made_up_by_the_next_event() -> None:
    receiver = DtmfReceiver()
    receiver.receive(event_packet(1000, 1, False, 160), 0.0)
    assert receiver.receive(event_packet(5000, 2, False, 160), 0.5) == [
        DigitEnded("1", 1000, 160, 20),
        DigitStarted("2", 5000),
    ]


def test_lost_end_packets_are_made_up_by_the_timer() -> None:
    receiver = DtmfReceiver(timeout=0.3)
    receiver.receive(event_packet(1000, 7, False, 160), 1.0)
    receiver.receive(event_packet(1000, 7, False, 320), 1.02)
    assert receiver.get_timer() == pytest.approx(1.32)
    assert receiver.handle_timer(1.3) == []
    assert receiver.handle_timer(1.32) == [DigitEnded("7", 1000, 320, 40)]
    assert receiver.get_timer() is None
    assert receiver.receive(event_packet(1000, 7, True, 480), 1.4) == []


def test_only_end_packets_still_give_one_digit() -> None:
    receiver = DtmfReceiver()
    assert receiver.receive(event_packet(1000, 11, True, 800), 0.0) == [
        DigitStarted("#", 1000),
        DigitEnded("#", 1000, 800, 100),
    ]
    assert receiver.receive(event_packet(1000, 11, True, 800), 0.02) == []


def test_non_dtmf_events_are_ignored() -> None:
    receiver = DtmfReceiver()
    assert receiver.receive(event_packet(1000, 16, False, 160, marker=True), 0.0) == []
    assert receiver.receive(event_packet(1000, 16, True, 320), 0.02) == []
    assert receiver.get_timer() is None


def test_long_event_segments_are_one_press() -> None:
    """RFC 4733 2.5.1.3: a new timestamp without marker continues a maxed-out event."""
    receiver = DtmfReceiver()
    events = receiver.receive(event_packet(0, 3, False, 65535, marker=True), 0.0)
    events += receiver.receive(event_packet(65535, 3, False, 800), 8.3)
    events += receiver.receive(event_packet(65535, 3, True, 1600), 8.4)
    assert events == [DigitStarted("3", 0), DigitEnded("3", 0, 67135, 8391)]


def test_timestamp_wraparound_is_a_new_event() -> None:
    receiver = DtmfReceiver()
    receiver.receive(event_packet(2**32 - 160, 1, True, 160), 0.0)
    assert receiver.receive(event_packet(500, 2, True, 160), 0.5) == [
        DigitStarted("2", 500),
        DigitEnded("2", 500, 160, 20),
    ]


def sent_packets(sender: DtmfSender, start: float = 0.0) -> list[RtpPacket]:
    packets = []
    tick = 0
    while (data := sender.tick(start + tick * 0.02)) is not None:
        packets.append(RtpPacket.parse(data))
        tick += 1
    return packets


def test_sender_produces_rfc4733_packet_sequence() -> None:
    stream = OutgoingStream(ssrc=42, sequence_number=10, timestamp=4000)
    stream.send(bytes(160), 0, 0.0, samples=160)
    sender = DtmfSender(stream, PT, "9", duration_ms=100)
    packets = sent_packets(sender, 0.02)
    assert [(p.sequence_number, p.timestamp, p.marker, p.payload_type) for p in packets] == [
        (11, 4160, True, PT),
        (12, 4160, False, PT),
        (13, 4160, False, PT),
        (14, 4160, False, PT),
        (15, 4160, False, PT),
        (16, 4160, False, PT),
        (17, 4160, False, PT),
    ]
    assert [TelephoneEvent.parse(p.payload) for p in packets] == [
        TelephoneEvent(9, False, 10, 160),
        TelephoneEvent(9, False, 10, 320),
        TelephoneEvent(9, False, 10, 480),
        TelephoneEvent(9, False, 10, 640),
        TelephoneEvent(9, True, 10, 800),
        TelephoneEvent(9, True, 10, 800),
        TelephoneEvent(9, True, 10, 800),
    ]
    assert sender.done
    after = RtpPacket.parse(stream.send(bytes(160), 0, 0.16, samples=160))
    assert (after.sequence_number, after.timestamp) == (18, 4160 + 7 * 160)


def test_sender_and_receiver_agree() -> None:
    stream = OutgoingStream(ssrc=42, sequence_number=0, timestamp=0)
    receiver = DtmfReceiver()
    events: list[DtmfEvent] = []
    for digit in "1*#":
        for packet in sent_packets(DtmfSender(stream, PT, digit, duration_ms=60, ptime_ms=20)):
            events += receiver.receive(packet, 0.0)
    assert [(type(e).__name__, e.digit) for e in events] == [
        ("DigitStarted", "1"),
        ("DigitEnded", "1"),
        ("DigitStarted", "*"),
        ("DigitEnded", "*"),
        ("DigitStarted", "#"),
        ("DigitEnded", "#"),
    ]


def test_sender_short_digit_is_one_start_that_is_also_the_end() -> None:
    stream = OutgoingStream(ssrc=42, sequence_number=0, timestamp=0)
    packets = sent_packets(DtmfSender(stream, PT, "0", duration_ms=10))
    assert [p.marker for p in packets] == [True, False, False]
    assert {TelephoneEvent.parse(p.payload) for p in packets} == {TelephoneEvent(0, True, 10, 160)}


def test_sender_refuses_digits_longer_than_one_event() -> None:
    stream = OutgoingStream(ssrc=42, sequence_number=0, timestamp=0)
    with pytest.raises(LocalProtocolError, match=r"^a 9000 ms digit exceeds one telephone-event"):
        DtmfSender(stream, PT, "1", duration_ms=9000)


CAPTURED_DIGITS = [(str(d), str(d)) for d in range(10)] + [("star", "*"), ("pound", "#")]


@pytest.mark.parametrize(("name", "digit"), CAPTURED_DIGITS)
def test_sipp_capture_gives_exactly_one_digit(name: str, digit: str) -> None:
    """SIPp's dtmf_2833_*.pcap: 7 progress packets and 3 end packets make one key press."""
    path = SIPP_PCAP_DIR / f"dtmf_2833_{name}.pcap"
    if not path.exists():
        pytest.skip(f"{path} is absent: install the sip-tester package")
    receiver = DtmfReceiver()
    events: list[DtmfEvent] = []
    datagrams = read_udp(path)
    assert len(datagrams) == 10
    for datagram in datagrams:
        packet = RtpPacket.parse(datagram.payload)
        assert packet.payload_type == PT
        events += receiver.receive(packet, datagram.time)
    timestamp = RtpPacket.parse(datagrams[0].payload).timestamp
    assert events == [DigitStarted(digit, timestamp), DigitEnded(digit, timestamp, 2240, 280)]


def test_last_timestamp_names_the_event_seen_last() -> None:
    receiver = DtmfReceiver()
    assert receiver.last_timestamp is None
    receiver.receive(event_packet(1000, 5, False, 160, marker=True), 0.0)
    assert receiver.last_timestamp == 1000
    receiver.receive(event_packet(1000, 5, True, 480), 0.1)
    receiver.receive(event_packet(500, 7, False, 160, marker=True), 0.2)  # late, ignored
    assert receiver.last_timestamp == 1000
