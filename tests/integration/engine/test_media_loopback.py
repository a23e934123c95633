"""The media engine over real loopback sockets: relay, DTMF capture, playback, recording."""

from __future__ import annotations

import asyncio
import errno
import socket
import threading
import wave
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from callwhisper.engine.media import (
    DigitReceived,
    MediaConfig,
    MediaEngine,
    MediaEvent,
    PlaybackFinished,
)
from callwhisper.engine.playback import PCMA, PCMU
from callwhisper.engine.recording import RecordingBatch
from callwhisper.media.g711 import (
    alaw_decode,
    alaw_encode,
    alaw_to_ulaw,
    ulaw_decode,
    ulaw_encode,
    ulaw_to_alaw,
)
from callwhisper.media.rtp import RtpPacket
from tests.unit.media.pcap import SIPP_PCAP_DIR, read_udp

pytestmark = pytest.mark.integration

Address = tuple[str, int]


@pytest.fixture
async def engine() -> AsyncIterator[MediaEngine]:
    media = MediaEngine(MediaConfig("127.0.0.1", 31000, 31999))
    await media.start()
    yield media
    await media.stop()


@pytest.fixture
def peers() -> Iterator[tuple[socket.socket, socket.socket]]:
    """Two plain UDP sockets standing for the caller's and the buyer's phones."""
    pair = []
    for _ in range(2):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        pair.append(sock)
    yield pair[0], pair[1]
    for sock in pair:
        sock.close()


def address(sock: socket.socket) -> Address:
    host, port = sock.getsockname()
    return (host, port)


async def receive(sock: socket.socket, count: int) -> list[RtpPacket]:
    """The next ``count`` RTP packets arriving at ``sock``, within a few seconds."""
    loop = asyncio.get_running_loop()
    packets: list[RtpPacket] = []
    async with asyncio.timeout(3):
        while len(packets) < count:
            data, _ = await loop.sock_recvfrom(sock, 2048)
            packets.append(RtpPacket.parse(data))
    return packets


def constant_frame(value: int, encode: Callable[[bytes], bytes]) -> bytes:
    """One 20 ms G.711 frame of a constant sample value."""
    return encode(np.full(160, value, dtype="<i2").tobytes())


def read_wav(path: Path, channels: int) -> npt.NDArray[np.int16]:
    """The samples of a recording, one column per channel, once its format is checked."""
    with wave.open(str(path), "rb") as wav:
        assert (wav.getnchannels(), wav.getframerate(), wav.getsampwidth()) == (channels, 8000, 2)
        samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    return samples.reshape(-1, channels)


async def test_bridge_relays_both_ways_with_continuous_numbering(
    engine: MediaEngine, peers: tuple[socket.socket, socket.socket]
) -> None:
    phone_a, phone_b = peers
    caller = engine.open_leg(PCMU, remote=address(phone_a))
    buyer = engine.open_leg(PCMU, remote=address(phone_b))
    assert caller.local_address[1] % 2 == 0
    assert buyer.local_address[1] % 2 == 0
    engine.bridge(caller, buyer)
    for n in range(20):
        phone_a.sendto(
            RtpPacket(0, 1000 + n, 160 * n, 0xA, bytes([n]) * 160).serialize(), caller.local_address
        )
        phone_b.sendto(
            RtpPacket(0, 60000 + n, 160 * n, 0xB, bytes([n]) * 160).serialize(), buyer.local_address
        )
    at_b = await receive(phone_b, 20)
    at_a = await receive(phone_a, 20)
    for packets, leg in ((at_b, buyer), (at_a, caller)):
        first = packets[0].sequence_number
        assert [p.sequence_number for p in packets] == [(first + n) % 65536 for n in range(20)]
        assert [p.payload for p in packets] == [bytes([n]) * 160 for n in range(20)]
        assert {p.ssrc for p in packets} == {leg.outgoing.ssrc}
    assert caller.stats().packets_in == 20
    assert buyer.stats().packets_out == 20
    assert caller.stats().lost == 0


def test_a_burst_is_relayed_in_full_on_uvloop(peers: tuple[socket.socket, socket.socket]) -> None:
    """The server's loop (uvloop, when installed) watches the engine's epoll set like a socket."""
    uvloop = pytest.importorskip("uvloop")
    phone_a, phone_b = peers

    async def relay_burst() -> None:
        engine = MediaEngine(MediaConfig("127.0.0.1", 32000, 32999))
        await engine.start()
        try:
            caller = engine.open_leg(PCMU, remote=address(phone_a))
            buyer = engine.open_leg(PCMA, remote=address(phone_b))
            engine.bridge(caller, buyer)
            # Queued before the loop runs again: each leg's socket holds the whole burst.
            for n in range(100):
                payload = bytes([n]) * 160
                phone_a.sendto(
                    RtpPacket(0, n, 160 * n, 0xA, payload).serialize(), caller.local_address
                )
                phone_b.sendto(
                    RtpPacket(8, n, 160 * n, 0xB, payload).serialize(), buyer.local_address
                )
            async with asyncio.timeout(3):
                # uvloop has no sock_recvfrom: wait on the counters, read the phones after.
                while caller.counters.packets_out + buyer.counters.packets_out < 200:  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
        finally:
            await engine.stop()

    uvloop.run(relay_burst())
    at_b, at_a = ([RtpPacket.parse(phone.recv(2048)) for _ in range(100)] for phone in peers[::-1])
    for packets in (at_b, at_a):
        first = packets[0].sequence_number
        assert [p.sequence_number for p in packets] == [(first + n) % 65536 for n in range(100)]
    assert [p.payload for p in at_b] == [ulaw_to_alaw(bytes([n]) * 160) for n in range(100)]
    assert [p.payload for p in at_a] == [alaw_to_ulaw(bytes([n]) * 160) for n in range(100)]


async def test_sipp_dtmf_capture_gives_exactly_one_digit(
    engine: MediaEngine, peers: tuple[socket.socket, socket.socket]
) -> None:
    phone, _ = peers
    events: list[MediaEvent] = []
    leg = engine.open_leg(PCMA, on_event=events.append, name="buyer")
    datagrams = [d for d in read_udp(SIPP_PCAP_DIR / "dtmf_2833_1.pcap") if d.payload]
    for datagram in datagrams:
        phone.sendto(datagram.payload, leg.local_address)
    async with asyncio.timeout(3):
        # The counters are plain integers, not awaitable: poll until the leg read them all.
        while leg.counters.packets_in < len(datagrams):  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    assert [e for e in events if isinstance(e, DigitReceived)] == [
        DigitReceived("buyer", "1", events[0].at)
    ]
    assert leg.counters.malformed == 0


async def test_playback_of_n_frames_sends_n_packets_at_the_packet_time(
    engine: MediaEngine, peers: tuple[socket.socket, socket.socket]
) -> None:
    phone, _ = peers
    finished = asyncio.Event()
    events: list[MediaEvent] = []

    def on_event(event: MediaEvent) -> None:
        events.append(event)
        finished.set()

    leg = engine.open_leg(PCMU, remote=address(phone), on_event=on_event, name="buyer")
    frames = [bytes([n]) * 160 for n in range(25)]
    loop = asyncio.get_running_loop()
    started = loop.time()
    ident = leg.play(frames)
    packets = await receive(phone, 25)
    elapsed = loop.time() - started
    await asyncio.wait_for(finished.wait(), 1)
    assert [p.payload for p in packets] == frames
    assert [p.marker for p in packets] == [True] + [False] * 24
    assert [(p.sequence_number - packets[0].sequence_number) % 65536 for p in packets] == list(
        range(25)
    )
    assert elapsed > 24 * 0.02 * 0.5  # paced by the clock, not sent in one burst
    assert events == [PlaybackFinished("buyer", ident, events[0].at)]


async def test_recording_has_the_caller_left_and_the_buyer_right(
    engine: MediaEngine, peers: tuple[socket.socket, socket.socket], tmp_path: Path
) -> None:
    phone_a, phone_b = peers
    caller = engine.open_leg(PCMU, remote=address(phone_a))
    buyer = engine.open_leg(PCMA, remote=address(phone_b))
    path = tmp_path / "call.wav"
    bridge = engine.bridge(caller, buyer, record_to=path)
    caller_says = constant_frame(1000, ulaw_encode)
    buyer_says = constant_frame(-2000, alaw_encode)
    for n in range(40):
        phone_a.sendto(RtpPacket(0, n, 160 * n, 0xA, caller_says).serialize(), caller.local_address)
        phone_b.sendto(RtpPacket(8, n, 160 * n, 0xB, buyer_says).serialize(), buyer.local_address)
        await asyncio.sleep(0.02)
    await receive(phone_b, 40)
    await receive(phone_a, 40)
    engine.unbridge(bridge)
    await bridge.wait_closed()
    samples = read_wav(path, 2)
    left_value = np.frombuffer(ulaw_decode(caller_says), dtype="<i2")[0]
    right_value = np.frombuffer(alaw_decode(buyer_says), dtype="<i2")[0]
    assert set(np.unique(samples[:, 0])) <= {0, left_value}
    assert set(np.unique(samples[:, 1])) <= {0, right_value}
    assert np.count_nonzero(samples[:, 0] == left_value) == 40 * 160
    assert np.count_nonzero(samples[:, 1] == right_value) == 40 * 160


async def test_a_leg_recorded_alone_gives_a_mono_wav_of_what_it_received(
    engine: MediaEngine, peers: tuple[socket.socket, socket.socket], tmp_path: Path
) -> None:
    """A voicemail: the caller's audio is recorded while a prompt plays to it; closing ends it."""
    phone, _ = peers
    caller = engine.open_leg(PCMA, remote=address(phone))
    path = tmp_path / "voicemail.wav"
    recording = engine.record(caller, path)
    caller.play([constant_frame(500, alaw_encode)] * 10)  # the beep: sent, never recorded
    says = constant_frame(-1500, alaw_encode)
    for n in range(30):
        phone.sendto(RtpPacket(8, n, 160 * n, 0xC, says).serialize(), caller.local_address)
        await asyncio.sleep(0.02)
    assert len(await receive(phone, 10)) == 10
    await asyncio.sleep(0.05)
    engine.close_leg(caller)
    await recording.wait_closed()
    assert engine.recordings == set()
    samples = read_wav(path, 1)
    value = np.frombuffer(alaw_decode(says), dtype="<i2")[0]
    assert set(np.unique(samples)) <= {0, value}
    assert np.count_nonzero(samples == value) == 30 * 160


async def test_a_stopped_leg_recording_takes_no_more_audio(
    engine: MediaEngine, peers: tuple[socket.socket, socket.socket], tmp_path: Path
) -> None:
    phone, _ = peers
    caller = engine.open_leg(PCMU, remote=address(phone))
    path = tmp_path / "voicemail.wav"
    recording = engine.record(caller, path)
    says = constant_frame(800, ulaw_encode)
    for n in range(10):
        phone.sendto(RtpPacket(0, n, 160 * n, 0xD, says).serialize(), caller.local_address)
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.05)
    engine.stop_recording(recording)
    for n in range(10, 20):
        phone.sendto(RtpPacket(0, n, 160 * n, 0xD, says).serialize(), caller.local_address)
    await recording.wait_closed()
    samples = read_wav(path, 1)
    value = np.frombuffer(ulaw_decode(says), dtype="<i2")[0]
    assert set(np.unique(samples)) <= {0, value}
    assert np.count_nonzero(samples == value) == 10 * 160
    again = engine.record(caller, tmp_path / "again.wav")  # a new one may start
    assert engine.recordings == {again}
    assert again is not recording


async def test_stop_closes_every_leg(engine: MediaEngine) -> None:
    legs = [engine.open_leg(PCMU) for _ in range(3)]
    assert len({leg.local_address[1] for leg in legs}) == 3
    await engine.stop()
    assert all(leg.closed for leg in legs)
    assert engine.legs == {}


async def test_a_write_failing_while_its_bridge_is_torn_down_leaves_what_it_wrote(
    engine: MediaEngine, peers: tuple[socket.socket, socket.socket], tmp_path: Path
) -> None:
    """The close does not write the abandoned file again from its start, and the failure does
    not reach the caller's next bridge, which records on."""
    phone_a, phone_b = peers
    caller = engine.open_leg(PCMU, remote=address(phone_a))
    buyer = engine.open_leg(PCMU, remote=address(phone_b))
    first = engine.bridge(caller, buyer, record_to=tmp_path / "first.wav")
    recorder = first.recorder
    assert recorder is not None
    write = recorder.write
    written: list[int] = []  # the file's length in samples after each write that succeeded
    failing, release = threading.Event(), threading.Event()

    def disk_fills(batch: RecordingBatch) -> None:
        if written and not failing.is_set():  # the engine's second flush fails, slowly
            failing.set()
            release.wait(3)
            raise OSError(errno.ENOSPC, "No space left on device")
        write(batch)
        written.append(recorder._writer.written)

    recorder.write = disk_fills  # type: ignore[method-assign]
    says = constant_frame(1000, ulaw_encode)
    n = 0
    while not failing.is_set():
        phone_a.sendto(RtpPacket(0, n, 160 * n, 0xA, says).serialize(), caller.local_address)
        n += 1
        await asyncio.sleep(0.02)
        assert n < 150, "the engine never flushed the recording twice"
    engine.unbridge(first)
    other = engine.open_leg(PCMU, remote=address(phone_b))
    second = engine.bridge(caller, other, record_to=tmp_path / "second.wav")
    await asyncio.sleep(0.05)  # the first recording's close waits for the failing write
    release.set()
    await asyncio.wait_for(first.wait_closed(), 3)
    assert first.recorder is None
    assert second.recorder is not None
    for m in range(10):
        phone_a.sendto(
            RtpPacket(0, n + m, 160 * (n + m), 0xA, says).serialize(), caller.local_address
        )
        await asyncio.sleep(0.02)
    async with asyncio.timeout(3):
        while caller.counters.packets_in < n + 10:  # noqa: ASYNC110 - counters are not awaitable
            await asyncio.sleep(0.01)
    engine.unbridge(second)
    await second.wait_closed()
    assert len(written) == 1  # nothing wrote the first file after its failure
    assert len(read_wav(tmp_path / "first.wav", 2)) == written[0] > 0
    value = np.frombuffer(ulaw_decode(says), dtype="<i2")[0]
    assert np.count_nonzero(read_wav(tmp_path / "second.wav", 2)[:, 0] == value) == 10 * 160
