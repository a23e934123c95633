"""``callwhisper serve``'s options: bad ones are refused before anything starts, the others
reach the server's configuration."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from callwhisper.cli import main, serve
from callwhisper.engine import CallwhisperServer, TransportConfig


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--sip-rate-per-source", "0", "0.0 is not in the range x>=1.0"),
        ("--sip-receive-buffer", "100", "100 is not in the range 4096<=x<=1073741824"),
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


@pytest.mark.parametrize(
    ("counters", "resident"), [("auto", None), ("memory", True), ("database", False)]
)
def test_the_sip_and_counter_options_reach_the_server_configuration(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, counters: str, resident: bool | None
) -> None:
    """The flood guard's burst is twice its rate; --counters chooses where counters live."""
    servers: list[CallwhisperServer] = []
    monkeypatch.setattr(serve, "_run", servers.append)
    result = CliRunner().invoke(
        main,
        [
            "serve", "--data-dir", str(tmp_path),
            "--sip-host", "127.0.0.2", "--sip-port", "5070", "--sip-tls-port", "5071",
            "--sip-tls-no-verify", "--sip-rate-per-source", "500", "--counters", counters,
            "--sip-receive-buffer", "1048576",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    [server] = servers
    assert server.config.sip == TransportConfig(
        host="127.0.0.2",
        port=5070,
        rate_per_source=500.0,
        burst_per_source=1000,
        receive_buffer=1048576,
        tls_port=5071,
        tls_verify=False,
    )
    assert server.config.resident_counters is resident
