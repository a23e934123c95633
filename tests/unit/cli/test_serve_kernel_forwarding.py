"""``callwhisper serve --media-kernel-forwarding``: the mode reaches the media engine."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from callwhisper.cli import main, serve
from callwhisper.engine import CallwhisperServer
from callwhisper.errors import ConfigError


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[CallwhisperServer]:
    """The servers ``serve`` would run, not run."""
    servers: list[CallwhisperServer] = []
    monkeypatch.setattr(serve, "_run", servers.append)
    return servers


@pytest.mark.parametrize(
    ("options", "mode"), [([], "off"), (["--media-kernel-forwarding", "auto"], "auto")]
)
def test_the_mode_is_off_unless_asked(
    started: list[CallwhisperServer], tmp_path: Path, options: list[str], mode: str
) -> None:
    result = CliRunner().invoke(main, ["serve", "--data-dir", str(tmp_path), *options])
    assert result.exit_code == 0, result.output
    assert [server.config.media.kernel_forwarding for server in started] == [mode]


def test_an_unknown_mode_is_a_usage_error_naming_the_modes() -> None:
    result = CliRunner().invoke(main, ["serve", "--media-kernel-forwarding", "yes"])
    assert result.exit_code == 2
    assert "'yes' is not one of 'off', 'auto', 'on'" in result.output


def test_a_server_that_cannot_start_as_configured_exits_with_the_reason(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    problem = "media kernel forwarding is on but unavailable: the process lacks CAP_NET_ADMIN"

    def refuse(server: CallwhisperServer) -> None:
        raise ConfigError([problem])

    monkeypatch.setattr(serve, "_run", refuse)
    result = CliRunner().invoke(
        main, ["serve", "--data-dir", str(tmp_path), "--media-kernel-forwarding", "on"]
    )
    assert result.exit_code == 1
    assert result.output == f"Error: {problem}\n"
