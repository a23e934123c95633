"""A finished call leaves no reference cycle behind.

The objects of a call (its runner, session, media legs and their sockets,
timeline) must be freed by reference counting when the call ends. Left in
cycles, they wait for the garbage collector's full collections, which then
walk tens of thousands of objects and stall every call in progress for tens
of milliseconds (the post-dial delay's p99 in ``python -m bench sip``).
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator

import pytest

from callwhisper.engine.media import MediaLeg
from callwhisper.engine.runner import CallRunner
from callwhisper.flow.session import CallSession
from tests.integration.engine.calls import buyer, caller, configuration, finished_call
from tests.integration.engine.conftest import StartServer
from tests.integration.peers.sipp import SippLauncher

pytestmark = pytest.mark.integration

CALL_TYPES = (CallRunner, CallSession, MediaLeg)


def call_objects(objects: list[object]) -> list[str]:
    return sorted(type(item).__qualname__ for item in objects if isinstance(item, CALL_TYPES))


@pytest.fixture
def saved_garbage() -> Iterator[list[object]]:
    """``gc.garbage`` while the collector keeps what it finds instead of freeing it."""
    gc.collect()
    flags = gc.get_debug()
    gc.set_debug(flags | gc.DEBUG_SAVEALL)
    try:
        yield gc.garbage
    finally:
        gc.set_debug(flags)
        gc.garbage.clear()


async def test_a_declined_then_bridged_call_is_freed_without_the_garbage_collector(
    sipp: SippLauncher, start_server: StartServer, saved_garbage: list[object]
) -> None:
    voicemail = buyer(sipp, "buyer-voicemail-silent")
    accepting = buyer(sipp, "buyer-accepts", pause_ms=300)
    server = await start_server(
        configuration([("voicemail", voicemail.uri()), ("acme", accepting.uri())])
    )
    (await caller(sipp, server, pause_ms=500).wait_async()).assert_succeeded()
    call = await finished_call(server)
    assert call.outcome == "connected"

    # The call's last pieces (its task, the recording's close in a worker thread) end
    # shortly after its record is stored; none of it may need the collector.
    live = call_objects(gc.get_objects())
    for _ in range(100):
        gc.collect()
        assert call_objects(saved_garbage) == []
        live = call_objects(gc.get_objects())
        if not live:
            break
        await asyncio.sleep(0.05)
    assert live == []
