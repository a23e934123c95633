"""Ringback tones, silence and comfort noise as pure frame sources."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import NDArray

from callwhisper.errors import ConfigError
from callwhisper.media import g711
from callwhisper.media.tones import (
    ComfortNoiseSource,
    FrameSource,
    SilenceSource,
    ToneSource,
    ToneSpec,
    ringback,
)


def samples(source: FrameSource, start: int, count: int) -> NDArray[np.int16]:
    return np.frombuffer(b"".join(source.frame(i) for i in range(start, start + count)), "<i2")


def peak_frequencies(pcm: NDArray[np.int16], sample_rate: int = 8000) -> set[int]:
    """Frequencies (Hz, 1 Hz resolution over one second) holding most of the energy."""
    spectrum = np.abs(np.fft.rfft(pcm[:sample_rate].astype(np.float64)))
    return {int(f) for f in np.nonzero(spectrum > spectrum.max() / 2)[0]}


def rms_dbm0(pcm: NDArray[np.int16]) -> float:
    zero_dbm0_rms = 32636 / 10 ** (3.17 / 20) / np.sqrt(2)
    return float(20 * np.log10(np.sqrt(np.mean(pcm.astype(np.float64) ** 2)) / zero_dbm0_rms))


def is_on(source: FrameSource, index: int) -> bool:
    return any(source.frame(index))


@pytest.mark.parametrize(
    ("style", "frequencies", "on_frames", "period"),
    [
        ("north_america", {440, 480}, 100, 300),
        ("europe", {425}, 50, 250),
    ],
)
def test_ringback_frequencies_and_cadence(
    style: str, frequencies: set[int], on_frames: int, period: int
) -> None:
    source = ringback(style)  # type: ignore[arg-type]
    assert source.frame_samples == 160
    assert source.period == period
    assert all(len(source.frame(i)) == 320 for i in range(period))
    assert [is_on(source, i) for i in range(period)] == [True] * on_frames + [False] * (
        period - on_frames
    )
    assert peak_frequencies(samples(source, 0, 50)) == frequencies


def test_uk_ringback_is_a_double_ring() -> None:
    source = ringback("uk")
    # 400 ms on, 200 ms off, 400 ms on, 2 s off, in 20 ms frames.
    assert [is_on(source, i) for i in range(source.period)] == (
        [True] * 20 + [False] * 10 + [True] * 20 + [False] * 100
    )
    assert peak_frequencies(np.tile(samples(source, 0, 20), 3)) == {400, 450}


def test_ringback_level_is_minus_19_dbm0_per_frequency() -> None:
    pcm = samples(ringback("north_america"), 0, 100)
    # Two uncorrelated tones at -19 dBm0 each add up to -16 dBm0.
    assert rms_dbm0(pcm) == pytest.approx(-19 + 10 * np.log10(2), abs=0.05)


def test_frames_repeat_with_the_period_and_are_pure() -> None:
    source = ringback()
    assert source.frame(0) == source.frame(300) == source.frame(600)
    assert source.frame(7) == source.frame(7)
    assert source.frame(0) != source.frame(1)


def test_tone_is_continuous_across_frames() -> None:
    """No click between frames: consecutive samples never jump more than the tone allows."""
    pcm = samples(ringback(), 0, 100).astype(np.int32)
    amplitude = 2 * 32636 / 10 ** (3.17 / 20) * 10 ** (-19 / 20)
    max_step = amplitude * 2 * np.pi * 480 / 8000 + 1
    assert np.max(np.abs(np.diff(pcm))) <= max_step


def test_encoded_source_is_the_encoded_pcm() -> None:
    pcm_source = ringback("europe")
    encoded = ringback("europe", encode=g711.alaw_encode)
    assert encoded.frame(3) == g711.alaw_encode(pcm_source.frame(3))
    assert len(encoded.frame(3)) == 160


def test_silence_frames() -> None:
    assert SilenceSource().frame(12345) == bytes(320)
    assert SilenceSource(encode=g711.ulaw_encode).frame(0) == b"\xff" * 160
    assert SilenceSource(encode=g711.alaw_encode).frame(0) == b"\xd5" * 160
    assert SilenceSource(frame_ms=30).frame_samples == 240


def test_comfort_noise_is_quiet_deterministic_and_periodic() -> None:
    source = ComfortNoiseSource(level_dbm0=-60, seed=3, period_frames=50)
    pcm = samples(source, 0, 50)
    assert rms_dbm0(pcm) == pytest.approx(-60, abs=1)
    assert ComfortNoiseSource(level_dbm0=-60, seed=3).frame(9) == source.frame(9)
    assert source.frame(0) == source.frame(50)
    assert source.frame(0) != ComfortNoiseSource(level_dbm0=-60, seed=4).frame(0)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (ToneSpec((440.0,), ()), "tone cadence must be on/off pairs, got ()"),
        (ToneSpec((440.0,), (1000,)), "tone cadence must be on/off pairs, got (1000,)"),
        (
            ToneSpec((440.0,), (1000, 4010)),
            "tone cadence (1000, 4010) is not a whole number of 20 ms frames",
        ),
    ],
)
def test_bad_tone_specs_are_config_errors(spec: ToneSpec, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        ToneSource(spec)
    assert caught.value.problems == [message]
