"""``callwhisper serve`` as a real process: it answers SIP and stops cleanly on SIGTERM."""

from __future__ import annotations

import contextlib
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.cli.helpers import EXAMPLE
from tests.integration.peers.net import free_port, free_tcp_port
from tests.integration.peers.tls import make_certificate

pytestmark = pytest.mark.integration


@contextlib.contextmanager
def serving(tmp_path: Path, port: int, *options: str) -> Iterator[subprocess.Popen[str]]:
    """``callwhisper serve`` on the example configuration with SIP on ``port``, as a process
    (killed on the way out if it is still running)."""
    server = subprocess.Popen(
        [
            sys.executable, "-m", "callwhisper.cli", "serve",
            "--config", str(EXAMPLE),
            "--data-dir", str(tmp_path / "var"),
            "--sip-port", str(port),
            "--drain-timeout", "2",
            *options,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        yield server
    finally:
        if server.poll() is None:
            server.kill()
            server.communicate()


def stop(server: subprocess.Popen[str]) -> str:
    """SIGTERM: the server drains and exits with status 0; returns what it logged."""
    server.send_signal(signal.SIGTERM)
    _, stderr = server.communicate(timeout=20)
    assert server.returncode == 0, stderr
    return stderr


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
    port = free_port(tcp_too=True)  # serve binds UDP and TCP
    with serving(tmp_path, port, "--rtp-ports", "31000-31100") as server:
        answer = ask_options(port, time.monotonic() + 30)
        assert answer.startswith(b"SIP/2.0 200 OK\r\n")
        assert b"CSeq: 1 OPTIONS" in answer
        stderr = stop(server)
    assert f"listening for SIP on 127.0.0.1:{port}" in stderr
    assert (tmp_path / "var" / "callwhisper.db").exists()


def test_serve_answers_options_over_tls_with_its_certificate(tmp_path: Path) -> None:
    """``--sip-tls-certificate``: a TLS client that checks the certificate gets its 200."""
    made = make_certificate(tmp_path / "tls")
    port, tls_port = free_port(tcp_too=True), free_tcp_port()
    with serving(
        tmp_path, port,
        "--sip-tls-port", str(tls_port),
        "--sip-tls-certificate", str(made.certificate),
        "--sip-tls-key", str(made.key),
        "--rtp-ports", "31100-31200",
    ) as server:  # fmt: skip
        ask_options(port, time.monotonic() + 30)  # started
        context = ssl.create_default_context(cafile=str(made.certificate))
        with (
            socket.create_connection(("127.0.0.1", tls_port), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname="localhost") as tls,
        ):
            # Another branch: the same one would be a retransmission of the UDP probe's OPTIONS.
            request = options(tls_port).replace(
                b"SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK-serve-test",
                b"SIP/2.0/TLS 127.0.0.1:9;branch=z9hG4bK-serve-tls",
            )
            tls.sendall(request)
            answer = tls.recv(65535)
        assert answer.startswith(b"SIP/2.0 200 OK\r\n")
        assert b"Via: SIP/2.0/TLS 127.0.0.1:9;branch=z9hG4bK-serve-tls\r\n" in answer
        stderr = stop(server)
    assert f"listening for SIP over TLS on 127.0.0.1:{tls_port}" in stderr
