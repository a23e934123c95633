"""``callwhisper serve`` refuses bad options before starting anything."""

from __future__ import annotations

from pathlib import Path

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


def test_a_tls_file_that_cannot_be_used_is_a_usage_error_that_names_it(tmp_path: Path) -> None:
    """Checked before the store or any socket is opened."""
    garbage = tmp_path / "server.pem"
    garbage.write_text("not a certificate\n")
    for options, message in (
        (["--sip-tls-key", str(garbage)], "no TLS certificate is configured"),
        (["--sip-tls-certificate", str(garbage)], "not PEM, or without the matching private key"),
        (["--sip-tls-ca-file", str(garbage)], "no PEM certificate in it"),
    ):
        result = CliRunner().invoke(main, ["serve", "--data-dir", str(tmp_path / "var"), *options])
        assert result.exit_code == 2, result.output
        assert f"{garbage}: {message}" in result.output
        assert not (tmp_path / "var").exists()
