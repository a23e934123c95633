"""``callwhisper serve`` refuses bad options before starting anything."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from callwhisper.cli import main


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--sip-rate-per-source", "0", "0.0 is not in the range x>=1.0"),
        ("--rtp-ports", "30000-20000", "expected LOW-HIGH, e.g. 20000-30000"),
        ("--counters", "redis", "'redis' is not one of 'auto', 'memory', 'database'"),
    ],
)
def test_a_bad_option_is_a_usage_error_that_names_it(option: str, value: str, message: str) -> None:
    result = CliRunner().invoke(main, ["serve", option, value])
    assert result.exit_code == 2
    assert option in result.output
    assert message in result.output
