"""The speech cache: keys, memory and disk hits, damaged files, the size bound."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callwhisper.audio import Audio, CacheStats, TtsCache, TtsOptions, cache_key
from callwhisper.audio.cache import STALE_TEMP_SECONDS, decode_entry, encode_entry
from callwhisper.errors import AudioError
from tests.unit.audio.helpers import FakeEngine

OPTIONS = TtsOptions()


def entry_size(text: str) -> int:
    """Bytes of the disk file for ``text`` (header plus PCM)."""
    return len(encode_entry(FakeEngine().synthesize(text, OPTIONS)))


def age(path: Path, seconds: float) -> None:
    """Make ``path`` look last used ``seconds`` ago."""
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_key_is_a_sha256_of_engine_options_and_text() -> None:
    key = cache_key("espeak-ng", "Press 1", OPTIONS)
    assert len(key) == 64
    assert key == cache_key("espeak-ng", "Press 1", TtsOptions())
    variants = {
        cache_key("other", "Press 1", OPTIONS),
        cache_key("espeak-ng", "Press 2", OPTIONS),
        cache_key("espeak-ng", "Press 1", TtsOptions(language="en-GB")),
        cache_key("espeak-ng", "Press 1", TtsOptions(voice="en-us+f3")),
        cache_key("espeak-ng", "Press 1", TtsOptions(rate_wpm=161)),
        cache_key("espeak-ng", "Press 1", TtsOptions(pitch=51)),
    }
    assert key not in variants
    assert len(variants) == 6


def test_entry_round_trip() -> None:
    audio = Audio(b"\x01\x00\xff\x7f")
    assert decode_entry(encode_entry(audio)) == audio


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda data: b"", "shorter than the header"),
        (lambda data: b"X" + data[1:], "not a callwhisper speech cache file"),
        (lambda data: data[:8] + b"\x80\x3e" + data[10:], "sample rate 16000 Hz"),
        (lambda data: data[:-2], "2 bytes of PCM, header says 4"),
        (lambda data: data[:-1] + b"\x00", "checksum mismatch"),
    ],
)
def test_damaged_entries_say_what_is_wrong(damage: Callable[[bytes], bytes], reason: str) -> None:
    data = encode_entry(Audio(b"\x01\x00\xff\x7f"))
    with pytest.raises(ValueError, match=reason):
        decode_entry(damage(data))


def test_second_render_is_a_memory_hit_of_the_same_object(
    tmp_path: Path, fake_engine: FakeEngine
) -> None:
    cache = TtsCache(tmp_path)
    first = cache.render(fake_engine, "Press 1 to accept", OPTIONS)
    second = cache.render(fake_engine, "Press 1 to accept", OPTIONS)
    assert second is first
    assert len(fake_engine.calls) == 1
    assert cache.stats == CacheStats(memory_hits=1, misses=1)


def test_remembered_answers_from_memory_only(tmp_path: Path, fake_engine: FakeEngine) -> None:
    """The event loop's shortcut: a memory hit, or None without reading the disk or rendering."""
    TtsCache(tmp_path).render(fake_engine, "Press 1", OPTIONS)
    cache = TtsCache(tmp_path)
    assert cache.remembered(fake_engine, "Press 1", OPTIONS) is None
    rendered = cache.render(fake_engine, "Press 1", OPTIONS)
    assert cache.remembered(fake_engine, "Press 1", OPTIONS) is rendered
    assert cache.remembered(fake_engine, "Press 2", OPTIONS) is None
    assert len(fake_engine.calls) == 1
    assert cache.stats == CacheStats(memory_hits=1, disk_hits=1)


def test_new_cache_on_the_same_directory_reads_the_disk(
    tmp_path: Path, fake_engine: FakeEngine
) -> None:
    rendered = TtsCache(tmp_path).render(fake_engine, "Press 1", OPTIONS)
    cache = TtsCache(tmp_path)
    assert cache.render(fake_engine, "Press 1", OPTIONS) == rendered
    assert len(fake_engine.calls) == 1
    assert cache.stats == CacheStats(disk_hits=1)


def test_different_options_render_again(tmp_path: Path, fake_engine: FakeEngine) -> None:
    cache = TtsCache(tmp_path)
    cache.render(fake_engine, "Press 1", OPTIONS)
    cache.render(fake_engine, "Press 1", TtsOptions(rate_wpm=200))
    assert [options.rate_wpm for _, options in fake_engine.calls] == [160, 200]


def test_write_leaves_only_the_final_file(tmp_path: Path, fake_engine: FakeEngine) -> None:
    cache = TtsCache(tmp_path / "speech")
    cache.render(fake_engine, "Press 1", OPTIONS)
    key = cache_key("fake", "Press 1", OPTIONS)
    assert [path.name for path in (tmp_path / "speech").iterdir()] == [f"{key}.pcm"]


@pytest.mark.parametrize("content", [b"", b"garbage", b"CWPCM\x00\x00\x01" + bytes(20)])
def test_damaged_file_is_discarded_and_rendered_again(
    tmp_path: Path, fake_engine: FakeEngine, content: bytes
) -> None:
    expected = TtsCache(tmp_path).render(fake_engine, "Press 1", OPTIONS)
    path = TtsCache(tmp_path).path_for(cache_key("fake", "Press 1", OPTIONS))
    path.write_bytes(content)
    cache = TtsCache(tmp_path)
    assert cache.render(fake_engine, "Press 1", OPTIONS) == expected
    assert cache.stats == CacheStats(misses=1, discarded=1)
    assert decode_entry(path.read_bytes()) == expected


def test_unusable_directory_degrades_to_rendering(tmp_path: Path, fake_engine: FakeEngine) -> None:
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("")
    cache = TtsCache(not_a_directory / "speech")
    assert cache.render(fake_engine, "Press 1", OPTIONS).duration == 1.0
    cache.forget_memory()
    cache.render(fake_engine, "Press 1", OPTIONS)
    assert cache.stats == CacheStats(misses=2)


def test_engine_failure_propagates_and_caches_nothing(tmp_path: Path) -> None:
    class BrokenEngine:
        name = "broken"

        def synthesize(self, text: str, options: TtsOptions) -> Audio:
            raise AudioError("broken: no voice")

    with pytest.raises(AudioError, match="no voice"):
        TtsCache(tmp_path).render(BrokenEngine(), "Press 1", OPTIONS)
    assert list(tmp_path.iterdir()) == []


def test_memory_is_bounded_least_recently_used_first(
    tmp_path: Path, fake_engine: FakeEngine
) -> None:
    one_word = 8000  # bytes of PCM of a one-word text: 0.5 s at 8 kHz
    cache = TtsCache(tmp_path, memory_bytes=2 * one_word)
    for text in ("one", "two", "one", "three"):
        cache.render(fake_engine, text, OPTIONS)
    assert cache.stats == CacheStats(memory_hits=1, misses=3)
    cache.render(fake_engine, "one", OPTIONS)
    cache.render(fake_engine, "two", OPTIONS)
    assert cache.stats == CacheStats(memory_hits=2, disk_hits=1, misses=3)


def test_disk_is_bounded_least_recently_used_first(tmp_path: Path, fake_engine: FakeEngine) -> None:
    size = entry_size("one")
    # room for three files and a bit: the fourth write evicts exactly one
    cache = TtsCache(tmp_path, max_bytes=int(3.4 * size), memory_bytes=0)
    for index, text in enumerate(("one", "two", "three")):
        cache.render(fake_engine, text, OPTIONS)
        age(cache.path_for(cache_key("fake", text, OPTIONS)), 100 - index)
    # reading "one" refreshes it, so "two" is now the least recently used
    cache.render(fake_engine, "one", OPTIONS)
    cache.render(fake_engine, "four", OPTIONS)
    remaining = {path.name for path in tmp_path.iterdir()}
    assert remaining == {
        f"{cache_key('fake', text, OPTIONS)}.pcm" for text in ("one", "three", "four")
    }
    assert cache.stats.evicted == 1


def test_eviction_goes_below_the_bound(tmp_path: Path, fake_engine: FakeEngine) -> None:
    size = entry_size("one")
    cache = TtsCache(tmp_path, max_bytes=10 * size, memory_bytes=0)
    for index in range(11):
        cache.render(fake_engine, f"word{index}", OPTIONS)
        age(cache.path_for(cache_key("fake", f"word{index}", OPTIONS)), 100 - index)
    # 11 files are over the bound of 10; eviction stops at 90% of it, 9 files
    assert len(list(tmp_path.iterdir())) == 9
    assert cache.stats.evicted == 2


def test_eviction_removes_stale_temporary_files_only(
    tmp_path: Path, fake_engine: FakeEngine
) -> None:
    stale, fresh = tmp_path / ".crashed.tmp", tmp_path / ".writing.tmp"
    stale.write_bytes(b"x")
    fresh.write_bytes(b"x")
    age(stale, STALE_TEMP_SECONDS + 60)
    # a bound below one entry makes every write scan the directory
    TtsCache(tmp_path, max_bytes=1).render(fake_engine, "one", OPTIONS)
    assert not stale.exists()
    assert fresh.exists()


def test_memory_hit_touches_neither_the_disk_nor_the_engine(
    tmp_path: Path, fake_engine: FakeEngine
) -> None:
    """What it costs is measured by ``python -m bench tts``; here, that it does no I/O."""
    cache = TtsCache(tmp_path)
    first = cache.render(fake_engine, "Auto insurance lead from California", OPTIONS)
    # Without its file, a read would miss and render again, and a write would show.
    for path in tmp_path.iterdir():
        path.unlink()
    again = cache.render(fake_engine, "Auto insurance lead from California", OPTIONS)
    assert again is first
    assert len(fake_engine.calls) == 1
    assert list(tmp_path.iterdir()) == []
    assert cache.stats == CacheStats(memory_hits=1, misses=1)


def test_concurrent_renders_agree(tmp_path: Path, fake_engine: FakeEngine) -> None:
    cache = TtsCache(tmp_path)
    results: list[Audio] = []

    def render() -> None:
        results.append(cache.render(fake_engine, "Press 1", OPTIONS))

    threads = [threading.Thread(target=render) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 8
    assert len(set(results)) == 1
    stats = cache.stats
    assert stats.memory_hits + stats.disk_hits + stats.misses == 8


def test_bounds_must_be_sensible(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max_bytes must be positive"):
        TtsCache(tmp_path, max_bytes=0)


@given(st.binary(max_size=200))
def test_any_damaged_file_is_a_value_error_never_a_crash(data: bytes) -> None:
    header = encode_entry(Audio(b"\x01\x00\xff\x7f"))[:20]
    for candidate in (data, header + data):
        with contextlib.suppress(ValueError):
            assert isinstance(decode_entry(candidate), Audio)
