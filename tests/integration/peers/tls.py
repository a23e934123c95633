"""Throw-away TLS certificates for the tests, made by the ``openssl`` command.

Each test gets its own self-signed certificate and private key in its
temporary directory: no key is ever kept in the repository.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True, slots=True)
class Certificate:
    """A self-signed certificate (its own CA) and its private key, as PEM files."""

    certificate: Path
    key: Path


def make_certificate(
    directory: Path, name: str = "localhost", ip: str = "127.0.0.1"
) -> Certificate:
    """A P-256 certificate for the DNS name ``name`` and the address ``ip``, valid one day.

    Skips the test when ``openssl`` is not installed.
    """
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    directory.mkdir(parents=True, exist_ok=True)
    made = Certificate(directory / f"{name}.crt", directory / f"{name}.key")
    subprocess.run(
        [
            openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-days", "1", "-subj", f"/CN={name}",
            "-addext", f"subjectAltName=DNS:{name},IP:{ip}",
            "-keyout", str(made.key), "-out", str(made.certificate),
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )  # fmt: skip
    return made
