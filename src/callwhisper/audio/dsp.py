"""Signal conditioning shared by text-to-speech and recordings import.

Every sound callwhisper plays goes through the same chain, so a rendered
whisper and an uploaded recording reach the buyer at the same loudness:

1. :func:`to_mono` averages the channels;
2. :func:`resample` converts to 8 kHz with libsoxr's high-quality filter, which
   also removes everything above 4 kHz that would otherwise alias;
3. :func:`normalize` brings the *active* speech level to
   :data:`TARGET_RMS_DBFS` under a :data:`PEAK_CEILING_DBFS` ceiling;
4. :func:`to_pcm16` converts to signed 16-bit with clipping.

Levels are in dBFS with full scale 1.0 (``20 * log10(rms)``): a full-scale
square wave is 0 dBFS and a full-scale sine is about -3 dBFS.

Loudness choice: -18 dBFS active RMS is roughly -12 dBm0 on a G.711 line (the
G.711 digital milliwatt, 0 dBm0, is a sine about 3.2 dB below full scale), a
little hotter than average conversational speech so that a whisper is clearly
heard by an agent over a noisy call-centre floor, while leaving 17 dB of headroom
for peaks. The level is measured on 20 ms blocks above :data:`GATE_DBFS` only,
a simplified form of the gating in ITU-R BS.1770, so leading silence and pauses
between words do not make a recording louder than a continuous one. Gain is then
reduced, never distorted, when the loudest sample would pass the -1 dBFS
ceiling: very peaky material ends up slightly quieter than the target rather
than clipped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
import soxr

SAMPLE_RATE: Final = 8000
"""Telephony sample rate (ITU-T G.711), in hertz."""

TARGET_RMS_DBFS: Final = -18.0
"""Active speech level that :func:`normalize` aims for."""

PEAK_CEILING_DBFS: Final = -1.0
"""No sample leaves :func:`normalize` louder than this."""

GATE_DBFS: Final = -50.0
"""Blocks quieter than this are pauses: they do not count towards the speech level."""

BLOCK_SECONDS: Final = 0.02
"""Length of a level-measurement block; 20 ms is also one RTP packet of G.711."""

FloatSignal = npt.NDArray[np.float32]
"""Mono samples in [-1.0, 1.0] (values outside are allowed until :func:`to_pcm16`)."""


@dataclass(frozen=True)
class Levels:
    """Duration and loudness figures of a mono signal."""

    duration: float
    """Length in seconds."""
    rms_dbfs: float
    """RMS level over the whole signal; ``-inf`` for digital silence."""
    active_rms_dbfs: float
    """RMS level over the blocks above :data:`GATE_DBFS`; ``-inf`` when there are none."""
    peak_dbfs: float
    """Level of the loudest sample; ``-inf`` for digital silence."""

    @property
    def silent(self) -> bool:
        """True when no 20 ms block rises above :data:`GATE_DBFS`."""
        return self.active_rms_dbfs == -math.inf


def to_dbfs(amplitude: float) -> float:
    """Convert a linear amplitude (full scale 1.0) to dBFS; 0 gives ``-inf``."""
    return 20.0 * math.log10(amplitude) if amplitude > 0.0 else -math.inf


def from_dbfs(level: float) -> float:
    """Convert a level in dBFS to a linear amplitude (full scale 1.0)."""
    return float(10.0 ** (level / 20.0))


def to_mono(samples: npt.NDArray[np.floating]) -> FloatSignal:
    """Average a ``(frames, channels)`` or ``(frames,)`` array into float32 mono."""
    if samples.ndim == 1:
        mono: FloatSignal = samples.astype(np.float32, copy=False)
        return mono
    if samples.ndim != 2:
        raise ValueError(f"expected 1 or 2 dimensions, got {samples.ndim}")
    mixed: FloatSignal = samples.mean(axis=1, dtype=np.float64).astype(np.float32)
    return mixed


def resample(samples: FloatSignal, rate: int) -> FloatSignal:
    """Resample mono float samples from ``rate`` hertz to :data:`SAMPLE_RATE`."""
    if rate <= 0:
        raise ValueError(f"sample rate must be positive, got {rate}")
    if rate == SAMPLE_RATE or samples.size == 0:
        return samples
    out: FloatSignal = soxr.resample(samples, rate, SAMPLE_RATE, quality="HQ")
    return out


def measure(samples: npt.NDArray[np.floating], rate: int = SAMPLE_RATE) -> Levels:
    """Measure duration, whole and gated RMS, and peak of mono float samples."""
    x = samples.astype(np.float64)
    duration = x.size / rate
    if x.size == 0:
        return Levels(duration, -math.inf, -math.inf, -math.inf)
    squares = x * x
    block = max(1, round(rate * BLOCK_SECONDS))
    # A trailing partial block is measured too: a short clip is still speech.
    n_blocks = -(-x.size // block)
    padded = np.zeros(n_blocks * block)
    padded[: x.size] = squares
    sums = padded.reshape(n_blocks, block).sum(axis=1)
    counts = np.full(n_blocks, block)
    counts[-1] = x.size - (n_blocks - 1) * block
    block_ms = sums / counts
    active = block_ms > from_dbfs(GATE_DBFS) ** 2
    active_ms = float(sums[active].sum() / counts[active].sum()) if active.any() else 0.0
    return Levels(
        duration=duration,
        rms_dbfs=to_dbfs(math.sqrt(float(squares.mean()))),
        active_rms_dbfs=to_dbfs(math.sqrt(active_ms)),
        peak_dbfs=to_dbfs(float(np.abs(x).max())),
    )


def normalize(samples: FloatSignal, rate: int = SAMPLE_RATE) -> FloatSignal:
    """Scale mono samples to the telephony loudness described in this module.

    A signal without any block above the gate is returned unchanged: amplifying
    silence would only amplify its noise.
    """
    levels = measure(samples, rate)
    if levels.silent:
        return samples
    gain_db = min(
        TARGET_RMS_DBFS - levels.active_rms_dbfs,
        PEAK_CEILING_DBFS - levels.peak_dbfs,
    )
    return (samples * np.float32(from_dbfs(gain_db))).astype(np.float32)


def to_pcm16(samples: FloatSignal) -> npt.NDArray[np.int16]:
    """Convert float samples to signed 16-bit, clipping instead of wrapping around."""
    finite = np.nan_to_num(samples, nan=0.0, posinf=1.0, neginf=-1.0)
    scaled = np.rint(finite.astype(np.float64) * 32767.0)
    return np.clip(scaled, -32768, 32767).astype(np.int16)


def condition(samples: npt.NDArray[np.floating], rate: int) -> npt.NDArray[np.int16]:
    """Run the whole chain: mono, 8 kHz, normalised loudness, 16-bit."""
    return to_pcm16(normalize(resample(to_mono(samples), rate)))
