"""The real-peer fixtures for the tests of this folder (see ``fixtures.py``)."""

from tests.integration.peers.fixtures import baresip, rtp_sink, sipp

__all__ = ["baresip", "rtp_sink", "sipp"]
