"""The audio checks tell ringback, silence, noise and speech apart."""

from __future__ import annotations

import pytest

from callwhisper.media.g711 import alaw_decode
from callwhisper.media.rtp import RtpPacket
from callwhisper.media.tones import ringback
from tests.integration.peers.audio import (
    Audio,
    classify,
    from_pcm16,
    has_tone,
    is_silent,
    is_speech_like,
    rms_dbfs,
    rms_per_segment,
    sine,
    tone_cadence,
    white_noise,
)
from tests.integration.peers.sipp import SIPP_PCAP_DIR
from tests.unit.media.pcap import read_udp

pytestmark = pytest.mark.integration

RINGBACK = (440.0, 480.0)


def ringback_audio(seconds: float) -> Audio:
    """The engine's own North American ringback, decoded to PCM."""
    source = ringback()
    return from_pcm16(b"".join(source.frame(i) for i in range(int(seconds * 50))))


def sipp_speech() -> Audio:
    """The 7 s of speech of SIPp's g711a.pcap, decoded."""
    datagrams = read_udp(SIPP_PCAP_DIR / "g711a.pcap")
    packets = [RtpPacket.parse(datagram.payload) for datagram in datagrams if datagram.payload]
    return from_pcm16(b"".join(alaw_decode(packet.payload) for packet in packets))


def test_a_generated_440_480_tone_is_ringback() -> None:
    assert has_tone(sine(RINGBACK, 0.5), RINGBACK)


def test_one_of_the_two_frequencies_alone_is_not_ringback() -> None:
    assert not has_tone(sine([440.0], 0.5), RINGBACK)
    assert not has_tone(sine([480.0], 0.5), RINGBACK)


def test_silence_and_noise_are_not_a_tone() -> None:
    assert not has_tone(Audio(sine(RINGBACK, 0.5).samples * 0, 8000), RINGBACK)
    assert not has_tone(white_noise(0.5), RINGBACK)
    assert not has_tone(sine([1000.0], 0.5), RINGBACK)


def test_a_faint_tone_counts_as_silence() -> None:
    faint = sine(RINGBACK, 0.5, level_dbfs=-60)
    assert is_silent(faint)
    assert not has_tone(faint, RINGBACK)


def test_rms_levels_are_in_dbfs() -> None:
    assert rms_dbfs(sine([1000.0], 1.0, level_dbfs=-20)) == pytest.approx(-20, abs=0.01)
    assert rms_per_segment(sine([1000.0], 1.0, level_dbfs=-30), 0.25) == pytest.approx(
        [-30] * 4, abs=0.01
    )


def test_the_engines_ringback_has_the_2_on_4_off_cadence() -> None:
    assert tone_cadence(ringback_audio(12), RINGBACK) == [
        (True, 2.0),
        (False, 4.0),
        (True, 2.0),
        (False, 4.0),
    ]


def test_ringback_segments_are_tone_or_silence_never_broadband() -> None:
    assert set(classify(ringback_audio(6), RINGBACK)) == {"tone", "silence"}


def test_sipp_speech_is_speech_like_and_not_ringback() -> None:
    speech = sipp_speech()
    assert is_speech_like(speech.slice(1, 4))
    assert "broadband" in classify(speech, RINGBACK)
    assert "tone" not in classify(speech, RINGBACK)


@pytest.mark.parametrize(
    "audio",
    [
        pytest.param(ringback_audio(6), id="cadenced ringback"),
        pytest.param(sine(RINGBACK, 2), id="steady tone"),
        pytest.param(white_noise(2), id="steady noise"),
        pytest.param(sine([1000.0], 2, level_dbfs=-70), id="near silence"),
    ],
)
def test_tones_noise_and_silence_are_not_speech(audio: Audio) -> None:
    assert not is_speech_like(audio)
