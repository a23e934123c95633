"""The store engine's JSON: the text ``json.dumps`` writes, money, times and dates included."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callwhisper.store.engine import _json_dumps, json_default

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(),
    st.decimals(allow_nan=False, allow_infinity=False),
    st.datetimes(timezones=st.just(UTC)),
    st.dates(),
)
values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.tuples(children, children)
        | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@given(values)
def test_json_is_the_text_json_dumps_writes(value: Any) -> None:
    assert _json_dumps(value) == json.dumps(value, default=json_default, separators=(",", ":"))


def test_money_times_and_dates_are_written_as_text() -> None:
    value = {"cost": Decimal("0.0150"), "at": datetime(2026, 3, 2, 15, tzinfo=UTC)}
    assert _json_dumps([value, date(2026, 3, 2), "é"]) == (
        '[{"cost":"0.0150","at":"2026-03-02T15:00:00+00:00"},"2026-03-02","\\u00e9"]'
    )


def test_a_value_json_cannot_write_is_refused() -> None:
    with pytest.raises(TypeError, match="set is not JSON serializable"):
        _json_dumps({"tags": {1}})
