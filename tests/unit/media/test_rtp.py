"""RTP packets (RFC 3550), RTCP demultiplexing (RFC 5761) and the stream helpers."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callwhisper.errors import LocalProtocolError, RtpError
from callwhisper.media import g711
from callwhisper.media.rtp import (
    IncomingStream,
    OutgoingStream,
    ReceptionStats,
    RtpExtension,
    RtpPacket,
    is_rtcp,
)
from tests.unit.media.pcap import SIPP_PCAP_DIR, read_udp

# First packet of SIPp's dtmf_2833_1.pcap: V=2, M=1, PT=101, seq 7984, ts 13280.
DTMF_START = bytes.fromhex("80e51f30000033e00e05384e010a0000")

# Every header feature at once: padding (4), extension (profile 0xBEDE, one word), 2 CSRCs.
FULL = bytes.fromhex(
    "b2"
    "88"
    "ffff"
    "fffffffe"
    "12345678"  # V=2 P X CC=2, M=1 PT=8
    "00000001"
    "00000002"  # CSRCs
    "bede0001"
    "10ff0000"  # extension header and one word
    "d5d5d5"  # payload
    "000003"  # padding, last octet counts it (3)
)


def test_parses_a_captured_dtmf_packet() -> None:
    packet = RtpPacket.parse(DTMF_START)
    assert packet == RtpPacket(
        payload_type=101,
        sequence_number=7984,
        timestamp=13280,
        ssrc=0x0E05384E,
        payload=bytes.fromhex("010a0000"),
        marker=True,
    )


def test_parses_every_header_feature() -> None:
    packet = RtpPacket.parse(FULL)
    assert packet == RtpPacket(
        payload_type=8,
        sequence_number=0xFFFF,
        timestamp=0xFFFFFFFE,
        ssrc=0x12345678,
        payload=b"\xd5\xd5\xd5",
        marker=True,
        csrc=(1, 2),
        extension=RtpExtension(0xBEDE, bytes.fromhex("10ff0000")),
        padding=3,
    )


@pytest.mark.parametrize("data", [DTMF_START, FULL])
def test_serialize_gives_back_the_parsed_bytes(data: bytes) -> None:
    assert RtpPacket.parse(data).serialize() == data


def test_serializes_exact_bytes() -> None:
    packet = RtpPacket(0, 1, 160, 0xDEADBEEF, b"\xff\xff")
    assert packet.serialize() == bytes.fromhex("80000001000000a0deadbeefffff")


def test_padding_of_one_octet_is_only_the_count() -> None:
    data = RtpPacket(0, 1, 2, 3, b"x", padding=1).serialize()
    assert data[0] & 0x20
    assert data[-2:] == b"x\x01"
    assert RtpPacket.parse(data).payload == b"x"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "RTP packet is 0 bytes, shorter than the 12-byte header"),
        (DTMF_START[:11], "RTP packet is 11 bytes, shorter than the 12-byte header"),
        (b"\x40" + DTMF_START[1:], "RTP version is 1, expected 2"),
        (b"\x00" + DTMF_START[1:], "RTP version is 0, expected 2"),
        (FULL[:19], "RTP packet truncated in its CSRC list: 8 bytes declared, 7 present"),
        (b"\x90" + FULL[1:12] + b"\xbe\xde", "RTP packet truncated in its header extension header"),
        (
            FULL[:27],
            "RTP packet truncated in its header extension: 4 bytes declared, 3 present",
        ),
        (FULL[:-1] + b"\x00", "RTP padding length 0 is invalid for 6 bytes after the header"),
        (FULL[:-1] + b"\x07", "RTP padding length 7 is invalid for 6 bytes after the header"),
    ],
)
def test_malformed_packets_raise_exact_errors(data: bytes, message: str) -> None:
    with pytest.raises(RtpError) as caught:
        RtpPacket.parse(data)
    assert str(caught.value) == message


def test_every_truncation_of_a_packet_raises_rtp_error() -> None:
    """Feeding the packet byte by byte: no proper prefix of it is a valid packet."""
    for end in range(len(FULL)):
        with pytest.raises(RtpError):
            RtpPacket.parse(FULL[:end])


@pytest.mark.parametrize(
    ("packet", "message"),
    [
        (RtpPacket(128, 0, 0, 0), "RTP payload type 128 is not in 0-127"),
        (RtpPacket(0, 65536, 0, 0), "RTP header field out of range: "),
        (RtpPacket(0, 0, 0, 0, csrc=tuple(range(16))), "RTP allows at most 15 CSRCs, got 16"),
        (RtpPacket(0, 0, 0, 0, padding=256), "RTP padding 256 is not in 0-255"),
        (
            RtpPacket(0, 0, 0, 0, extension=RtpExtension(1, b"abc")),
            "RTP header extension data must be a multiple of 4 bytes, got 3",
        ),
    ],
)
def test_serializing_out_of_range_fields_is_a_local_error(packet: RtpPacket, message: str) -> None:
    with pytest.raises(LocalProtocolError) as caught:
        packet.serialize()
    assert str(caught.value).startswith(message)


@settings(max_examples=300)
@given(st.binary(max_size=64))
def test_arbitrary_bytes_parse_or_raise_rtp_error(data: bytes) -> None:
    try:
        packet = RtpPacket.parse(data)
    except RtpError:
        return
    # Padding octets other than the count are not kept; everything else is.
    assert RtpPacket.parse(packet.serialize()) == packet


@settings(max_examples=300)
@given(
    st.builds(
        RtpPacket,
        payload_type=st.integers(0, 127),
        sequence_number=st.integers(0, 0xFFFF),
        timestamp=st.integers(0, 0xFFFFFFFF),
        ssrc=st.integers(0, 0xFFFFFFFF),
        payload=st.binary(max_size=32),
        marker=st.booleans(),
        csrc=st.lists(st.integers(0, 0xFFFFFFFF), max_size=15).map(tuple),
        extension=st.none()
        | st.builds(
            RtpExtension, st.integers(0, 0xFFFF), st.binary(max_size=8).map(lambda b: b * 4)
        ),
        padding=st.integers(0, 255),
    )
)
def test_packets_round_trip(packet: RtpPacket) -> None:
    assert RtpPacket.parse(packet.serialize()) == packet


@pytest.mark.parametrize(
    ("second_octet", "expected"),
    [
        (191, False),
        (192, True),
        (200, True),
        (201, True),
        (202, True),
        (203, True),
        (204, True),
        (205, True),
        (223, True),
        (224, False),
    ],
)
def test_rtcp_packet_types_are_recognised(second_octet: int, expected: bool) -> None:
    assert is_rtcp(bytes([0x81, second_octet, 0, 1])) is expected


@pytest.mark.parametrize("data", [DTMF_START, FULL, bytes([0x80, 0x80 | 96]), bytes([0x80, 8])])
def test_rtp_is_not_taken_for_rtcp(data: bytes) -> None:
    assert not is_rtcp(data)


def test_too_short_datagram_is_not_rtcp() -> None:
    assert not is_rtcp(b"\x81")


def test_g711a_capture_parses_and_decodes_to_audio() -> None:
    """SIPp's g711a.pcap: PCMA, 30 ms packets, a continuous stream that is not silence."""
    path = SIPP_PCAP_DIR / "g711a.pcap"
    if not path.exists():
        pytest.skip(f"{path} is absent: install the sip-tester package")
    packets = [RtpPacket.parse(d.payload) for d in read_udp(path)]
    assert len(packets) > 200
    assert {p.payload_type for p in packets} == {8}
    assert len({p.ssrc for p in packets}) == 1
    assert all(len(p.payload) == 240 for p in packets)
    for previous, current in itertools.pairwise(packets):
        assert current.sequence_number == (previous.sequence_number + 1) % 65536
        assert current.timestamp == previous.timestamp + 240
    assert [p.serialize() for p in packets] == [d.payload for d in read_udp(path)]
    pcm = g711.alaw_decode(b"".join(p.payload for p in packets))
    samples = memoryview(pcm).cast("h")
    assert max(abs(s) for s in samples) > 1000


def feed(stream: OutgoingStream, packets: list[bytes], now: float) -> list[RtpPacket]:
    return [RtpPacket.parse(stream.relay(p, now + i * 0.02)) for i, p in enumerate(packets)]


def source_packets(ssrc: int, seq: int, ts: int, count: int, pt: int = 0) -> list[bytes]:
    return [
        RtpPacket(pt, (seq + i) % 65536, (ts + 160 * i) % 2**32, ssrc, bytes(160)).serialize()
        for i in range(count)
    ]


def test_outgoing_stream_numbers_local_frames_continuously() -> None:
    stream = OutgoingStream(ssrc=0xCAFE, sequence_number=65535, timestamp=2**32 - 160)
    first = RtpPacket.parse(stream.send(b"a", 0, 0.0, samples=160, marker=True))
    second = RtpPacket.parse(stream.send(b"b", 0, 0.02, samples=160))
    assert (first.sequence_number, first.timestamp, first.marker) == (65535, 2**32 - 160, True)
    assert (second.sequence_number, second.timestamp, second.marker) == (0, 0, False)
    assert second.ssrc == 0xCAFE
    assert second.payload == b"b"


def test_relay_continues_our_numbering_and_marks_the_change_of_source() -> None:
    """Ringback, then the buyer's packets: one stream, marker on the first relayed packet."""
    stream = OutgoingStream(ssrc=1, sequence_number=100, timestamp=8000)
    for i in range(3):
        stream.send(bytes(160), 0, i * 0.02, samples=160)
    relayed = feed(stream, source_packets(ssrc=77, seq=40000, ts=123456, count=3), 0.06)
    assert [(p.sequence_number, p.timestamp, p.ssrc) for p in relayed] == [
        (103, 8480, 1),
        (104, 8640, 1),
        (105, 8800, 1),
    ]
    assert [p.marker for p in relayed] == [True, False, False]
    back = RtpPacket.parse(stream.send(bytes(160), 0, 0.12, samples=160))
    assert (back.sequence_number, back.timestamp, back.marker) == (106, 8960, True)


def test_relay_keeps_the_source_gaps_and_ignores_late_packets_for_position() -> None:
    stream = OutgoingStream(ssrc=1, sequence_number=0, timestamp=0)
    a, b, c, d = source_packets(ssrc=9, seq=500, ts=0, count=4)
    out = feed(stream, [a, c, b, d], 0.0)
    assert [p.sequence_number for p in out] == [0, 2, 1, 3]
    assert [p.timestamp for p in out] == [0, 320, 160, 480]
    assert stream.next_sequence_number == 4


def test_relay_of_a_new_source_after_a_pause_shows_the_elapsed_time() -> None:
    stream = OutgoingStream(ssrc=1, sequence_number=0, timestamp=0)
    stream.send(bytes(160), 0, 10.0, samples=160)
    # Nobody sent for one second: the next source starts 8000 samples later.
    out = RtpPacket.parse(stream.relay(source_packets(5, 9, 9, 1)[0], 11.0))
    assert (out.sequence_number, out.timestamp, out.marker) == (1, 8000, True)


def test_relay_switching_between_two_sources() -> None:
    stream = OutgoingStream(ssrc=1, sequence_number=0, timestamp=0)
    first = feed(stream, source_packets(ssrc=5, seq=10, ts=1000, count=2), 0.0)
    second = feed(stream, source_packets(ssrc=6, seq=60000, ts=5, count=2), 0.04)
    assert [(p.sequence_number, p.timestamp, p.marker) for p in first + second] == [
        (0, 0, True),
        (1, 160, False),
        (2, 320, True),
        (3, 480, False),
    ]


def test_relay_keeps_payload_type_and_payload() -> None:
    stream = OutgoingStream(ssrc=1, sequence_number=0, timestamp=0)
    out = RtpPacket.parse(stream.relay(DTMF_START, 0.0))
    assert (out.payload_type, out.payload) == (101, bytes.fromhex("010a0000"))


def test_dtmf_override_keeps_the_event_timestamp_while_time_advances() -> None:
    stream = OutgoingStream(ssrc=1, sequence_number=0, timestamp=0)
    start = stream.next_timestamp(0.0)
    event = [
        RtpPacket.parse(stream.send(b"e", 101, i * 0.02, samples=160, timestamp=start))
        for i in range(3)
    ]
    assert [p.timestamp for p in event] == [0, 0, 0]
    after = RtpPacket.parse(stream.send(b"a", 0, 0.06, samples=160))
    assert (after.sequence_number, after.timestamp) == (3, 480)


def test_rewrite_in_place_gives_the_bytes_relay_returns() -> None:
    """The relay's hot path renumbers a bytearray in place: same result, same position."""
    relayed = OutgoingStream(ssrc=1, sequence_number=65534, timestamp=2**32 - 160)
    rewritten = OutgoingStream(ssrc=1, sequence_number=65534, timestamp=2**32 - 160)
    a, b, c, d = source_packets(ssrc=9, seq=500, ts=0, count=4)
    (other,) = source_packets(ssrc=10, seq=7, ts=99, count=1)
    for n, packet in enumerate([a, c, b, d, other]):
        buffer = bytearray(packet)
        rewritten.rewrite(buffer, n * 0.02)
        assert bytes(buffer) == relayed.relay(packet, n * 0.02)
    assert rewritten.next_sequence_number == relayed.next_sequence_number == 3
    assert rewritten.next_timestamp(1.0) == relayed.next_timestamp(1.0)


def test_relay_refuses_malformed_packets() -> None:
    stream = OutgoingStream(ssrc=1, sequence_number=0, timestamp=0)
    with pytest.raises(RtpError, match=r"^RTP packet is 4 bytes, shorter than the 12-byte header$"):
        stream.relay(b"\x80\x00\x00\x00", 0.0)


A = ("192.0.2.1", 4000)
B = ("198.51.100.7", 5000)


def test_incoming_stream_latches_the_first_address() -> None:
    stream = IncomingStream()
    packets = source_packets(ssrc=3, seq=10, ts=0, count=3)
    assert stream.receive(packets[0], A, 0.0)
    assert not stream.receive(packets[1], B, 0.02)
    assert stream.receive(packets[2], A, 0.04)
    assert stream.latched == A
    assert stream.stats.received == 2


def test_incoming_stream_relatches_after_consecutive_packets_from_a_new_address() -> None:
    stream = IncomingStream(relatch_after=2)
    packets = source_packets(ssrc=3, seq=10, ts=0, count=5)
    assert stream.receive(packets[0], A, 0.0)
    assert not stream.receive(packets[1], B, 0.02)
    assert stream.receive(packets[2], B, 0.04)
    assert stream.latched == B
    assert not stream.receive(packets[3], A, 0.06)


def test_unlatch_lets_the_next_packet_latch() -> None:
    stream = IncomingStream()
    packets = source_packets(ssrc=3, seq=10, ts=0, count=2)
    stream.receive(packets[0], A, 0.0)
    stream.unlatch()
    assert stream.receive(packets[1], B, 0.02)
    assert stream.latched == B


def test_incoming_stream_counts_losses_across_wraparound() -> None:
    stream = IncomingStream()
    packets = source_packets(ssrc=3, seq=65530, ts=0, count=12)
    for i, packet in enumerate(packets):
        if i not in (3, 7, 8):
            stream.receive(packet, A, i * 0.02)
    assert stream.stats == ReceptionStats(ssrc=3, received=9, expected=12, lost=3, jitter=0.0)


def test_jitter_follows_rfc3550_a8() -> None:
    stream = IncomingStream()
    packets = source_packets(ssrc=3, seq=0, ts=0, count=3)
    stream.receive(packets[0], A, 0.0)
    stream.receive(packets[1], A, 0.03)  # 10 ms late: D = 80 samples, J = 80/16
    stream.receive(packets[2], A, 0.04)  # back on time: D = 80, J += (80 - 5)/16
    assert stream.stats.jitter == pytest.approx(5 + 75 / 16)


def test_count_keeps_the_statistics_receive_keeps() -> None:
    """The relay's hot path counts an unpacked header from the latched address directly."""
    received, counted = IncomingStream(), IncomingStream()
    packets = source_packets(ssrc=3, seq=65530, ts=0, count=12)
    for i, packet in enumerate(packets):
        if i in (3, 7):
            continue
        now = i * 0.02 + (0.007 if i % 3 else 0.0)
        received.receive(packet, A, now)
        seq, ts = (65530 + i) % 65536, 160 * i
        counted.count(seq, ts, 3, now)
    assert counted.stats == received.stats
    assert counted.stats.lost == 2
    assert counted.stats.jitter > 0


def test_rtcp_is_latched_but_not_counted() -> None:
    stream = IncomingStream()
    assert stream.receive(bytes.fromhex("81c90001deadbeef"), A, 0.0)
    assert stream.latched == A
    assert stream.stats == ReceptionStats(None, 0, 0, 0, 0.0)


def test_a_new_ssrc_restarts_the_statistics() -> None:
    stream = IncomingStream()
    for packet in source_packets(ssrc=3, seq=0, ts=0, count=3):
        stream.receive(packet, A, 0.0)
    stream.receive(source_packets(ssrc=4, seq=900, ts=0, count=1)[0], A, 0.1)
    assert stream.stats == ReceptionStats(ssrc=4, received=1, expected=1, lost=0, jitter=0.0)


def test_incoming_stream_refuses_malformed_rtp_without_latching() -> None:
    stream = IncomingStream()
    with pytest.raises(RtpError, match=r"^RTP version is 1, expected 2$"):
        stream.receive(b"\x40" + DTMF_START[1:], A, 0.0)
    assert stream.latched is None


def test_relay_rewrites_payload_type_and_transcodes_the_payload() -> None:
    """A PCMA buyer relayed to a PCMU caller: the header keeps its place, the payload is mapped."""
    stream = OutgoingStream(ssrc=1, sequence_number=0, timestamp=0)
    alaw = g711.alaw_encode(bytes(range(256)) * 2)
    packet = RtpPacket(8, 5, 5, 9, alaw, csrc=(7,), padding=4).serialize()
    out = RtpPacket.parse(stream.relay(packet, 0.0, payload_type=0, translate=g711.ALAW_TO_ULAW))
    assert (out.payload_type, out.marker, out.csrc, out.padding) == (0, True, (7,), 4)
    assert out.payload == g711.alaw_to_ulaw(alaw)


def test_relay_translate_skips_the_header_extension() -> None:
    stream = OutgoingStream(ssrc=1, sequence_number=0, timestamp=0)
    out = RtpPacket.parse(stream.relay(FULL, 0.0, translate=g711.ALAW_TO_ULAW))
    assert out.extension == RtpExtension(0xBEDE, bytes.fromhex("10ff0000"))
    assert out.payload == g711.alaw_to_ulaw(b"\xd5\xd5\xd5")


def test_g711a_capture_through_the_relay() -> None:
    """SIPp's g711a.pcap received on one leg and relayed onto another: no loss, same audio."""
    path = SIPP_PCAP_DIR / "g711a.pcap"
    if not path.exists():
        pytest.skip(f"{path} is absent: install the sip-tester package")
    datagrams = read_udp(path)
    incoming = IncomingStream()
    outgoing = OutgoingStream(ssrc=0xABCDEF, sequence_number=1000, timestamp=50000)
    relayed = []
    for datagram in datagrams:
        assert incoming.receive(datagram.payload, datagram.source, datagram.time)
        relayed.append(RtpPacket.parse(outgoing.relay(datagram.payload, datagram.time)))
    stats = incoming.stats
    assert (stats.received, stats.expected, stats.lost) == (len(datagrams), len(datagrams), 0)
    assert stats.jitter < 240  # under one 30 ms packet, in samples
    assert [p.sequence_number for p in relayed] == list(range(1000, 1000 + len(datagrams)))
    assert [p.timestamp for p in relayed] == [50000 + 240 * i for i in range(len(datagrams))]
    assert [p.marker for p in relayed[:2]] == [True, False]
    assert [p.payload for p in relayed] == [RtpPacket.parse(d.payload).payload for d in datagrams]
