"""Fixtures for the whisper unit tests: a fake TTS engine and a speaker using it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from callwhisper.audio import TtsCache, register_engine, unregister_engine
from callwhisper.whisper import CachedSpeaker
from tests.unit.audio.helpers import FakeEngine


@pytest.fixture(autouse=True)
def fake_engine() -> Iterator[FakeEngine]:
    """A :class:`FakeEngine` (half a second per word), registered as ``fake`` in every test."""
    engine = FakeEngine()
    register_engine(engine.name, lambda: engine)
    yield engine
    unregister_engine(engine.name)


@pytest.fixture
def speaker(fake_engine: FakeEngine, tmp_path: Path) -> CachedSpeaker:
    """A speaker rendering with the fake engine through a cache in ``tmp_path``."""
    return CachedSpeaker(TtsCache(tmp_path / "speech"))
