"""Call ids: version 7 UUIDs, ordered by the time they were made."""

from __future__ import annotations

import time
import uuid

import pytest

from callwhisper.engine.b2bua import new_call_id


def test_a_call_id_is_a_version_7_uuid_in_hex_starting_with_its_millisecond() -> None:
    before = time.time_ns() // 1_000_000
    call_id = new_call_id()
    after = time.time_ns() // 1_000_000

    assert len(call_id) == 32
    parsed = uuid.UUID(hex=call_id)
    assert parsed.version == 7
    assert parsed.variant == uuid.RFC_4122
    assert before <= int(call_id[:12], 16) <= after


def test_call_ids_of_later_milliseconds_sort_after_and_none_repeats(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [1_795_000_000_000_000_000]
    monkeypatch.setattr(time, "time_ns", lambda: now[0])
    same_millisecond = {new_call_id() for _ in range(1000)}
    now[0] += 1_000_000
    later = new_call_id()

    assert len(same_millisecond) == 1000
    assert {call_id[:12] for call_id in same_millisecond} == {f"{1_795_000_000_000:012x}"}
    assert all(call_id < later for call_id in same_millisecond)
