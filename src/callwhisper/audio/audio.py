"""The :class:`Audio` value: a prompt ready to be played on a G.711 call leg."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Final, Literal

import numpy as np
import numpy.typing as npt

from callwhisper.audio.dsp import SAMPLE_RATE, Levels, measure
from callwhisper.media.g711 import alaw_encode, ulaw_encode

FRAME_SAMPLES: Final = 160
"""Samples in one 20 ms RTP packet at 8 kHz (RFC 3551 4.5: G.711 default packetisation)."""

Codec = Literal["PCMU", "PCMA"]
"""G.711 variants by their RTP encoding names (RFC 3551 table 4)."""

_PCM16 = np.dtype("<i2")


@dataclass(frozen=True)
class Audio:
    """Immutable 8 kHz mono signed 16-bit little-endian PCM, with its G.711 encodings.

    The encodings and their 20 ms frames are computed on first use and then kept
    on the object, so a whisper played to many buyers is encoded once. Equality
    and hashing look at the PCM only.
    """

    pcm: bytes
    """Little-endian signed 16-bit samples at :data:`~callwhisper.audio.dsp.SAMPLE_RATE`."""

    def __post_init__(self) -> None:
        """Reject PCM that is not a whole number of 16-bit samples."""
        if len(self.pcm) % 2:
            raise ValueError(f"PCM must hold whole 16-bit samples, got {len(self.pcm)} bytes")

    @classmethod
    def from_samples(cls, samples: npt.NDArray[np.int16]) -> Audio:
        """Build from a one-dimensional int16 array of 8 kHz mono samples."""
        if samples.ndim != 1:
            raise ValueError(f"expected mono (1-dimensional) samples, got {samples.ndim} dims")
        return cls(samples.astype(_PCM16, copy=False).tobytes())

    @classmethod
    def silence(cls, seconds: float) -> Audio:
        """Digital silence of the given length, rounded to whole samples."""
        return cls(bytes(2 * round(seconds * SAMPLE_RATE)))

    @property
    def sample_count(self) -> int:
        """Number of samples."""
        return len(self.pcm) // 2

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.sample_count / SAMPLE_RATE

    @property
    def samples(self) -> npt.NDArray[np.int16]:
        """The samples as a read-only int16 view of :attr:`pcm` (no copy)."""
        return np.frombuffer(self.pcm, dtype=_PCM16)

    @cached_property
    def levels(self) -> Levels:
        """Duration, RMS and peak figures; ``levels.silent`` tells digital or near silence."""
        return measure(self.samples.astype(np.float32) / np.float32(32768.0))

    @cached_property
    def ulaw(self) -> bytes:
        """The whole prompt in G.711 mu-law, one byte per sample."""
        return ulaw_encode(self.pcm)

    @cached_property
    def alaw(self) -> bytes:
        """The whole prompt in G.711 A-law, one byte per sample."""
        return alaw_encode(self.pcm)

    @cached_property
    def ulaw_frames(self) -> tuple[bytes, ...]:
        """Mu-law payloads of 160 bytes (20 ms), the last padded with mu-law silence."""
        return _frames(self.ulaw, ulaw_encode(bytes(2)))

    @cached_property
    def alaw_frames(self) -> tuple[bytes, ...]:
        """A-law payloads of 160 bytes (20 ms), the last padded with A-law silence."""
        return _frames(self.alaw, alaw_encode(bytes(2)))

    def frames(self, codec: Codec) -> tuple[bytes, ...]:
        """RTP payloads of 20 ms for the negotiated codec."""
        if codec == "PCMU":
            return self.ulaw_frames
        if codec == "PCMA":
            return self.alaw_frames
        raise ValueError(f"unsupported codec {codec!r}; expected 'PCMU' or 'PCMA'")

    def __add__(self, other: Audio) -> Audio:
        """Concatenate two prompts, e.g. a recorded greeting and a rendered detail."""
        return Audio(self.pcm + other.pcm)

    def __repr__(self) -> str:
        """Show the length rather than kilobytes of PCM."""
        return f"Audio({self.duration:.3f} s, {self.sample_count} samples)"


def _frames(encoded: bytes, silence: bytes) -> tuple[bytes, ...]:
    """Cut one-byte-per-sample ``encoded`` into whole frames padded with ``silence``."""
    remainder = len(encoded) % FRAME_SAMPLES
    if remainder:
        encoded += silence * (FRAME_SAMPLES - remainder)
    return tuple(encoded[i : i + FRAME_SAMPLES] for i in range(0, len(encoded), FRAME_SAMPLES))
