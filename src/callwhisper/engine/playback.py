"""What a leg plays from the media clock: prompts, tones and silence, as 20 ms G.711 frames."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from callwhisper.audio import FRAME_SAMPLES, Audio, Codec
from callwhisper.media.g711 import ALAW_SILENCE, ULAW_SILENCE

__all__ = ["PCMA", "PCMU", "LegCodec", "Playback", "silence_frame"]


@dataclass(frozen=True, slots=True)
class LegCodec:
    """The media format negotiated on one leg (the result of its SDP offer/answer)."""

    encoding: Codec
    """``PCMU`` or ``PCMA``."""
    payload_type: int
    """RTP payload type of the audio (0 and 8 are the static ones, RFC 3551 table 4)."""
    telephone_event: int | None = 101
    """Payload type of RFC 4733 telephone-events, None if the peer did not agree to them."""


PCMU: Final = LegCodec("PCMU", 0)
PCMA: Final = LegCodec("PCMA", 8)


def silence_frame(encoding: Codec) -> bytes:
    """One 20 ms frame of G.711 silence in ``encoding``."""
    return bytes((ULAW_SILENCE if encoding == "PCMU" else ALAW_SILENCE,)) * FRAME_SAMPLES


class Playback:
    """A sequence of 20 ms payloads played once or in a loop, one per clock tick.

    ``source`` is an :class:`~callwhisper.audio.Audio` (its cached frames in
    the leg's codec are used) or ready-made payloads already in that codec.
    """

    __slots__ = ("_frames", "_index", "ident", "loop")

    def __init__(
        self, ident: int, source: Audio | Sequence[bytes], encoding: Codec, *, loop: bool = False
    ) -> None:
        """Prepare the frames; a looped playback needs at least one frame."""
        frames = source.frames(encoding) if isinstance(source, Audio) else tuple(source)
        if loop and not frames:
            raise ValueError("a looped playback needs at least one frame")
        self.ident = ident
        self.loop = loop
        self._frames: Sequence[bytes] = frames
        self._index = 0

    @property
    def frames_played(self) -> int:
        """Frames returned so far (counting repeats of a loop)."""
        return self._index

    def next_frame(self) -> bytes | None:
        """The payload for this tick, or None once a non-looped playback is over."""
        frames = self._frames
        index = self._index
        if index >= len(frames) and not self.loop:
            return None
        self._index = index + 1
        return frames[index % len(frames)]
