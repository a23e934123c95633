"""The conditioning chain: downmix, resampling, level measurement, normalisation."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pytest

from callwhisper.audio.dsp import (
    PEAK_CEILING_DBFS,
    SAMPLE_RATE,
    TARGET_RMS_DBFS,
    condition,
    from_dbfs,
    measure,
    normalize,
    resample,
    to_dbfs,
    to_mono,
    to_pcm16,
)
from tests.unit.audio.helpers import tone


def dominant_frequency(samples: npt.NDArray[np.floating], rate: int) -> float:
    """Frequency of the strongest FFT bin."""
    spectrum = np.abs(np.fft.rfft(samples))
    return float(np.fft.rfftfreq(samples.size, 1 / rate)[int(spectrum.argmax())])


def test_dbfs_conversions() -> None:
    assert to_dbfs(1.0) == 0.0
    assert to_dbfs(0.0) == -math.inf
    assert from_dbfs(-20.0) == pytest.approx(0.1)


def test_to_mono_averages_channels() -> None:
    stereo = np.array([[1.0, 0.0], [0.5, -0.5], [0.25, 0.75]], dtype=np.float32)
    assert to_mono(stereo).tolist() == [0.5, 0.0, 0.5]


def test_to_mono_keeps_mono() -> None:
    mono = np.array([0.1, 0.2], dtype=np.float32)
    assert to_mono(mono).tolist() == mono.tolist()


def test_to_mono_rejects_three_dimensions() -> None:
    with pytest.raises(ValueError, match="1 or 2 dimensions"):
        to_mono(np.zeros((2, 2, 2)))


def test_resample_keeps_duration_and_pitch() -> None:
    out = resample(tone(1000, 1.0, 44100), 44100)
    assert out.size == SAMPLE_RATE
    assert dominant_frequency(out, SAMPLE_RATE) == 1000


def test_resample_removes_content_above_4khz_instead_of_aliasing() -> None:
    out = resample(tone(6000, 1.0, 44100, 0.5), 44100)
    # a naive decimation would fold the tone to 2 kHz at full level
    assert measure(out[400:-400]).rms_dbfs < -60


def test_resample_is_identity_at_8khz() -> None:
    samples = tone(440, 0.1, SAMPLE_RATE)
    assert resample(samples, SAMPLE_RATE) is samples


def test_resample_rejects_a_non_positive_rate() -> None:
    with pytest.raises(ValueError, match="positive"):
        resample(tone(440, 0.1, SAMPLE_RATE), 0)


def test_measure_full_scale_square_is_0_dbfs() -> None:
    square = np.where(np.arange(800) % 2, 1.0, -1.0).astype(np.float32)
    levels = measure(square)
    assert levels.rms_dbfs == 0.0
    assert levels.peak_dbfs == 0.0
    assert levels.duration == 0.1


def test_measure_gates_out_pauses() -> None:
    burst = tone(440, 1.0, SAMPLE_RATE, 0.5)
    with_pause = np.concatenate([burst, np.zeros(SAMPLE_RATE, dtype=np.float32)])
    levels = measure(with_pause)
    assert levels.active_rms_dbfs == pytest.approx(-9.03, abs=0.05)
    assert levels.rms_dbfs == pytest.approx(-12.04, abs=0.05)


def test_measure_calls_digital_silence_silent() -> None:
    levels = measure(np.zeros(800, dtype=np.float32))
    assert levels.silent
    assert levels.rms_dbfs == levels.peak_dbfs == -math.inf


def test_measure_calls_faint_noise_silent() -> None:
    noise = np.random.default_rng(1).normal(0, from_dbfs(-70), 8000).astype(np.float32)
    assert measure(noise).silent


def test_measure_of_nothing() -> None:
    assert measure(np.zeros(0, dtype=np.float32)).silent


def test_normalize_brings_a_quiet_voice_to_target() -> None:
    quiet = tone(440, 1.0, SAMPLE_RATE, from_dbfs(-40))
    assert measure(normalize(quiet)).active_rms_dbfs == pytest.approx(TARGET_RMS_DBFS, abs=0.01)


def test_normalize_limits_peaks_rather_than_clipping() -> None:
    clicks = np.zeros(SAMPLE_RATE, dtype=np.float32)
    clicks[::400] = 1.0
    levels = measure(normalize(clicks))
    assert levels.peak_dbfs == pytest.approx(PEAK_CEILING_DBFS, abs=0.01)
    assert levels.active_rms_dbfs < TARGET_RMS_DBFS


def test_normalize_leaves_silence_alone() -> None:
    silence = np.zeros(800, dtype=np.float32)
    assert normalize(silence) is silence


def test_to_pcm16_clips_instead_of_wrapping() -> None:
    pcm = to_pcm16(np.array([1.5, -1.5, 0.5, np.nan, np.inf], dtype=np.float32))
    assert pcm.tolist() == [32767, -32768, 16384, 0, 32767]


def test_condition_runs_the_whole_chain() -> None:
    stereo = np.stack([tone(500, 2.0, 16000, 0.01)] * 2, axis=1)
    pcm = condition(stereo, 16000)
    assert pcm.dtype == np.int16
    assert pcm.size == 2 * SAMPLE_RATE
    levels = measure(pcm.astype(np.float32) / 32768)
    assert levels.active_rms_dbfs == pytest.approx(TARGET_RMS_DBFS, abs=0.1)
