"""How a call runner takes its inputs: at once when it can, in turn when one has to wait.

Routing, reservations and lookups answered at once leave no turn of the
event loop between an input and what it leads to; one that really waits
holds the call's later inputs until it is done. :func:`eagerly` is the
step that tells the two apart.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import get_args

import pytest

from callwhisper.domain import CallAttributes
from callwhisper.domain.state import Reservation
from callwhisper.engine import runner
from callwhisper.engine.runner import eagerly
from callwhisper.flow import CallRecord, Command, Entry
from callwhisper.routing import RoutingDecision
from callwhisper.sip.transaction import Address
from tests.logs import only_error
from tests.unit.engine.b2bua_harness import (
    BUYER,
    BUYER_SDP,
    CALLER,
    FakeBackend,
    Harness,
    caller_cancel,
    document,
    invite,
    requests,
    response_to,
    statuses,
)

# -- eagerly ------------------------------------------------------------------------------


async def test_eagerly_a_coroutine_that_never_waits_is_done_on_return() -> None:
    ran: list[str] = []

    async def work() -> int:
        ran.append("work")
        return 42

    done = eagerly(work())
    assert ran == ["work"]
    assert done.done()
    assert done.result() == 42


async def test_eagerly_an_error_before_any_wait_comes_out_of_the_call() -> None:
    async def work() -> None:
        raise ValueError("broken")

    with pytest.raises(ValueError, match="broken"):
        eagerly(work())


async def test_eagerly_a_coroutine_that_waits_runs_to_its_first_wait_then_in_a_task() -> None:
    gate = asyncio.get_running_loop().create_future()
    ran: list[str] = []

    async def work() -> str:
        ran.append("before")
        value = await gate
        ran.append("after")
        return f"got {value}"

    rest = eagerly(work())
    assert ran == ["before"]
    assert isinstance(rest, asyncio.Task)
    gate.set_result(7)
    assert await rest == "got 7"
    assert ran == ["before", "after"]


async def test_eagerly_the_rest_may_wait_again_and_see_errors_of_what_it_waits_for() -> None:
    loop = asyncio.get_running_loop()
    first, second = loop.create_future(), loop.create_future()

    async def work() -> str:
        await first
        await asyncio.sleep(0)
        try:
            await second
        except KeyError:
            return "handled"
        return "not raised"

    rest = eagerly(work())
    first.set_result(None)
    await asyncio.sleep(0)
    second.set_exception(KeyError("missing"))
    assert await rest == "handled"


async def test_eagerly_cancelling_the_rest_cancels_what_it_waits_for_inside_it() -> None:
    gate = asyncio.get_running_loop().create_future()
    seen: list[str] = []

    async def work() -> None:
        try:
            await gate
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    rest = eagerly(work())
    await asyncio.sleep(0)
    rest.cancel()
    with pytest.raises(asyncio.CancelledError):
        await rest
    assert gate.cancelled()
    assert seen == ["cancelled"]


def test_the_runner_carries_out_every_command_of_the_flow() -> None:
    assert set(runner._CARRY_OUT) == set(get_args(Command))


# -- calls whose backend waits ------------------------------------------------------------


class WaitingBackend(FakeBackend):
    """Routing and reservations that wait (as in the database) until the test lets them go."""

    def __init__(self, backend: FakeBackend) -> None:
        super().__init__(backend.configuration)
        self.routing: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.reserving: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def route(self, call_id: str, attributes: CallAttributes, at: float) -> RoutingDecision:
        await self.routing
        return await super().route(call_id, attributes, at)

    async def reserve(self, call_id: str, reservation: Reservation) -> str | None:
        await self.reserving
        return None


def waiting(harness: Harness) -> WaitingBackend:
    backend = WaitingBackend(harness.backend)
    harness.backend = harness.b2bua.backend = backend
    return backend


async def test_the_buyer_is_dialed_before_the_event_loop_turns(tmp_path: Path) -> None:
    """With routing answered at once, the caller's INVITE leads to the buyer's in one go."""
    async with Harness(tmp_path) as harness:
        harness.receive(invite(), CALLER)
        sent = harness.endpoint.take()
        assert statuses([m for m, d in sent if d == CALLER]) == [100, 183]
        assert requests([m for m, d in sent if d == BUYER]) == ["INVITE"]


async def test_a_call_waits_for_routing_and_its_reservation_then_dials(tmp_path: Path) -> None:
    async with Harness(tmp_path) as harness:
        backend = waiting(harness)
        harness.receive(invite(), CALLER)
        await harness.settle()
        sent = harness.endpoint.take()
        assert statuses([m for m, d in sent if d == CALLER]) == [100, 183]
        assert [m for m, d in sent if d == BUYER] == []
        backend.routing.set_result(None)
        await harness.settle()
        assert harness.endpoint.take() == []
        backend.reserving.set_result(None)
        await harness.settle()
        assert requests(harness.sent_to(BUYER)) == ["INVITE"]
        kinds = [entry.kind for entry in backend.entries]
        assert kinds == ["arrived", "ringback", "routing", "dial"]


async def test_what_happens_while_routing_waits_is_handled_after_it(tmp_path: Path) -> None:
    """The caller's CANCEL waits its turn: the session gets the routing first, then the hang-up."""
    async with Harness(tmp_path) as harness:
        backend = waiting(harness)
        harness.receive(invite(), CALLER)
        await harness.settle()
        harness.endpoint.take()
        harness.receive(caller_cancel(), CALLER)
        await harness.settle()
        assert statuses(harness.sent_to(CALLER)) == [200, 487]
        assert [entry.kind for entry in backend.entries] == ["arrived", "ringback"]
        backend.routing.set_result(None)
        backend.reserving.set_result(None)
        await harness.settle()
        assert requests(harness.sent_to(BUYER)) == ["INVITE"]
        kinds = [(entry.kind, entry.leg) for entry in backend.entries]
        assert kinds[2:] == [
            ("routing", None),
            ("dial", "B1"),
            ("leg_end", "A"),
            ("leg_end", "B1"),
            ("ended", None),
        ]
        assert backend.ended == ["caller_hangup"]
        assert harness.leg_end("B1")["reason"] == "canceled"
        assert not harness.b2bua.tasks


async def test_a_server_stop_while_routing_waits_ends_the_call_without_dialing(
    tmp_path: Path,
) -> None:
    async with Harness(tmp_path) as harness:
        backend = waiting(harness)
        harness.receive(invite(), CALLER)
        await harness.settle()
        harness.endpoint.take()
        await harness.close()
        assert statuses(harness.sent_to(CALLER)) == [500]
        assert harness.sent_to(BUYER) == []
        assert backend.routing.cancelled()
        assert backend.ended == ["interrupted"]
        assert harness.b2bua.runners == set()


class StuckBackend(FakeBackend):
    """A store that never finishes a timeline write."""

    async def persist(self, call_id: str, entry: Entry) -> None:
        await asyncio.Event().wait()


async def test_a_call_waits_for_its_writes_but_a_server_stop_does_not(tmp_path: Path) -> None:
    async with Harness(tmp_path) as harness:
        harness.backend = harness.b2bua.backend = StuckBackend(harness.backend.configuration)
        buyer_invite = await harness.dial()
        harness.receive(response_to(buyer_invite, 486, "Busy Here"), BUYER)
        await harness.settle()
        assert harness.backend.ended == ["no_buyer"]
        [task] = harness.b2bua.tasks
        assert not task.done()
        harness.receive(invite().replace("call-1", "call-2").replace("caller-1", "2"), CALLER)
        await harness.settle()
        assert len(harness.b2bua.tasks) == 2
        async with asyncio.timeout(1):
            await harness.close()
        assert harness.backend.ended == ["no_buyer", "interrupted"]
        assert harness.b2bua.runners == set()


async def test_a_buyer_host_that_resolves_late_is_dialed_once_it_has(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    answer: asyncio.Future[Address] = asyncio.get_running_loop().create_future()

    async def resolve(host: str, port: int) -> Address:
        return await answer

    monkeypatch.setattr(runner, "_resolve", resolve)
    configuration = document({"destination": "sip:buyer@buyer.example:5080"})
    async with Harness(tmp_path, configuration) as harness:
        harness.receive(invite(), CALLER)
        await harness.settle()
        assert statuses(harness.sent_to(CALLER)) == [100, 183]
        answer.set_result(BUYER)
        await harness.settle()
        [request] = harness.sent_to(BUYER)
        harness.receive(response_to(request, 200, "OK", BUYER_SDP), BUYER)  # type: ignore[arg-type]
        await harness.settle()
        assert requests(harness.sent_to(BUYER)) == ["ACK"]


class BrokenBackend(FakeBackend):
    """A store whose timeline write of the buyer's answer fails."""

    async def persist(self, call_id: str, entry: Entry) -> None:
        await super().persist(call_id, entry)
        if entry.kind == "answer":
            raise OSError("disk full")


async def test_a_failed_store_write_is_logged_and_the_call_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with Harness(tmp_path) as harness:
        harness.backend = harness.b2bua.backend = BrokenBackend(harness.backend.configuration)
        with caplog.at_level(logging.ERROR, "callwhisper.engine.runner"):
            await harness.bridge()
        assert only_error(caplog, OSError).endswith(": store write failed")


async def busy_buyer_call(harness: Harness, backend: FakeBackend) -> asyncio.Future[None]:
    """A call through ``backend`` whose only buyer is busy: the caller has its 480; its task."""
    harness.backend = harness.b2bua.backend = backend
    buyer_invite = await harness.dial()
    harness.receive(response_to(buyer_invite, 486, "Busy Here"), BUYER)
    await harness.settle()
    assert statuses(harness.sent_to(CALLER)) == [480]
    [task] = harness.b2bua.tasks
    return task


class GatedBackend(FakeBackend):
    """Timeline writes that finish when the test says, in any order; the ringback's fails."""

    def __init__(self, backend: FakeBackend) -> None:
        super().__init__(backend.configuration)
        self.gates: list[asyncio.Future[None]] = []

    async def persist(self, call_id: str, entry: Entry) -> None:
        gate = asyncio.get_running_loop().create_future()
        self.gates.append(gate)
        await gate
        await super().persist(call_id, entry)
        if entry.kind == "ringback":
            raise OSError("disk full")


async def test_writes_done_out_of_order_are_all_waited_for_and_a_failure_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with Harness(tmp_path) as harness:
        backend = GatedBackend(harness.backend)
        task = await busy_buyer_call(harness, backend)
        with caplog.at_level(logging.ERROR, "callwhisper.engine.runner"):
            first, *later = backend.gates
            for gate in reversed(later):
                gate.set_result(None)
                await harness.settle()
            assert not task.done()
            first.set_result(None)
            await harness.settle()
        assert task.done()
        assert only_error(caplog, OSError).endswith(": store write failed")
        assert [e.kind for e in backend.entries][-1] == "arrived"
        assert len(backend.entries) == len(backend.gates)


class PostingBackend(FakeBackend):
    """Writes handed over without anything to wait for, as the store's backend posts them;
    the call's end is done when the test says (the store ends writes in order)."""

    def __init__(self, backend: FakeBackend) -> None:
        super().__init__(backend.configuration)
        self.ended_write: asyncio.Future[None] | None = None

    def persist(self, call_id: str, entry: Entry) -> None:  # type: ignore[override]
        self.entries.append(entry)

    def call_ended(  # type: ignore[override]
        self, call_id: str, attributes: CallAttributes, record: CallRecord, *, outcome: str
    ) -> asyncio.Future[None]:
        self.ended.append(outcome)
        self.ended_write = asyncio.get_running_loop().create_future()
        return self.ended_write


async def test_a_call_whose_writes_were_posted_is_done_once_its_last_write_is(
    tmp_path: Path,
) -> None:
    async with Harness(tmp_path) as harness:
        backend = PostingBackend(harness.backend)
        task = await busy_buyer_call(harness, backend)
        assert backend.ended == ["no_buyer"]
        assert backend.ended_write is not None
        assert not task.done()
        backend.ended_write.set_result(None)
        await harness.settle()
        assert task.done()
        assert backend.entries[0].kind == "arrived"


async def test_an_input_whose_handling_fails_ends_the_call_as_interrupted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async with Harness(tmp_path) as harness:
        buyer_invite = await harness.dial()

        def broken(*args: object) -> None:
            raise RuntimeError("bug")

        monkeypatch.setattr(runner.CallRunner, "_buyer_response", broken)
        with caplog.at_level(logging.ERROR, "callwhisper.engine.runner"):
            harness.receive(response_to(buyer_invite, 180, "Ringing"), BUYER)
        assert "failed; ending it" in caplog.text
        sent = harness.endpoint.take()
        assert statuses([m for m, d in sent if d == CALLER]) == [500]
        assert requests([m for m, d in sent if d == BUYER]) == ["CANCEL"]
        await harness.settle()
        interrupted = [e for e in harness.backend.entries if e.kind == "interrupted"]
        assert [dict(e.data) for e in interrupted] == [
            {"outcome": "interrupted", "reason": "internal error"}
        ]
        assert harness.backend.ended == ["interrupted"]
        assert not harness.b2bua.tasks
