"""Media legs on a fake socket and loop: playback, latching, DTMF, bridging, counters."""

from __future__ import annotations

import errno
import logging
import struct
from pathlib import Path

import pytest

from callwhisper.engine.media import (
    DigitReceived,
    MediaConfig,
    MediaEngine,
    MediaEvent,
    MediaLeg,
    PlaybackFinished,
    PortAllocator,
)
from callwhisper.engine.playback import PCMA, PCMU, LegCodec
from callwhisper.engine.recording import CallRecorder, RecordingBatch
from callwhisper.errors import LocalProtocolError
from callwhisper.media.dtmf import TelephoneEvent
from callwhisper.media.g711 import alaw_encode, ulaw_encode, ulaw_to_alaw
from callwhisper.media.rtp import OutgoingStream, RtpPacket
from callwhisper.media.tones import ringback
from tests.unit.engine.fakes import FakeLoop, FakeSocket, fake_engine

CALLER_PEER = ("127.0.0.1", 4000)
BUYER_PEER = ("127.0.0.1", 5000)


def rtp(seq: int, ts: int, payload: bytes = b"\x11" * 160, pt: int = 0, ssrc: int = 7) -> bytes:
    return RtpPacket(pt, seq, ts, ssrc, payload).serialize()


def deliver(
    loop: FakeLoop, leg: MediaLeg, sock: FakeSocket, *datagrams: tuple[bytes, tuple[str, int]]
) -> None:
    """Queue datagrams on the leg's socket and run its reader callback once."""
    sock.inbox.extend(datagrams)
    loop.readers[sock.fileno()]()


def sent_packets(sock: FakeSocket) -> list[RtpPacket]:
    return [RtpPacket.parse(data) for data, _ in sock.sent]


@pytest.fixture
def events() -> list[MediaEvent]:
    return []


def test_port_allocator_hands_out_even_ports_round_robin() -> None:
    ports = PortAllocator(20001, 20007)
    assert list(ports.candidates()) == [20002, 20004, 20006]
    assert next(ports.candidates()) == 20002


def test_port_allocator_needs_an_even_port() -> None:
    with pytest.raises(ValueError, match="no even port in 20001-20001"):
        PortAllocator(20001, 20001)


def test_open_leg_watches_the_socket_and_close_releases_it() -> None:
    engine, loop, sockets = fake_engine()
    leg = engine.open_leg(PCMU, name="caller")
    assert leg.local_address == ("127.0.0.1", 20000)
    assert list(loop.readers) == [sockets[0].fileno()]
    engine.close_leg(leg)
    assert loop.readers == {}
    assert leg.closed
    assert engine.legs == {}


def test_leg_names_are_unique() -> None:
    engine, _, _ = fake_engine()
    engine.open_leg(PCMU, name="caller")
    with pytest.raises(LocalProtocolError, match="a media leg named 'caller' is already open"):
        engine.open_leg(PCMU, name="caller")


def test_playback_sends_one_packet_per_tick_then_reports_finished(events: list[MediaEvent]) -> None:
    engine, _, sockets = fake_engine()
    leg = engine.open_leg(PCMU, remote=BUYER_PEER, on_event=events.append, name="buyer")
    frames = [bytes([n]) * 160 for n in range(4)]
    ident = leg.play(frames)
    for tick in range(5):
        engine._tick(200.0 + tick * 0.02)
    packets = sent_packets(sockets[0])
    assert [p.payload for p in packets] == frames
    assert [p.marker for p in packets] == [True, False, False, False]
    first = packets[0]
    assert [p.sequence_number for p in packets] == [
        (first.sequence_number + n) % 65536 for n in range(4)
    ]
    assert [p.timestamp for p in packets] == [(first.timestamp + 160 * n) % 2**32 for n in range(4)]
    assert {p.ssrc for p in packets} == {leg.outgoing.ssrc}
    assert {address for _, address in sockets[0].sent} == {BUYER_PEER}
    assert events == [PlaybackFinished("buyer", ident, 200.08)]
    assert leg.playing is None


def test_silence_is_played_in_whole_frames() -> None:
    engine, _, sockets = fake_engine()
    leg = engine.open_leg(PCMA, remote=BUYER_PEER)
    leg.play_silence(0.05)
    for tick in range(4):
        engine._tick(tick * 0.02)
    assert [p.payload for p in sent_packets(sockets[0])] == [b"\xd5" * 160] * 3


def test_looped_playback_runs_until_stopped() -> None:
    engine, _, sockets = fake_engine()
    leg = engine.open_leg(PCMU, remote=BUYER_PEER)
    leg.play([b"\x01" * 160], loop=True)
    for tick in range(10):
        engine._tick(tick * 0.02)
    leg.stop_playback()
    engine._tick(1.0)
    assert len(sockets[0].sent) == 10


def test_latches_on_the_first_source_and_rejects_others() -> None:
    engine, loop, sockets = fake_engine()
    leg = engine.open_leg(PCMU, remote=("127.0.0.1", 9999))
    deliver(loop, leg, sockets[0], (rtp(1, 0), CALLER_PEER), (rtp(2, 160), ("127.0.0.1", 6666)))
    assert leg.destination == CALLER_PEER
    assert leg.counters.rejected == 1
    leg.play([b"\x00" * 160])
    engine._tick(0.0)
    assert sockets[0].sent[0][1] == CALLER_PEER


def test_malformed_datagrams_are_counted_and_dropped() -> None:
    engine, loop, sockets = fake_engine()
    leg = engine.open_leg(PCMU)
    bad_event = RtpPacket(101, 1, 0, 7, b"\x01\x0a").serialize()
    bad_padding = bytearray(rtp(2, 0))
    bad_padding[0] |= 0x20
    bad_padding[-1] = 200
    deliver(
        loop, leg, sockets[0],
        (b"\x80\x00", CALLER_PEER),  # shorter than the header
        (b"\x40" + rtp(3, 0)[1:], CALLER_PEER),  # version 1
        (rtp(4, 0, b"\x00" * 1600), CALLER_PEER),  # larger than an MTU
        (bad_event, CALLER_PEER),  # telephone-event payload of 2 bytes
    )  # fmt: skip
    assert leg.counters.packets_in == 4
    assert leg.counters.malformed == 4


def test_unknown_payload_types_and_rtcp_are_not_relayed() -> None:
    engine, loop, sockets = fake_engine()
    caller = engine.open_leg(PCMU, name="caller")
    buyer = engine.open_leg(PCMU, remote=BUYER_PEER, name="buyer")
    engine.bridge(caller, buyer)
    receiver_report = struct.pack("!BBHI", 0x80, 201, 1, 7)
    deliver(
        loop, caller, sockets[0], (rtp(1, 0, pt=18), CALLER_PEER), (receiver_report, CALLER_PEER)
    )
    assert caller.counters.unknown_payload == 1
    assert caller.counters.rtcp == 1
    assert sockets[1].sent == []


def dtmf_packets(digit: int, ts: int, seq: int) -> list[bytes]:
    """Seven progress packets then three end packets, as in SIPp's RFC 4733 captures."""
    payloads = [TelephoneEvent(digit, False, 10, 160 * (n + 1)).serialize() for n in range(7)]
    payloads += [TelephoneEvent(digit, True, 10, 1280).serialize()] * 3
    return [
        RtpPacket(101, seq + n, ts, 7, payload, marker=n == 0).serialize()
        for n, payload in enumerate(payloads)
    ]


def test_one_key_press_reports_exactly_one_digit(events: list[MediaEvent]) -> None:
    engine, loop, sockets = fake_engine()
    leg = engine.open_leg(PCMU, on_event=events.append, name="buyer")
    loop.now = 42.0
    deliver(loop, leg, sockets[0], *[(p, BUYER_PEER) for p in dtmf_packets(1, 8000, 10)])
    deliver(loop, leg, sockets[0], *[(p, BUYER_PEER) for p in dtmf_packets(11, 16000, 20)])
    assert events == [DigitReceived("buyer", "1", 42.0), DigitReceived("buyer", "#", 42.0)]


def test_a_failing_event_handler_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    engine, loop, sockets = fake_engine()

    def broken(event: MediaEvent) -> None:
        raise RuntimeError("handler bug")

    leg = engine.open_leg(PCMU, on_event=broken)
    with caplog.at_level(logging.ERROR):
        deliver(loop, leg, sockets[0], *[(p, BUYER_PEER) for p in dtmf_packets(1, 0, 1)])
    assert "media event handler failed" in caplog.text


def test_reception_counts_loss_by_sequence_number() -> None:
    engine, loop, sockets = fake_engine()
    leg = engine.open_leg(PCMU)
    deliver(loop, leg, sockets[0], *[(rtp(seq, seq * 160), CALLER_PEER) for seq in (1, 2, 5, 6)])
    assert leg.stats().lost == 2
    assert leg.stats().packets_in == 4


def test_stats_report_each_counter_under_its_own_name() -> None:
    engine, loop, sockets = fake_engine()
    leg = engine.open_leg(PCMU)
    leg.play([b"\x00" * 160] * 6)
    for tick in range(6):
        engine._tick(tick * 0.02)  # no address to send to yet
    receiver_report = struct.pack("!BBHI", 0x80, 201, 1, 7)
    deliver(
        loop, leg, sockets[0],
        *[(rtp(seq, seq * 160), CALLER_PEER) for seq in (1, 2, 3, 5, 6)],
        (b"\x80\x00", CALLER_PEER), (b"\x40" + rtp(11, 0)[1:], CALLER_PEER),
        (rtp(12, 0), ("127.0.0.1", 6666)),
        *[(receiver_report, CALLER_PEER)] * 3,
        *[(rtp(seq, seq * 160, pt=18), CALLER_PEER) for seq in (7, 8, 9, 10)],
    )  # fmt: skip
    leg.play([b"\x00" * 160] * 7)
    for tick in range(7):
        engine._tick(1.0 + tick * 0.02)
    stats = leg.stats()
    assert (
        stats.packets_in, stats.packets_out, stats.malformed, stats.rejected, stats.rtcp,
        stats.unknown_payload, stats.send_failed, stats.lost,
    ) == (15, 7, 2, 1, 3, 4, 6, 1)  # fmt: skip


def bridged(caller_codec: LegCodec = PCMU, buyer_codec: LegCodec = PCMU) -> tuple[
    MediaEngine, FakeLoop, list[FakeSocket], MediaLeg, MediaLeg
]:  # fmt: skip
    engine, loop, sockets = fake_engine()
    caller = engine.open_leg(caller_codec, remote=CALLER_PEER, name="caller")
    buyer = engine.open_leg(buyer_codec, remote=BUYER_PEER, name="buyer")
    return engine, loop, sockets, caller, buyer


def test_bridge_relays_both_ways_onto_each_legs_own_stream() -> None:
    engine, loop, sockets, caller, buyer = bridged()
    engine.bridge(caller, buyer)
    deliver(loop, caller, sockets[0], *[(rtp(s, s * 160, ssrc=111), CALLER_PEER) for s in (50, 51)])
    deliver(loop, buyer, sockets[1], *[(rtp(s, s * 160, ssrc=222), BUYER_PEER) for s in (9, 10)])
    to_buyer, to_caller = sent_packets(sockets[1]), sent_packets(sockets[0])
    assert {p.ssrc for p in to_buyer} == {buyer.outgoing.ssrc}
    assert {p.ssrc for p in to_caller} == {caller.outgoing.ssrc}
    assert [p.sequence_number - to_buyer[0].sequence_number for p in to_buyer] == [0, 1]
    assert [p.marker for p in to_caller] == [True, False]
    assert {address for _, address in sockets[1].sent} == {BUYER_PEER}


def test_ringback_to_bridge_keeps_the_callers_stream_continuous() -> None:
    engine, loop, sockets, caller, buyer = bridged()
    caller.play([b"\x22" * 160], loop=True)
    for tick in range(3):
        engine._tick(tick * 0.02)
    loop.now = 0.06
    engine.bridge(caller, buyer)
    deliver(
        loop,
        buyer,
        sockets[1],
        *[(rtp(s, 90000 + s * 160, ssrc=222), BUYER_PEER) for s in (300, 301)],
    )
    engine._tick(0.06)  # the clock no longer plays ringback on a bridged leg
    packets = sent_packets(sockets[0])
    assert [p.payload for p in packets] == [b"\x22" * 160] * 3 + [b"\x11" * 160] * 2
    first = packets[0]
    assert [p.sequence_number for p in packets] == [
        (first.sequence_number + n) % 65536 for n in range(5)
    ]
    assert [p.timestamp for p in packets] == [(first.timestamp + 160 * n) % 2**32 for n in range(5)]
    assert {p.ssrc for p in packets} == {caller.outgoing.ssrc}
    assert [p.marker for p in packets] == [True, False, False, True, False]


def test_bridge_transcodes_between_pcmu_and_pcma() -> None:
    engine, loop, sockets, caller, buyer = bridged(PCMU, PCMA)
    engine.bridge(caller, buyer)
    payload = bytes(range(160))
    deliver(loop, caller, sockets[0], (rtp(1, 0, payload), CALLER_PEER))
    deliver(loop, buyer, sockets[1], (rtp(1, 0, ulaw_to_alaw(payload), pt=8), BUYER_PEER))
    (to_buyer,) = sent_packets(sockets[1])
    (to_caller,) = sent_packets(sockets[0])
    assert (to_buyer.payload_type, to_buyer.payload) == (8, ulaw_to_alaw(payload))
    assert to_caller.payload_type == 0
    assert ulaw_to_alaw(to_caller.payload) == ulaw_to_alaw(payload)


def relay_through(config: MediaConfig, packets: list[bytes]) -> tuple[list[bytes], MediaLeg]:
    """Relay caller packets to a PCMA buyer; the bytes sent and the caller's leg."""
    engine, loop, sockets = fake_engine(config)
    caller = engine.open_leg(PCMU, remote=CALLER_PEER, name="caller")
    buyer = engine.open_leg(PCMA, remote=BUYER_PEER, name="buyer")
    buyer.outgoing = OutgoingStream(ssrc=0xB0B, sequence_number=65530, timestamp=2**32 - 320)
    engine.bridge(caller, buyer)
    for n, packet in enumerate(packets):
        loop.now = 100.0 + n * 0.02 + (0.004 if n % 2 else 0.0)
        deliver(loop, caller, sockets[0], (packet, CALLER_PEER))
    return [data for data, _ in sockets[1].sent], caller


def test_plain_audio_takes_the_short_path_to_the_general_paths_bytes() -> None:
    """The bridge's hot path gives the bytes, statistics and counters of the general path."""
    # A first source, then the caller's: a sequence wrap, a reordering, a loss, late arrivals.
    packets = [RtpPacket(0, 9, 1000, 8, b"\x55" * 160, marker=True).serialize()] + [
        rtp(s % 65536, 8000 + 160 * n, bytes(range(160)), ssrc=7)
        for n, s in enumerate((65534, 65535, 65537, 65536, 65539))
    ]
    short, fast_leg = relay_through(MediaConfig(), packets)
    general, slow_leg = relay_through(MediaConfig(relatch_after=1000), packets)
    assert fast_leg._route is not None
    assert slow_leg._route is not None
    assert (fast_leg._route.fast, slow_leg._route.fast) == (True, False)
    assert short == general
    assert fast_leg.stats() == slow_leg.stats()
    assert (fast_leg.stats().packets_in, fast_leg.stats().lost) == (6, 1)
    assert fast_leg.stats().jitter_ms > 0
    assert [RtpPacket.parse(p).payload for p in short[1:]] == [ulaw_to_alaw(bytes(range(160)))] * 5


def test_a_bridged_leg_relays_nothing_from_another_address() -> None:
    engine, loop, sockets, caller, buyer = bridged()
    engine.bridge(caller, buyer)
    deliver(loop, caller, sockets[0], (rtp(1, 0), CALLER_PEER), (rtp(2, 160), ("127.0.0.1", 6666)))
    assert len(sockets[1].sent) == 1
    assert caller.counters.rejected == 1


def test_a_bridged_leg_with_relatching_follows_its_peers_new_address() -> None:
    engine, loop, sockets = fake_engine(MediaConfig(relatch_after=2))
    caller = engine.open_leg(PCMU, remote=CALLER_PEER, name="caller")
    buyer = engine.open_leg(PCMU, remote=BUYER_PEER, name="buyer")
    engine.bridge(caller, buyer)
    moved = ("127.0.0.1", 4444)
    deliver(loop, caller, sockets[0], (rtp(1, 0), CALLER_PEER), (rtp(2, 160), moved))
    deliver(loop, caller, sockets[0], (rtp(3, 320), moved), (rtp(4, 480), moved))
    assert caller.destination == moved
    assert caller.counters.rejected == 1
    assert len(sockets[1].sent) == 3


def test_audio_with_padding_and_csrcs_is_transcoded_by_the_general_path() -> None:
    engine, loop, sockets, caller, buyer = bridged(PCMU, PCMA)
    engine.bridge(caller, buyer)
    payload = bytes(range(100, 260 - 100))
    packet = RtpPacket(0, 1, 0, 7, payload, csrc=(5, 6), padding=3).serialize()
    deliver(loop, caller, sockets[0], (packet, CALLER_PEER))
    (relayed,) = sent_packets(sockets[1])
    assert (relayed.payload_type, relayed.csrc, relayed.padding) == (8, (5, 6), 3)
    assert relayed.payload == ulaw_to_alaw(payload)


def test_telephone_events_are_relayed_with_the_other_legs_payload_type() -> None:
    engine, loop, sockets, caller, buyer = bridged(PCMU, LegCodec("PCMU", 0, 96))
    engine.bridge(caller, buyer)
    deliver(loop, caller, sockets[0], *[(p, CALLER_PEER) for p in dtmf_packets(5, 0, 1)])
    relayed = sent_packets(sockets[1])
    assert len(relayed) == 10
    assert {p.payload_type for p in relayed} == {96}
    assert TelephoneEvent.parse(relayed[-1].payload) == TelephoneEvent(5, True, 10, 1280)


def test_the_rest_of_the_accept_key_is_not_relayed_but_later_keys_are() -> None:
    """call-flow 1.2: the key that caused the bridge must not reach the caller."""
    engine, loop, sockets, caller, buyer = bridged()
    accept = dtmf_packets(1, 8000, 1)
    deliver(loop, buyer, sockets[1], *[(p, BUYER_PEER) for p in accept[:2]])
    engine.bridge(caller, buyer)
    deliver(loop, buyer, sockets[1], *[(p, BUYER_PEER) for p in accept[2:]])
    assert sockets[0].sent == []
    deliver(loop, buyer, sockets[1], *[(p, BUYER_PEER) for p in dtmf_packets(5, 16000, 20)])
    relayed = sent_packets(sockets[0])
    assert len(relayed) == 10
    assert {TelephoneEvent.parse(p.payload).event for p in relayed} == {5}


def test_a_leg_on_hold_gets_neither_relayed_nor_played_media_until_resumed() -> None:
    engine, loop, sockets, caller, buyer = bridged()
    bridge = engine.bridge(caller, buyer)
    caller.sends = False
    deliver(loop, buyer, sockets[1], *[(rtp(s, s * 160, ssrc=222), BUYER_PEER) for s in (1, 2)])
    assert sockets[0].sent == []
    caller.sends = True
    deliver(loop, buyer, sockets[1], (rtp(3, 480, ssrc=222), BUYER_PEER))
    (resumed,) = sent_packets(sockets[0])
    assert resumed.payload == b"\x11" * 160
    buyer.sends = False
    engine.unbridge(bridge)
    buyer.play([b"\x22" * 160])
    engine._tick(0.0)
    assert sockets[1].sent == []


def test_telephone_events_are_dropped_towards_a_leg_without_them() -> None:
    engine, loop, sockets, caller, buyer = bridged(PCMU, LegCodec("PCMU", 0, None))
    engine.bridge(caller, buyer)
    deliver(loop, caller, sockets[0], *[(p, CALLER_PEER) for p in dtmf_packets(5, 0, 1)])
    assert sockets[1].sent == []


def test_bridged_legs_refuse_playback_and_a_second_bridge() -> None:
    engine, _, _, caller, buyer = bridged()
    other = engine.open_leg(PCMU)
    engine.bridge(caller, buyer)
    with pytest.raises(LocalProtocolError, match="caller is bridged: unbridge it before playing"):
        caller.play([b"\x00" * 160])
    with pytest.raises(LocalProtocolError, match="buyer is already bridged"):
        engine.bridge(other, buyer)


async def test_unbridge_stops_relaying_and_allows_ringback_again() -> None:
    engine, loop, sockets, caller, buyer = bridged()
    bridge = engine.bridge(caller, buyer)
    engine.unbridge(bridge)
    await bridge.wait_closed()
    deliver(loop, buyer, sockets[1], (rtp(1, 0), BUYER_PEER))
    assert sockets[0].sent == []
    assert caller.bridge is None
    caller.play_ringback()
    engine._tick(0.0)
    (played,) = sent_packets(sockets[0])
    assert played.payload == ringback("north_america", encode=ulaw_encode).frame(0)


async def test_closing_a_bridged_leg_tears_the_bridge_down() -> None:
    engine, _, _, caller, buyer = bridged()
    bridge = engine.bridge(caller, buyer)
    engine.close_leg(buyer)
    await bridge.wait_closed()
    assert caller.bridge is None
    assert engine.bridges == set()


def fill_the_disk(recorder: CallRecorder | None) -> CallRecorder:
    """Make each write of ``recorder`` write its batch, then fail as a full disk does."""
    assert recorder is not None
    write = recorder.write

    def disk_full(batch: RecordingBatch) -> None:
        write(batch)
        raise OSError(errno.ENOSPC, "No space left on device")

    recorder.write = disk_full  # type: ignore[method-assign]
    return recorder


async def test_a_failed_recording_write_closes_the_file_and_the_bridge_relays_on(
    tmp_path: Path,
) -> None:
    engine, loop, sockets, caller, buyer = bridged()
    bridge = engine.bridge(caller, buyer, record_to=tmp_path / "call.wav")
    recorder = fill_the_disk(bridge.recorder)
    deliver(loop, caller, sockets[0], (rtp(1, 160), CALLER_PEER))
    loop.now += 1.0
    await engine._flush_recording(bridge)
    assert bridge.recorder is None
    assert recorder._writer.file is None
    assert bridge in engine.bridges
    deliver(loop, caller, sockets[0], (rtp(2, 320), CALLER_PEER))
    deliver(loop, buyer, sockets[1], (rtp(1, 160, ssrc=222), BUYER_PEER))
    assert [p.payload for p in sent_packets(sockets[1])] == [b"\x11" * 160] * 2
    assert [p.payload for p in sent_packets(sockets[0])] == [b"\x11" * 160]
    assert recorder.take(loop.now).chunks == []  # neither direction feeds it any more
    engine.unbridge(bridge)
    await bridge.wait_closed()


async def test_a_failed_leg_recording_write_closes_the_file_and_the_leg_goes_on(
    tmp_path: Path,
) -> None:
    engine, loop, sockets = fake_engine()
    leg = engine.open_leg(PCMU, remote=CALLER_PEER, name="caller")
    recording = engine.record(leg, tmp_path / "voicemail.wav")
    recorder = fill_the_disk(recording.recorder)
    deliver(loop, leg, sockets[0], (rtp(1, 160), CALLER_PEER))
    loop.now += 1.0
    await engine._flush_recording(recording)
    assert recording.recorder is None
    assert recorder._writer.file is None
    assert engine.recordings == {recording}
    deliver(loop, leg, sockets[0], (rtp(2, 320), CALLER_PEER))
    assert leg.counters.packets_in == 2
    assert recorder.take(loop.now).chunks == []
    engine.stop_recording(recording)
    await recording.wait_closed()
    assert engine.recordings == set()


def test_ringback_is_played_in_the_legs_codec_until_bridged() -> None:
    engine, _, sockets, caller, buyer = bridged(PCMA, PCMU)
    caller.play_ringback("europe")
    for tick in range(60):
        engine._tick(tick * 0.02)
    engine.bridge(caller, buyer)
    engine._tick(1.2)
    expected = ringback("europe", encode=alaw_encode)
    assert [p.payload for p in sent_packets(sockets[0])] == [expected.frame(n) for n in range(60)]
    assert {p.payload_type for p in sent_packets(sockets[0])} == {8}
