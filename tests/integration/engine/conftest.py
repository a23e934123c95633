"""Fixtures of the end-to-end engine tests: real peers and a real call server."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from callwhisper.engine.media import MediaConfig
from callwhisper.engine.server import CallwhisperServer, ServerConfig
from callwhisper.engine.transport import TransportConfig
from callwhisper.sip.timers import DEFAULT_TIMERS, TimerConfig
from tests.integration.peers.fixtures import baresip, rtp_sink, sipp
from tests.integration.peers.net import LOOPBACK

__all__ = ["baresip", "rtp_sink", "sipp", "start_server"]

StartServer = Callable[[dict[str, Any]], Awaitable[CallwhisperServer]]
"""``await start_server(document)``: a running server on that configuration."""


@pytest.fixture
def sip_transport() -> TransportConfig:
    """How the servers of ``start_server`` listen for SIP; a test module may override it."""
    return TransportConfig(host=LOOPBACK, port=0)


@pytest.fixture
def sip_timers() -> TimerConfig:
    """The SIP timers of the servers of ``start_server``; a test may parametrize it."""
    return DEFAULT_TIMERS


@pytest.fixture
async def start_server(
    tmp_path: Path, sip_transport: TransportConfig, sip_timers: TimerConfig
) -> AsyncIterator[StartServer]:
    """A factory starting a server on a configuration (SQLite in tmp_path); shut down at teardown.

    The SIP port is chosen by the system (``server.sip_address`` tells it).
    """
    servers: list[CallwhisperServer] = []

    async def start(document: dict[str, Any]) -> CallwhisperServer:
        path = tmp_path / f"callwhisper-{len(servers)}.yaml"
        path.write_text(json.dumps(document))  # JSON is YAML
        server = CallwhisperServer(
            ServerConfig(
                data_dir=tmp_path / f"var-{len(servers)}",
                configuration_file=path,
                sip=sip_transport,
                media=MediaConfig(address=LOOPBACK, port_min=42000, port_max=42999),
                drain_timeout=5.0,
                sip_timers=sip_timers,
            )
        )
        await server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.shutdown()
