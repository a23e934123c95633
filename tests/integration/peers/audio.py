"""Who heard what: tone, silence and speech checks on recorded audio.

Built for the ``sndfile`` dumps of baresip and any 16-bit mono WAV. Every
check works on short segments (100 ms by default), so a test can say
"until the bridge the caller heard only ringback and silence, never
speech" by classifying each segment:

- a **tone** segment has most of its energy at the given frequencies,
  measured with the Goertzel algorithm (the power of one DFT bin);
- a **silent** segment is below a level in dBFS;
- a **broadband** segment is neither: speech, music or noise. Speech is
  told from steady noise by its syllabic loudness changes
  (:func:`is_speech_like`).
"""

from __future__ import annotations

import math
import wave
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

import numpy as np
from numpy.typing import NDArray

Samples = NDArray[np.float64]
"""Samples scaled to [-1, 1)."""

SegmentKind = Literal["silence", "tone", "broadband"]

SILENCE_DBFS: Final = -50.0
"""Below this RMS level a segment counts as silence (G.711 idle noise is far lower)."""
TONE_SHARE: Final = 0.7
"""Share of a segment's energy that the tone's frequencies must hold."""
SEGMENT_SECONDS: Final = 0.1
BAND_HZ: Final = (300.0, 3400.0)
"""The telephone band (ITU-T G.712)."""


@dataclass(frozen=True, slots=True)
class Audio:
    """Mono samples and their rate."""

    samples: Samples
    rate: int

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return len(self.samples) / self.rate

    def slice(self, start: float, end: float | None = None) -> Audio:
        """The part between two times in seconds."""
        stop = None if end is None else int(end * self.rate)
        return Audio(self.samples[int(start * self.rate) : stop], self.rate)

    def segments(self, seconds: float = SEGMENT_SECONDS) -> list[Audio]:
        """Consecutive whole segments of ``seconds`` (a shorter tail is dropped)."""
        size = max(1, int(seconds * self.rate))
        count = len(self.samples) // size
        return [Audio(self.samples[i * size : (i + 1) * size], self.rate) for i in range(count)]


def load_wav(path: Path) -> Audio:
    """Read a 16-bit PCM WAV; a multi-channel file is mixed down to mono."""
    with wave.open(str(path), "rb") as source:
        if source.getsampwidth() != 2:
            raise ValueError(f"{path} has {8 * source.getsampwidth()}-bit samples, expected 16")
        channels = source.getnchannels()
        rate = source.getframerate()
        raw = source.readframes(source.getnframes())
    data = np.frombuffer(raw, dtype="<i2").astype(np.float64) / 32768.0
    if channels > 1:
        data = data.reshape(-1, channels).mean(axis=1)
    return Audio(data, rate)


def from_pcm16(pcm: bytes, rate: int = 8000) -> Audio:
    """Audio from raw 16-bit little-endian mono PCM."""
    return Audio(np.frombuffer(pcm, dtype="<i2").astype(np.float64) / 32768.0, rate)


def rms_dbfs(audio: Audio) -> float:
    """RMS level in dB relative to a full-scale square wave; -inf for digital silence."""
    if len(audio.samples) == 0:
        return -math.inf
    rms = float(np.sqrt(np.mean(audio.samples**2)))
    return 20 * math.log10(rms) if rms > 0 else -math.inf


def rms_per_segment(audio: Audio, seconds: float = SEGMENT_SECONDS) -> list[float]:
    """The RMS level (dBFS) of each segment."""
    return [rms_dbfs(segment) for segment in audio.segments(seconds)]


def is_silent(audio: Audio, threshold_dbfs: float = SILENCE_DBFS) -> bool:
    """Whether the whole audio stays below ``threshold_dbfs``."""
    return rms_dbfs(audio) < threshold_dbfs


def goertzel_power(samples: Samples, rate: int, frequency: float) -> float:
    """|X(f)|^2 of the samples at one frequency (Goertzel, any frequency, no FFT grid)."""
    coefficient = 2 * math.cos(2 * math.pi * frequency / rate)
    previous = before = 0.0
    for sample in samples.tolist():
        previous, before = sample + coefficient * previous - before, previous
    return previous * previous + before * before - coefficient * previous * before


def tone_share(audio: Audio, frequency: float) -> float:
    """The share of the audio's energy at ``frequency``: about 1 for a pure tone there.

    A sine of amplitude A over N samples gives |X|^2 = (A N / 2)^2 and an
    energy of A^2 N / 2, hence the 2 / N normalisation.
    """
    energy = float(np.sum(audio.samples**2))
    if energy == 0.0:
        return 0.0
    n = len(audio.samples)
    return 2 * goertzel_power(audio.samples, audio.rate, frequency) / (n * energy)


def has_tone(
    audio: Audio,
    frequencies: Sequence[float],
    min_share: float = TONE_SHARE,
    silence_dbfs: float = SILENCE_DBFS,
) -> bool:
    """Whether the audio is audible and mostly made of these frequencies, each present."""
    if rms_dbfs(audio) < silence_dbfs:
        return False
    shares = [tone_share(audio, frequency) for frequency in frequencies]
    # Each frequency must carry part of the energy: 440 alone is not 440 + 480.
    floor = min_share / (2 * len(frequencies))
    return sum(shares) >= min_share and min(shares) >= floor


def classify(
    audio: Audio,
    tone: Sequence[float],
    seconds: float = SEGMENT_SECONDS,
    silence_dbfs: float = SILENCE_DBFS,
) -> list[SegmentKind]:
    """Each segment as silence, the given tone, or broadband audio."""
    kinds: list[SegmentKind] = []
    for segment in audio.segments(seconds):
        if rms_dbfs(segment) < silence_dbfs:
            kinds.append("silence")
        elif has_tone(segment, tone, silence_dbfs=silence_dbfs):
            kinds.append("tone")
        else:
            kinds.append("broadband")
    return kinds


def tone_cadence(
    audio: Audio,
    tone: Sequence[float],
    seconds: float = SEGMENT_SECONDS,
) -> list[tuple[bool, float]]:
    """Runs of tone on (True) and off (False) with their durations in seconds."""
    runs: list[tuple[bool, float]] = []
    for segment in audio.segments(seconds):
        on = has_tone(segment, tone)
        if runs and runs[-1][0] == on:
            runs[-1] = (on, runs[-1][1] + seconds)
        else:
            runs.append((on, seconds))
    return [(on, round(duration, 6)) for on, duration in runs]


def spectral_peak_share(audio: Audio, width_hz: float = 40.0, peaks: int = 2) -> float:
    """Share of the telephone band's energy within ``width_hz`` of its ``peaks`` strongest
    frequencies.

    About 1 for a tone of up to ``peaks`` frequencies (call-progress tones have
    one or two), low for speech and noise. Only 300-3400 Hz counts (ITU-T
    G.712): DC offset and rumble, which G.711 recordings often carry, would
    otherwise pass for a tone.
    """
    samples = audio.samples - np.mean(audio.samples)
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples)))) ** 2
    frequencies = np.fft.rfftfreq(len(samples), 1 / audio.rate)
    spectrum = spectrum[(frequencies >= BAND_HZ[0]) & (frequencies <= BAND_HZ[1])]
    total = float(np.sum(spectrum))
    if total == 0.0:
        return 0.0
    half = max(1, int(width_hz / 2 * len(samples) / audio.rate))
    spectrum = spectrum.copy()
    found = 0.0
    for _ in range(peaks):
        peak = int(np.argmax(spectrum))
        window = slice(max(0, peak - half), peak + half + 1)
        found += float(np.sum(spectrum[window]))
        spectrum[window] = 0.0
    return found / total


def is_speech_like(
    audio: Audio,
    seconds: float = 0.02,
    silence_dbfs: float = SILENCE_DBFS,
    min_variation: float = 0.4,
    max_peak_share: float = 0.5,
) -> bool:
    """Whether the audio holds broadband sound whose loudness moves like speech.

    Broadband: two narrow bands do not hold ``max_peak_share`` of the energy
    (which rules out tones, ringback included). Speech-like: the 20 ms RMS varies by
    a coefficient of variation of at least ``min_variation`` over the audible
    frames (syllables and pauses); steady noise varies far less.
    """
    if rms_dbfs(audio) < silence_dbfs or spectral_peak_share(audio) >= max_peak_share:
        return False
    levels = np.array(
        [float(np.sqrt(np.mean(segment.samples**2))) for segment in audio.segments(seconds)]
    )
    if len(levels) < 10:
        return False
    mean = float(np.mean(levels))
    return mean > 0 and float(np.std(levels)) / mean >= min_variation


def white_noise(
    seconds: float, level_dbfs: float = -20.0, rate: int = 8000, seed: int = 1
) -> Audio:
    """Steady Gaussian noise at an RMS level, for negative tests."""
    generator = np.random.default_rng(seed)
    rms = 10 ** (level_dbfs / 20)
    return Audio(generator.normal(0.0, rms, int(seconds * rate)), rate)


def sine(
    frequencies: Sequence[float], seconds: float, level_dbfs: float = -20.0, rate: int = 8000
) -> Audio:
    """The sum of equal sines at an overall RMS level."""
    t = np.arange(int(seconds * rate)) / rate
    mix = np.sum([np.sin(2 * np.pi * f * t) for f in frequencies], axis=0)
    mix *= 10 ** (level_dbfs / 20) / float(np.sqrt(np.mean(mix**2)))
    return Audio(mix, rate)
