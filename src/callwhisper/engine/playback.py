"""What a leg plays from the media clock: prompts, tones and silence, as 20 ms G.711 frames."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from callwhisper.audio import FRAME_SAMPLES, Audio, Codec
from callwhisper.media.g711 import ALAW_SILENCE, ULAW_SILENCE
from callwhisper.media.tones import FrameSource

__all__ = ["PCMA", "PCMU", "LegCodec", "Playback", "PlaybackSource", "silence_frame"]


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


PlaybackSource = Audio | Sequence[bytes] | FrameSource
"""What a leg can play: a prompt, payloads in the leg's codec, or an endless tone source."""


class Playback:
    """20 ms payloads played one per clock tick: once, in a loop, or endlessly from a tone.

    ``source`` is an :class:`~callwhisper.audio.Audio` (its cached frames in
    the leg's codec are used), ready-made payloads already in that codec, or a
    :class:`~callwhisper.media.tones.FrameSource` encoded in that codec
    (ringback), which never ends.
    """

    __slots__ = ("_frames", "_tone", "frames_played", "ident", "loop")

    def __init__(
        self, ident: int, source: PlaybackSource, encoding: Codec, *, loop: bool = False
    ) -> None:
        """Prepare the frames; a looped playback needs at least one frame."""
        self._tone: FrameSource | None = None
        frames: Sequence[bytes] = ()
        if isinstance(source, Audio):
            frames = source.frames(encoding)
        elif isinstance(source, Sequence):
            frames = tuple(source)
        else:
            self._tone = source
        if loop and not frames and self._tone is None:
            raise ValueError("a looped playback needs at least one frame")
        self.ident = ident
        self.loop = loop
        self._frames = frames
        self.frames_played = 0
        """Frames returned so far (counting repeats of a loop)."""

    def next_frame(self) -> bytes | None:
        """The payload for this tick, or None once a non-looped playback is over."""
        index = self.frames_played
        if self._tone is not None:
            self.frames_played = index + 1
            return self._tone.frame(index)
        frames = self._frames
        if index < len(frames):
            self.frames_played = index + 1
            return frames[index]
        if not self.loop:
            return None
        self.frames_played = index + 1
        return frames[index % len(frames)]
