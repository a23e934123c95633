"""Pytest fixtures that start real SIPp and baresip peers, and an RTP listener.

- ``sipp``: a :class:`~tests.integration.peers.sipp.SippLauncher`;
  ``sipp.uas("buyer-accepts", SippOptions(pause_ms=500))`` returns a
  listening UAS, ``sipp.uac("caller-basic", remote)`` starts calling;
  ``peer.wait()`` / ``await peer.wait_async()`` give a ``SippResult``.
  Every process is killed at teardown; logs stay in the test's tmp_path.
- ``baresip``: a :class:`~tests.integration.peers.baresip.BaresipLauncher`;
  ``phone = await baresip.start(user="buyer", answermode="manual")``, then
  ``phone.control.dial(...)``, ``wait_for("CALL_ESTABLISHED")``...;
  ``phone.dumps()`` lists the WAVs it sent and heard. Stopped at teardown.
- ``rtp_sink``: an :class:`~tests.integration.peers.rtp.RtpSink` on a free
  even loopback port, closed at teardown.

Each fixture skips the test, saying why, when its program is missing
(``make test`` installs them).

``tests/integration/peers/conftest.py`` imports these fixtures for the
tests of this folder. Another folder gets them the same way, in its own
``conftest.py``::

    from tests.integration.peers.fixtures import baresip, rtp_sink, sipp

    __all__ = ["baresip", "rtp_sink", "sipp"]

(pytest only honours ``pytest_plugins`` in the root conftest; there,
``pytest_plugins = ["tests.integration.peers.fixtures"]`` would give them
to every test.)
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.integration.peers.baresip import BaresipLauncher
from tests.integration.peers.rtp import RtpSink
from tests.integration.peers.sipp import SIPP_PCAP_DIR, SippLauncher

__all__ = ["baresip", "rtp_sink", "sipp"]


@pytest.fixture
def sipp(tmp_path: Path) -> Iterator[SippLauncher]:
    """Start SIPp peers; all are killed at teardown."""
    if shutil.which("sipp") is None:
        pytest.skip("sipp is not installed (Debian package sip-tester; `make test` installs it)")
    if not SIPP_PCAP_DIR.is_dir():
        pytest.skip(f"SIPp's sample captures are missing from {SIPP_PCAP_DIR}")
    launcher = SippLauncher(tmp_path)
    yield launcher
    launcher.close()


@pytest.fixture
async def baresip(tmp_path: Path) -> AsyncIterator[BaresipLauncher]:
    """Start baresip phones; all are stopped at teardown."""
    if shutil.which("baresip") is None:
        pytest.skip("baresip is not installed (Debian package baresip-core; `make test` does)")
    launcher = BaresipLauncher(tmp_path)
    yield launcher
    await launcher.close()


@pytest.fixture
def rtp_sink() -> Iterator[RtpSink]:
    """A Python RTP listener on loopback."""
    sink = RtpSink()
    yield sink
    sink.close()
