"""Whisper variables in spoken form."""

from __future__ import annotations

import pytest

from callwhisper.whisper import builtin_variables, speak_value, spoken_variables


@pytest.mark.parametrize(
    ("name", "value", "spoken"),
    [
        ("caller_state", "CA", "California"),
        ("caller_state", "on", "Ontario"),
        ("caller_state", "ZZ", "ZZ"),
        ("caller_city", "San Francisco, CA", "San Francisco, California"),
        ("caller_city", "Texas", "Texas"),
        ("caller_zip", "94105", "9 4 1 0 5"),
        ("caller_zip", "K1A 0B6", "K 1 A, 0 B 6"),
        ("caller_zip", "unknown", "unknown"),
        ("area_code", "415", "4 1 5"),
        ("bid", "$25.50", "25 dollars and 50 cents"),
        ("bid", "$1,250", "1250 dollars"),
        ("callback", "+14155550100", "4 1 5, 5 5 5, 0 1 0 0"),
        ("callback", "(415) 555-0100", "4 1 5, 5 5 5, 0 1 0 0"),
        ("callback", "4155550100", "4 1 5, 5 5 5, 0 1 0 0"),
        ("callback", "+44 20 7946 0958", "plus 4 4, 2 0, 7 9 4 6, 0 9 5 8"),
        ("policy", "123456", "1 2 3 4 5 6"),
        ("policy", "0000000000", "0 0 0 0 0 0 0 0 0 0"),
        ("drivers", "3", "3"),
        ("date", "2025-06-02", "2025-06-02"),
        ("insured", "yes", "yes"),
    ],
)
def test_speak_value(name: str, value: str, spoken: str) -> None:
    assert speak_value(name, value) == spoken


def test_spoken_variables_keeps_every_name() -> None:
    assert spoken_variables({"caller_state": "TX", "area_code": "214", "source": "google"}) == {
        "caller_state": "Texas",
        "area_code": "2 1 4",
        "source": "google",
    }


def test_builtin_variables_are_the_flows() -> None:
    assert builtin_variables() == {
        "campaign",
        "lead_type",
        "buyer",
        "publisher",
        "caller_city",
        "caller_state",
        "caller_zip",
        "area_code",
    }
