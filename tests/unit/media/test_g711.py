"""G.711 mu-law and A-law: ITU-T code points, monotonicity, round trips."""

from __future__ import annotations

import struct
from collections.abc import Callable

import numpy as np
import pytest

from callwhisper.errors import AudioError
from callwhisper.media import g711

ALL_CODES = bytes(range(256))
ALL_SAMPLES = np.arange(-32768, 32768, dtype="<i2")


def pcm(*samples: int) -> bytes:
    return struct.pack(f"<{len(samples)}h", *samples)


def samples_of(data: bytes) -> list[int]:
    return list(struct.unpack(f"<{len(data) // 2}h", data))


@pytest.mark.parametrize(
    ("code", "value"),
    [(0xFF, 0), (0x7F, 0), (0x00, -32124), (0x80, 32124), (0xFE, 8), (0x7E, -8), (0xEF, 132)],
)
def test_ulaw_decodes_itu_code_points(code: int, value: int) -> None:
    assert samples_of(g711.ulaw_decode(bytes([code]))) == [value]


@pytest.mark.parametrize(
    ("code", "value"),
    [(0xD5, 8), (0x55, -8), (0xAA, 32256), (0x2A, -32256), (0xD4, 24), (0xC5, 264)],
)
def test_alaw_decodes_itu_code_points(code: int, value: int) -> None:
    assert samples_of(g711.alaw_decode(bytes([code]))) == [value]


@pytest.mark.parametrize(
    ("sample", "code"),
    [(0, 0xFF), (-8, 0x7E), (32767, 0x80), (-32768, 0x00), (8, 0xFE), (-32124, 0x00)],
)
def test_ulaw_encodes_itu_code_points(sample: int, code: int) -> None:
    assert g711.ulaw_encode(pcm(sample)) == bytes([code])


@pytest.mark.parametrize(
    ("sample", "code"),
    [(0, 0xD5), (-1, 0x55), (32767, 0xAA), (-32768, 0x2A), (8, 0xD5), (16, 0xD4)],
)
def test_alaw_encodes_itu_code_points(sample: int, code: int) -> None:
    assert g711.alaw_encode(pcm(sample)) == bytes([code])


@pytest.mark.parametrize(("encode", "decode"), [("ulaw", "ulaw"), ("alaw", "alaw")])
def test_every_code_survives_decode_then_encode(encode: str, decode: str) -> None:
    """Each reconstruction level encodes back to its own code (mu-law's -0 aside)."""
    decoded = getattr(g711, f"{decode}_decode")(ALL_CODES)
    reencoded = getattr(g711, f"{encode}_encode")(decoded)
    expected = ALL_CODES.replace(b"\x7f", b"\xff") if encode == "ulaw" else ALL_CODES
    assert reencoded == expected


@pytest.mark.parametrize("law", ["ulaw", "alaw"])
def test_round_trip_error_is_within_quantisation_error(law: str) -> None:
    """A 4-bit mantissa per segment: the error is at most 1/32 of the level, plus rounding."""
    encode = getattr(g711, f"{law}_encode_array")
    decode = getattr(g711, f"{law}_decode_array")
    original = ALL_SAMPLES.astype(np.int32)
    error = np.abs(decode(encode(ALL_SAMPLES)).astype(np.int32) - original)
    assert np.all(error <= np.abs(original) / 32 + 8)


@pytest.mark.parametrize("law", ["ulaw", "alaw"])
def test_encoding_is_monotonic(law: str) -> None:
    encode = getattr(g711, f"{law}_encode_array")
    decode = getattr(g711, f"{law}_decode_array")
    levels = decode(encode(ALL_SAMPLES)).astype(np.int32)
    assert np.all(np.diff(levels) >= 0)


def test_bytes_and_array_apis_agree() -> None:
    data = ALL_SAMPLES.tobytes()
    assert g711.ulaw_encode(data) == g711.ulaw_encode_array(ALL_SAMPLES).tobytes()
    assert g711.alaw_encode(data) == g711.alaw_encode_array(ALL_SAMPLES).tobytes()
    codes = np.arange(256, dtype=np.uint8)
    assert g711.ulaw_decode(ALL_CODES) == g711.ulaw_decode_array(codes).astype("<i2").tobytes()
    assert g711.alaw_decode(ALL_CODES) == g711.alaw_decode_array(codes).astype("<i2").tobytes()


def test_silence_constants_decode_to_the_quietest_levels() -> None:
    assert samples_of(g711.ulaw_decode(bytes([g711.ULAW_SILENCE]))) == [0]
    assert samples_of(g711.alaw_decode(bytes([g711.ALAW_SILENCE]))) == [8]


def test_transcoding_matches_decode_then_encode() -> None:
    assert g711.ulaw_to_alaw(ALL_CODES) == g711.alaw_encode(g711.ulaw_decode(ALL_CODES))
    assert g711.alaw_to_ulaw(ALL_CODES) == g711.ulaw_encode(g711.alaw_decode(ALL_CODES))


def test_empty_input_gives_empty_output() -> None:
    assert g711.ulaw_encode(b"") == g711.alaw_encode(b"") == b""
    assert g711.ulaw_decode(b"") == g711.alaw_decode(b"") == b""


@pytest.mark.parametrize("encode", [g711.ulaw_encode, g711.alaw_encode])
def test_odd_length_pcm_is_refused(encode: Callable[[bytes], bytes]) -> None:
    with pytest.raises(AudioError, match=r"^16-bit PCM must have an even length, got 3 bytes$"):
        encode(b"\x00\x01\x02")
