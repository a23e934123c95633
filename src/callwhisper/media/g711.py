"""ITU-T G.711 mu-law (PCMU) and A-law (PCMA) codecs, by lookup table.

PCM is little-endian signed 16-bit mono. The quantisation follows the ITU-T
G.711 segment tables (the classic Sun ``g711.c`` formulation): mu-law works on
the 14 most significant bits with a bias of 33, A-law on the 13 most
significant bits. Both directions are single table look-ups with numpy
(``audioop`` is gone in Python 3.13), so a 160-byte frame costs a few
microseconds. Transcoding between the two laws is a ``bytes.translate``.
"""

from __future__ import annotations

from typing import Final

import numpy as np
from numpy.typing import NDArray

from callwhisper.errors import AudioError

__all__ = [
    "ALAW_SILENCE",
    "ALAW_TO_ULAW",
    "ULAW_SILENCE",
    "ULAW_TO_ALAW",
    "alaw_decode",
    "alaw_decode_array",
    "alaw_encode",
    "alaw_encode_array",
    "alaw_to_ulaw",
    "ulaw_decode",
    "ulaw_decode_array",
    "ulaw_encode",
    "ulaw_encode_array",
    "ulaw_to_alaw",
]

ULAW_SILENCE: Final = 0xFF
"""The mu-law code of a zero sample (G.711 positive zero)."""
ALAW_SILENCE: Final = 0xD5
"""The A-law code decoding to +8, the smallest positive level (A-law has no zero)."""

_PCM_DTYPE: Final = np.dtype("<i2")


def _ulaw_decode_table() -> NDArray[np.int16]:
    # G.711 table 2a: codes are sent inverted; magnitude = ((2 * mantissa + 33) << exponent) - 33,
    # here scaled by 4 to 16 bits: ((mantissa << 3) + 0x84) << exponent, minus 0x84.
    code = ~np.arange(256, dtype=np.int32) & 0xFF
    exponent = (code >> 4) & 0x07
    magnitude = (((code & 0x0F) << 3) + 0x84) << exponent
    value = np.where(code & 0x80, 0x84 - magnitude, magnitude - 0x84)
    return value.astype(np.int16)


def _alaw_decode_table() -> NDArray[np.int16]:
    # G.711 table 1a: even bits are inverted on the line (XOR 0x55); sign bit set = positive.
    code = np.arange(256, dtype=np.int32) ^ 0x55
    exponent = (code >> 4) & 0x07
    mantissa = (code & 0x0F) << 4
    magnitude = np.where(
        exponent == 0, mantissa + 8, (mantissa + 0x108) << np.maximum(exponent - 1, 0)
    )
    value = np.where(code & 0x80, magnitude, -magnitude)
    return value.astype(np.int16)


def _ulaw_encode_table() -> NDArray[np.uint8]:
    # Indexed by the sample's 16 bits read as unsigned, so a uint16 view of the PCM is the index.
    sample = np.arange(65536, dtype=np.int32).astype(np.uint16).view(np.int16).astype(np.int32)
    value = sample >> 2  # 14-bit linear
    mask = np.where(value < 0, 0x7F, 0xFF)
    magnitude = np.minimum(np.abs(value), 8159) + 33  # clip, then add the bias
    segment_ends = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])
    segment = np.searchsorted(segment_ends, magnitude)
    code = (segment << 4) | ((magnitude >> (segment + 1)) & 0x0F)
    code = np.where(segment >= 8, 0x7F, code)  # the clipped top of the range: the largest code
    return (code ^ mask).astype(np.uint8)


def _alaw_encode_table() -> NDArray[np.uint8]:
    sample = np.arange(65536, dtype=np.int32).astype(np.uint16).view(np.int16).astype(np.int32)
    value = sample >> 3  # 13-bit linear
    mask = np.where(value >= 0, 0xD5, 0x55)
    magnitude = np.where(value >= 0, value, -value - 1)
    segment_ends = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF])
    segment = np.searchsorted(segment_ends, magnitude)
    shift = np.where(segment < 2, 1, segment)
    code = (segment << 4) | ((magnitude >> shift) & 0x0F)
    return (code ^ mask).astype(np.uint8)


_ULAW_DECODE: Final = _ulaw_decode_table()
_ALAW_DECODE: Final = _alaw_decode_table()
_ULAW_ENCODE: Final = _ulaw_encode_table()
_ALAW_ENCODE: Final = _alaw_encode_table()
ULAW_TO_ALAW: Final = _ALAW_ENCODE[_ULAW_DECODE.view(np.uint16)].tobytes()
"""``bytes.translate`` table from mu-law to A-law codes (decode, then encode)."""
ALAW_TO_ULAW: Final = _ULAW_ENCODE[_ALAW_DECODE.view(np.uint16)].tobytes()
"""``bytes.translate`` table from A-law to mu-law codes (decode, then encode)."""


def _pcm_index(pcm: bytes) -> NDArray[np.uint16]:
    if len(pcm) % 2:
        raise AudioError(f"16-bit PCM must have an even length, got {len(pcm)} bytes")
    return np.frombuffer(pcm, dtype="<u2")


def ulaw_encode_array(samples: NDArray[np.int16]) -> NDArray[np.uint8]:
    """Encode int16 samples to mu-law codes."""
    return _ULAW_ENCODE[samples.view(np.uint16)]


def ulaw_decode_array(codes: NDArray[np.uint8]) -> NDArray[np.int16]:
    """Decode mu-law codes to int16 samples."""
    return _ULAW_DECODE[codes]


def alaw_encode_array(samples: NDArray[np.int16]) -> NDArray[np.uint8]:
    """Encode int16 samples to A-law codes."""
    return _ALAW_ENCODE[samples.view(np.uint16)]


def alaw_decode_array(codes: NDArray[np.uint8]) -> NDArray[np.int16]:
    """Decode A-law codes to int16 samples."""
    return _ALAW_DECODE[codes]


def ulaw_encode(pcm: bytes) -> bytes:
    """Encode little-endian signed 16-bit PCM to mu-law, one byte per sample."""
    return _ULAW_ENCODE[_pcm_index(pcm)].tobytes()


def ulaw_decode(data: bytes) -> bytes:
    """Decode mu-law bytes to little-endian signed 16-bit PCM."""
    return (
        _ULAW_DECODE[np.frombuffer(data, dtype=np.uint8)].astype(_PCM_DTYPE, copy=False).tobytes()
    )


def alaw_encode(pcm: bytes) -> bytes:
    """Encode little-endian signed 16-bit PCM to A-law, one byte per sample."""
    return _ALAW_ENCODE[_pcm_index(pcm)].tobytes()


def alaw_decode(data: bytes) -> bytes:
    """Decode A-law bytes to little-endian signed 16-bit PCM."""
    return (
        _ALAW_DECODE[np.frombuffer(data, dtype=np.uint8)].astype(_PCM_DTYPE, copy=False).tobytes()
    )


def ulaw_to_alaw(data: bytes) -> bytes:
    """Transcode mu-law to A-law (decode then re-encode, done as one ``bytes.translate``)."""
    return data.translate(ULAW_TO_ALAW)


def alaw_to_ulaw(data: bytes) -> bytes:
    """Transcode A-law to mu-law (decode then re-encode, done as one ``bytes.translate``)."""
    return data.translate(ALAW_TO_ULAW)
