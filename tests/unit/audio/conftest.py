"""Fixtures for the audio unit tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from callwhisper.audio import register_engine, unregister_engine
from tests.unit.audio.helpers import FakeEngine


@pytest.fixture
def fake_engine() -> Iterator[FakeEngine]:
    """A :class:`FakeEngine`, registered as ``fake`` for the duration of the test."""
    engine = FakeEngine()
    register_engine(engine.name, lambda: engine)
    yield engine
    unregister_engine(engine.name)
