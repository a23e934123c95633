"""Fixtures of the engine's unit tests."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.unit.engine.b2bua_harness import FakeTcp, Harness, MakeHarness


@pytest.fixture
async def make_harness(tmp_path: Path) -> AsyncIterator[MakeHarness]:
    """Harnesses made by a test; the calls still in progress are ended at teardown."""
    async with contextlib.AsyncExitStack() as made:

        def build(configuration: dict[str, Any], tcp: FakeTcp | None = None) -> Harness:
            harness = Harness(tmp_path, configuration, tcp=tcp)
            made.push_async_callback(harness.close)
            return harness

        yield build
