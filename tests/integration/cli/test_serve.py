"""``callwhisper serve`` as a real process: it answers SIP and stops cleanly on SIGTERM."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.cli.helpers import EXAMPLE

pytestmark = pytest.mark.integration


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def options(port: int) -> bytes:
    return (
        f"OPTIONS sip:probe@127.0.0.1:{port} SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK-serve-test\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:test@127.0.0.1>;tag=1\r\n"
        f"To: <sip:probe@127.0.0.1:{port}>\r\n"
        "Call-ID: serve-test@127.0.0.1\r\n"
        "CSeq: 1 OPTIONS\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def ask_options(port: int, deadline: float) -> bytes:
    """Send OPTIONS until the server answers (it needs a moment to start) or time runs out."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.bind(("127.0.0.1", 0))
        client.settimeout(0.3)
        while time.monotonic() < deadline:
            client.sendto(options(port), ("127.0.0.1", port))
            try:
                return client.recv(65535)
            except TimeoutError:
                continue
    raise AssertionError("the server never answered OPTIONS")


def test_serve_answers_options_and_drains_on_sigterm(tmp_path: Path) -> None:
    port = free_udp_port()
    server = subprocess.Popen(
        [
            sys.executable, "-m", "callwhisper.cli", "serve",
            "--config", str(EXAMPLE),
            "--data-dir", str(tmp_path / "var"),
            "--sip-port", str(port),
            "--rtp-ports", "31000-31100",
            "--drain-timeout", "2",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        answer = ask_options(port, time.monotonic() + 30)
        assert answer.startswith(b"SIP/2.0 200 OK\r\n")
        assert b"CSeq: 1 OPTIONS" in answer
        server.send_signal(signal.SIGTERM)
        _, stderr = server.communicate(timeout=20)
    finally:
        if server.poll() is None:
            server.kill()
            server.communicate()
    assert server.returncode == 0, stderr
    assert f"listening for SIP on 127.0.0.1:{port}" in stderr
    assert (tmp_path / "var" / "callwhisper.db").exists()
