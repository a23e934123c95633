"""Test signals and a fake TTS engine shared by the audio tests."""

from __future__ import annotations

import hashlib

import numpy as np
import numpy.typing as npt

from callwhisper.audio import Audio, TtsOptions


def tone(
    frequency: float, seconds: float, rate: int, amplitude: float = 0.5
) -> npt.NDArray[np.float32]:
    """A sine wave; a stand-in for a voice with a known level and pitch."""
    t = np.arange(round(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


class FakeEngine:
    """A TTS engine that renders each text to a distinct, deterministic tone."""

    name = "fake"

    def __init__(self) -> None:
        self.calls: list[tuple[str, TtsOptions]] = []

    def synthesize(self, text: str, options: TtsOptions) -> Audio:
        """Half a second per word of a tone whose pitch depends on the text and options."""
        self.calls.append((text, options))
        seed = hashlib.sha256(f"{text}|{options}".encode()).digest()
        frequency = 200 + seed[0] * 4
        samples = tone(frequency, 0.5 * len(text.split()), 8000, 0.25)
        return Audio.from_samples((samples * 32767).astype(np.int16))
