"""Call recording, 8 kHz 16-bit WAV: a bridged call in two channels, caller left, buyer
right; or what one leg says alone (the caller leaving a voicemail) in one channel.

The relay path only appends ``(position, payload)`` to a list
(:meth:`CallRecorder.add`); decoding, placing and writing run in a worker
thread on batches (:meth:`CallRecorder.write`), so disk latency never delays
a packet. Positions come from the RTP timestamps, anchored on arrival time
when a source starts, so lost packets become silence of the right length and
the two channels stay aligned.
"""

from __future__ import annotations

import contextlib
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

import numpy as np
import numpy.typing as npt

from callwhisper.audio import Codec
from callwhisper.media.g711 import alaw_decode_array, ulaw_decode_array

__all__ = ["BUYER", "CALLER", "CallRecorder", "Channel", "RecordingBatch"]

SAMPLE_RATE: Final = 8000
Channel = Literal[0, 1]
CALLER: Final[Channel] = 0
"""Left channel: what the caller said."""
BUYER: Final[Channel] = 1
"""Right channel: what the buyer said."""

_TS_MOD: Final = 1 << 32
# A timestamp that lands further than this from the arrival time re-anchors the
# channel: the source jumped its timeline (RFC 3550 allows it on a new talk spurt).
_MAX_SKEW: Final = SAMPLE_RATE
# Samples kept unwritten behind the present so that late packets still find their place.
_LATE_MARGIN: Final = SAMPLE_RATE // 4


@dataclass(slots=True)
class _Anchor:
    ssrc: int
    timestamp: int
    position: int


@dataclass(slots=True)
class RecordingBatch:
    """Chunks taken from the relay path, to be written by :meth:`CallRecorder.write`."""

    chunks: list[tuple[Channel, int, bytes, Codec]]
    safe_position: int
    """Samples before this position will receive no more audio and can be written."""


@dataclass(slots=True)
class _Writer:
    pending: npt.NDArray[np.int16]
    file: wave.Wave_write | None = None
    written: int = 0


class CallRecorder:
    """Records the two directions of one bridge into a stereo WAV file, or one leg in mono.

    :meth:`add` and :meth:`take` run on the event loop; :meth:`write` and
    :meth:`close` in one worker thread at a time (the engine serializes them).
    """

    def __init__(self, path: Path, start: float, *, channels: Literal[1, 2] = 2) -> None:
        """Record into ``path``; ``start`` (loop time) is the first sample of the file.

        With ``channels=1`` only :data:`CALLER` (channel 0) may be added.
        """
        self.path = path
        self.start = start
        self.channels = channels
        self._chunks: list[tuple[Channel, int, bytes, Codec]] = []
        self._anchors: list[_Anchor | None] = [None] * channels
        self._writer = _Writer(np.zeros((0, channels), dtype=np.int16))

    def _arrival(self, now: float) -> int:
        return round((now - self.start) * SAMPLE_RATE)

    def add(
        self,
        channel: Channel,
        ssrc: int,
        timestamp: int,
        payload: bytes,
        encoding: Codec,
        now: float,
    ) -> None:
        """Queue one packet's G.711 payload for ``channel``."""
        anchor = self._anchors[channel]
        if anchor is not None and anchor.ssrc == ssrc:
            position = anchor.position + (timestamp - anchor.timestamp) % _TS_MOD
            if abs(position - self._arrival(now)) <= _MAX_SKEW:
                self._chunks.append((channel, position, payload, encoding))
                return
        position = max(self._arrival(now), 0)
        self._anchors[channel] = _Anchor(ssrc, timestamp, position)
        self._chunks.append((channel, position, payload, encoding))

    def take(self, now: float, *, final: bool = False) -> RecordingBatch:
        """Hand over what was queued; ``final`` lets the writer write everything."""
        chunks, self._chunks = self._chunks, []
        safe = (1 << 62) if final else self._arrival(now) - _LATE_MARGIN
        return RecordingBatch(chunks, safe)

    def write(self, batch: RecordingBatch) -> None:
        """Decode and place a batch, then append every finished sample to the file.

        The batch is decoded in one go and the buffer grown at most once: done
        per packet, both cost more than placing the samples.
        """
        writer = self._writer
        if writer.file is None:
            writer.file = wave.open(str(self.path), "wb")  # noqa: SIM115 - kept open across batches
            writer.file.setnchannels(self.channels)
            writer.file.setsampwidth(2)
            writer.file.setframerate(SAMPLE_RATE)
        chunks = batch.chunks
        codes = np.frombuffer(b"".join(chunk[2] for chunk in chunks), dtype=np.uint8)
        decoded = {
            encoding: ulaw_decode_array(codes) if encoding == "PCMU" else alaw_decode_array(codes)
            for encoding in {chunk[3] for chunk in chunks}
        }
        placed: list[tuple[Channel, int, npt.NDArray[np.int16]]] = []
        start = 0
        for channel, position, payload, encoding in chunks:
            pcm = decoded[encoding][start : start + len(payload)]
            start += len(payload)
            offset = position - writer.written
            if offset < 0:  # too late: that part of the file is written already
                pcm = pcm[-offset:]
                offset = 0
            placed.append((channel, offset, pcm))
        end = max((offset + len(pcm) for _, offset, pcm in placed), default=0)
        if end > len(writer.pending):
            grown = np.zeros((end, self.channels), dtype=np.int16)
            grown[: len(writer.pending)] = writer.pending
            writer.pending = grown
        for channel, offset, pcm in placed:
            writer.pending[offset : offset + len(pcm), channel] = pcm
        ready = min(len(writer.pending), max(batch.safe_position - writer.written, 0))
        if ready:
            writer.file.writeframes(writer.pending[:ready].astype("<i2", copy=False).tobytes())
            writer.pending = writer.pending[ready:]
            writer.written += ready

    def close(self, batch: RecordingBatch) -> None:
        """Write the last batch (taken with ``final=True``) and close the file, even on error."""
        try:
            self.write(batch)
        finally:
            file, self._writer.file = self._writer.file, None
            if file is not None:
                file.close()

    def abandon(self) -> None:
        """Close the file after a failed write, keeping what was written; nothing more is."""
        file, self._writer.file = self._writer.file, None
        if file is not None:
            # wave closes the OS file even when the header of a failing disk cannot be patched.
            with contextlib.suppress(OSError, wave.Error):
                file.close()
