"""Call-progress tones, silence and comfort noise as pure frame sources.

A frame source answers ``frame(index)`` with the PCM (or, given an encoder,
the G.711 payload) of the 20 ms frame number ``index`` since the source
started: no clocks, no state, so the caller's shared packet clock decides
what is played when. Each source precomputes one whole period, so a frame
costs a list index.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal, Protocol

import numpy as np
from numpy.typing import NDArray

from callwhisper.errors import ConfigError

__all__ = [
    "RINGBACK_TONES",
    "ComfortNoiseSource",
    "FrameSource",
    "RingbackStyle",
    "SilenceSource",
    "ToneSource",
    "ToneSpec",
    "ringback",
]

# ITU-T G.711: the coder overloads at +3.17 dBm0, i.e. a full-scale (32636) sine; 0 dBm0 is
# 3.17 dB below it.
_DBM0_PEAK: Final = 32636 / 10 ** (3.17 / 20)

Encoder = Callable[[bytes], bytes]


class FrameSource(Protocol):
    """Anything that gives frame number ``index`` of an endless stream of audio frames."""

    frame_samples: int

    def frame(self, index: int) -> bytes:
        """The frame at ``index`` (0 is the first frame played)."""
        ...


@dataclass(frozen=True, slots=True)
class ToneSpec:
    """A call-progress tone: frequencies played together, and a cadence.

    ``cadence`` alternates on and off durations in milliseconds, starting
    with on and repeating; ``level_dbm0`` is the level of each frequency.
    """

    frequencies: tuple[float, ...]
    cadence: tuple[int, ...]
    level_dbm0: float = -19.0


RingbackStyle = Literal["north_america", "europe", "uk"]

RINGBACK_TONES: Final[dict[RingbackStyle, ToneSpec]] = {
    # ANSI T1.401 / Bellcore: 440 + 480 Hz, 2 s on, 4 s off.
    "north_america": ToneSpec((440.0, 480.0), (2000, 4000)),
    # ETSI ES 201 970 (the CEPT tone used across Europe): 425 Hz, 1 s on, 4 s off.
    "europe": ToneSpec((425.0,), (1000, 4000)),
    # BT SIN 350: 400 + 450 Hz, 0.4 s on, 0.2 s off, 0.4 s on, 2 s off.
    "uk": ToneSpec((400.0, 450.0), (400, 200, 400, 2000)),
}
"""Ringback tones by the name used in configuration."""


class _PeriodicSource:
    """A source that repeats a precomputed period of frames."""

    frame_samples: int

    def __init__(self, pcm: NDArray[np.int16], frame_samples: int, encode: Encoder | None) -> None:
        self.frame_samples = frame_samples
        data = pcm.astype("<i2").tobytes()
        if encode is not None:
            data = encode(data)
        size = len(data) * frame_samples // len(pcm)
        self._frames = [data[i : i + size] for i in range(0, len(data), size)]

    @property
    def period(self) -> int:
        """Number of frames after which the source repeats itself."""
        return len(self._frames)

    def frame(self, index: int) -> bytes:
        """The frame at ``index`` (0 is the first frame played)."""
        return self._frames[index % len(self._frames)]


class ToneSource(_PeriodicSource):
    """A tone with its cadence, as 16-bit PCM frames (or encoded with ``encode``)."""

    def __init__(
        self,
        spec: ToneSpec,
        *,
        sample_rate: int = 8000,
        frame_ms: int = 20,
        encode: Encoder | None = None,
    ) -> None:
        """Precompute one cadence period of ``spec``; ``encode`` e.g. ``g711.ulaw_encode``."""
        if not spec.cadence or len(spec.cadence) % 2:
            raise ConfigError([f"tone cadence must be on/off pairs, got {spec.cadence}"])
        if sum(spec.cadence) % frame_ms:
            raise ConfigError(
                [f"tone cadence {spec.cadence} is not a whole number of {frame_ms} ms frames"]
            )
        segments = [ms * sample_rate // 1000 for ms in spec.cadence]
        n = np.arange(sum(segments))
        amplitude = _DBM0_PEAK * 10 ** (spec.level_dbm0 / 20)
        wave = sum(
            (np.sin(2 * np.pi * f * n / sample_rate) for f in spec.frequencies),
            start=np.zeros(len(n)),
        )
        gate = np.concatenate([np.full(length, i % 2 == 0) for i, length in enumerate(segments)])
        pcm = np.round(amplitude * wave * gate).astype(np.int16)
        super().__init__(pcm, sample_rate * frame_ms // 1000, encode)


class SilenceSource(_PeriodicSource):
    """Digital silence frames (encoded: 0xFF for mu-law, 0xD5 for A-law)."""

    def __init__(
        self, *, sample_rate: int = 8000, frame_ms: int = 20, encode: Encoder | None = None
    ) -> None:
        """Silence frames of ``frame_ms`` at ``sample_rate``."""
        frame_samples = sample_rate * frame_ms // 1000
        super().__init__(np.zeros(frame_samples, dtype=np.int16), frame_samples, encode)


class ComfortNoiseSource(_PeriodicSource):
    """Low-level white noise, so a line on hold does not sound dead.

    Deterministic for a given ``seed``; repeats after ``period_frames``.
    """

    def __init__(
        self,
        *,
        level_dbm0: float = -60.0,
        seed: int = 0,
        period_frames: int = 50,
        sample_rate: int = 8000,
        frame_ms: int = 20,
        encode: Encoder | None = None,
    ) -> None:
        """Noise with an RMS level of ``level_dbm0``."""
        frame_samples = sample_rate * frame_ms // 1000
        rms = _DBM0_PEAK / np.sqrt(2) * 10 ** (level_dbm0 / 20)
        noise = np.random.default_rng(seed).normal(0.0, rms, frame_samples * period_frames)
        pcm = np.clip(np.round(noise), -32768, 32767).astype(np.int16)
        super().__init__(pcm, frame_samples, encode)


def ringback(
    style: RingbackStyle = "north_america", *, encode: Encoder | None = None
) -> ToneSource:
    """The ringback tone of ``style`` as 20 ms frames at 8 kHz."""
    return ToneSource(RINGBACK_TONES[style], encode=encode)
