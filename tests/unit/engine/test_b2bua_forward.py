"""The fallback "forward" on the B2BUA: the overflow line is dialed, then bridged to the caller.

Same fakes as ``test_b2bua.py``: the real transaction layer, fake media,
store and speech, and a wall clock the test moves. The campaign's only buyer
is busy, so the fallback hands the caller to the overflow line, which the
engine dials itself and reports to the call flow as a leg of the call: the
stored timeline follows the call to its end, with each leg's cost.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

import pytest

from callwhisper.domain import CallAttributes, Configuration
from callwhisper.engine.b2bua import B2bua
from callwhisper.engine.media import MediaEngine
from callwhisper.engine.runner import RunnerSettings, TimerInput
from callwhisper.flow import CallRecord
from callwhisper.sip.message import SipMessage, SipRequest
from callwhisper.sip.transaction import Address
from tests.unit.engine.test_b2bua import (
    BUYER,
    BUYER_SDP,
    BUYER_URI,
    CALLER,
    NOW,
    FakeBackend,
    FakePrompts,
    Harness,
    configuration,
    invite,
    response_to,
    statuses,
)

OVERFLOW_URI = "sip:overflow@127.0.0.1:5090"
OVERFLOW: Address = ("127.0.0.1", 5090)
OVERFLOW_NUMBER = "+18885550101"
TRUNKS = {"carrier": "sip:127.0.0.1:5091", "backup": "sip:127.0.0.1:5090"}
"""Two trunks; ``backup``'s proxy is where the overflow line's INVITE is looked for."""
TELEPHONY = {"inbound_per_minute": "0.60", "outbound_per_minute": "1.20", "increment_seconds": 6}
"""1 cent a second in, 2 cents out, billed in 6 s increments."""


def forwarding(
    sip_code: int = 486,
    forward_to: str = OVERFLOW_URI,
    trunks: tuple[str, ...] = (),
    fallback: dict[str, Any] | None = None,
) -> Configuration:
    """The harness's campaign, forwarding to the overflow line when nobody accepts."""
    document = configuration().model_dump(mode="json")
    document["telephony"] = TELEPHONY
    document["trunks"] = [{"id": name, "proxy": TRUNKS[name]} for name in trunks]
    document["campaigns"][0]["fallback"] = {
        "action": "forward",
        "forward_to": forward_to,
        "sip_code": sip_code,
        "ring_timeout_seconds": 45,
        **(fallback or {}),
    }
    return Configuration.model_validate(document)


class RecordsBackend(FakeBackend):
    """Keeps the record each call ends with, as the store is given it."""

    def __init__(self, configuration: Configuration) -> None:
        super().__init__(configuration)
        self.records: list[CallRecord] = []

    async def call_ended(
        self, call_id: str, attributes: CallAttributes, record: CallRecord, *, outcome: str
    ) -> None:
        await super().call_ended(call_id, attributes, record, outcome=outcome)
        self.records.append(record)


class ForwardHarness(Harness):
    """The B2BUA on a forwarding campaign, its wall clock at :attr:`clock`."""

    backend: RecordsBackend

    def __init__(self, tmp_path: Path, configuration: Configuration) -> None:
        super().__init__(tmp_path)
        self.clock = NOW
        self.backend = RecordsBackend(configuration)
        self.b2bua = B2bua(
            self.core,
            cast(MediaEngine, self.media),
            self.backend,
            FakePrompts(),
            configuration,
            RunnerSettings(tmp_path, cancel_linger_seconds=0.0),
            local=("127.0.0.1", 5060),
            media_address="127.0.0.1",
            flush=self.endpoint.flush,
            clock=lambda: 0.0,
            wall=lambda: self.clock,
        )
        self.endpoint.handler = self.b2bua.handle_event

    def at(self, offset: float) -> None:
        """Move the wall clock to ``offset`` seconds after the call's arrival."""
        self.clock = NOW + offset

    def record(self) -> CallRecord:
        """The record the call ended with."""
        [record] = self.backend.records
        return record

    def timeline(self, leg: str | None = None) -> list[tuple[float, str, str | None]]:
        """The stored timeline as (seconds since arrival, kind, leg), of ``leg`` if given."""
        return [
            (round(entry.at - NOW, 3), entry.kind, entry.leg)
            for entry in self.backend.entries
            if leg is None or entry.leg == leg
        ]

    def end_of(self, leg: str) -> dict[str, str]:
        """The data of ``leg``'s stored ``leg_end`` entry."""
        [end] = [e for e in self.backend.entries if e.kind == "leg_end" and e.leg == leg]
        return dict(end.data)


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[ForwardHarness]:
    harness = ForwardHarness(tmp_path, forwarding())
    yield harness
    for task in harness.b2bua.tasks:
        task.cancel()
    await asyncio.gather(*harness.b2bua.tasks, return_exceptions=True)


def requests(messages: list[SipMessage]) -> list[str]:
    return [message.method for message in messages if isinstance(message, SipRequest)]


def overflow_says(invite: SipRequest, status: int, reason: str, body: str = "") -> str:
    """The overflow line's response to ``invite`` (its Contact is its own address)."""
    return response_to(invite, status, reason, body).replace(BUYER_URI, OVERFLOW_URI)


def sent(harness: Harness) -> tuple[list[SipMessage], list[SipMessage]]:
    """What was sent to the caller and to the overflow line since the last look."""
    messages = harness.endpoint.take()
    return (
        [message for message, destination in messages if destination == CALLER],
        [message for message, destination in messages if destination == OVERFLOW],
    )


async def overflow_invite(harness: ForwardHarness) -> SipRequest:
    """The call arrives at 0 s, the only buyer is busy at 1 s: the INVITE to the overflow."""
    harness.at(0)
    harness.receive(invite(), CALLER)
    await harness.settle()
    buyer_invite = harness.sent_to(BUYER)[0]
    assert isinstance(buyer_invite, SipRequest)
    harness.at(1)
    harness.receive(response_to(buyer_invite, 486, "Busy Here"), BUYER)
    await harness.settle()
    to_caller, to_overflow = sent(harness)
    assert requests(to_overflow) == ["INVITE"]
    # The caller is not answered nor turned away while the overflow rings.
    assert statuses(to_caller) == []
    invite_sent = to_overflow[0]
    assert isinstance(invite_sent, SipRequest)
    return invite_sent


async def bridged(harness: ForwardHarness) -> SipRequest:
    """The overflow rings at 2 s and answers at 10 s: bridged to the caller, who gets a 200."""
    overflow_invite_sent = await overflow_invite(harness)
    harness.at(2)
    harness.receive(overflow_says(overflow_invite_sent, 180, "Ringing"), OVERFLOW)
    harness.at(10)
    harness.receive(overflow_says(overflow_invite_sent, 200, "OK", BUYER_SDP), OVERFLOW)
    await harness.settle()
    to_caller, to_overflow = sent(harness)
    assert requests(to_overflow) == ["ACK"]
    assert statuses(to_caller) == [200]
    return overflow_invite_sent


def bye(request_uri: str, via: str, from_: str, to: str, call_id: str) -> str:
    return (
        f"BYE {request_uri} SIP/2.0\nVia: SIP/2.0/UDP {via}\nFrom: {from_}\nTo: {to}\n"
        f"Call-ID: {call_id}\nCSeq: 2 BYE\nMax-Forwards: 70\nContent-Length: 0\n\n"
    )


async def test_the_overflow_is_dialed_for_the_caller_who_keeps_hearing_ringback(
    harness: ForwardHarness,
) -> None:
    invite_sent = await overflow_invite(harness)
    assert invite_sent.uri == OVERFLOW_URI
    assert invite_sent.from_.uri.startswith("sip:+14155550123@")  # the caller's own number
    # call-flow 2: the ringback started for the buyer plays on, without a gap.
    caller = harness.media.legs["A"]
    assert caller.played == ["ringback"]
    assert caller.playing == 1
    assert harness.timeline()[-2:] == [(1, "fallback", None), (1, "dial", "overflow")]
    dial = harness.backend.entries[-1]
    assert dict(dial.data) == {"destination": OVERFLOW_URI}
    assert harness.b2bua.tasks  # the call goes on, and is not ended in the record
    assert harness.backend.ended == []


async def test_the_overflow_answering_is_bridged_at_once_and_its_hang_up_recorded(
    harness: ForwardHarness,
) -> None:
    invite_sent = await bridged(harness)
    overflow = harness.media.legs["overflow"]
    assert overflow.played == []  # no whisper, no accept gate
    assert harness.media.bridges == [(harness.media.legs["A"].ident, overflow.ident)]

    harness.at(135.5)
    harness.receive(
        bye(
            "sip:callwhisper@127.0.0.1:5060",
            "127.0.0.1:5090;branch=z9hG4bK-overflow-bye",
            f"{invite_sent.headers.get('To')};tag=buyer",
            invite_sent.headers.get("From") or "",
            invite_sent.call_id,
        ),
        OVERFLOW,
    )
    await harness.settle()
    to_caller, to_overflow = sent(harness)
    assert statuses(to_overflow) == [200]
    assert requests(to_caller) == ["BYE"]
    assert harness.media.legs["A"].closed
    assert overflow.closed
    assert not harness.b2bua.tasks

    # The stored timeline follows the forwarded call to its end (call-flow 16).
    assert harness.timeline("overflow") == [
        (1, "dial", "overflow"),
        (2, "ringing", "overflow"),
        (10, "answer", "overflow"),
        (10, "bridge", "overflow"),
        (135.5, "leg_end", "overflow"),
    ]
    assert (10, "caller_answered", "A") in harness.timeline("A")
    assert harness.timeline()[-1] == (135.5, "ended", None)
    # 125.5 s answered on each side, billed as 126 s (call-flow 18).
    assert harness.end_of("overflow") == {"reason": "hangup", "by": "overflow", "cost": "2.5200"}
    assert harness.end_of("A") == {"reason": "hangup", "by": "system", "cost": "1.2600"}
    record = harness.record()
    assert record.legs["A"].answered_at == NOW + 10
    assert record.ended_at is not None
    assert record.ended_at - NOW == 135.5
    assert (record.revenue, record.payout, record.cost) == (
        Decimal(0),
        Decimal(0),
        Decimal("3.78"),
    )
    assert harness.backend.ended == ["no_buyer"]


async def test_the_caller_hanging_up_a_forwarded_call_hangs_up_the_overflow(
    harness: ForwardHarness,
) -> None:
    await bridged(harness)
    runner = next(iter(harness.b2bua.runners))
    harness.at(70)
    harness.receive(
        bye(
            "sip:callwhisper@127.0.0.1:5060",
            "127.0.0.1:5071;branch=z9hG4bK-caller-bye",
            "<sip:+14155550123@127.0.0.1:5071>;tag=caller",
            f"<sip:sales@127.0.0.1:5060>;tag={runner.caller.to_tag}",
            "call-1",
        ),
        CALLER,
    )
    await harness.settle()
    to_caller, to_overflow = sent(harness)
    assert statuses(to_caller) == [200]
    assert requests(to_overflow) == ["BYE"]
    assert harness.end_of("A") == {"reason": "hangup", "by": "caller", "cost": "0.6000"}
    assert harness.end_of("overflow") == {"reason": "hangup", "by": "system", "cost": "1.2000"}
    assert harness.record().cost == Decimal("1.80")
    assert harness.backend.ended == ["no_buyer"]


async def test_an_overflow_that_is_busy_too_gets_the_caller_the_fallback_code(
    harness: ForwardHarness,
) -> None:
    invite_sent = await overflow_invite(harness)
    harness.at(3)
    harness.receive(overflow_says(invite_sent, 486, "Busy Here"), OVERFLOW)
    await harness.settle()
    to_caller, to_overflow = sent(harness)
    assert requests(to_overflow) == ["ACK"]
    assert statuses(to_caller) == [486]
    assert harness.media.legs["A"].closed
    assert harness.end_of("overflow") == {"reason": "busy", "status": "486", "cost": "0.0000"}
    assert harness.end_of("A") == {"reason": "rejected", "by": "system", "cost": "0.0000"}
    assert harness.record().legs["A"].answered_at is None
    assert harness.backend.ended == ["no_buyer"]
    assert not harness.b2bua.tasks


async def test_an_overflow_ringing_past_its_timeout_is_canceled_and_the_caller_let_go(
    harness: ForwardHarness,
) -> None:
    invite_sent = await overflow_invite(harness)
    harness.receive(overflow_says(invite_sent, 180, "Ringing"), OVERFLOW)
    runner = next(iter(harness.b2bua.runners))
    harness.at(46)  # dialed at 1 s, rings 45 s
    runner.feed(TimerInput())
    await harness.settle()
    to_caller, to_overflow = sent(harness)
    assert requests(to_overflow) == ["CANCEL"]
    assert statuses(to_caller) == [486]
    assert harness.end_of("overflow") == {"reason": "no_answer", "by": "system", "cost": "0.0000"}
    assert harness.timeline()[-1] == (46, "ended", None)


async def test_the_caller_cancelling_while_the_overflow_rings_cancels_it(
    harness: ForwardHarness,
) -> None:
    invite_sent = await overflow_invite(harness)
    harness.receive(overflow_says(invite_sent, 180, "Ringing"), OVERFLOW)
    harness.at(8)
    harness.receive(
        "CANCEL sip:sales@127.0.0.1:5060 SIP/2.0\n"
        "Via: SIP/2.0/UDP 127.0.0.1:5071;branch=z9hG4bK-caller-1\n"
        "From: <sip:+14155550123@127.0.0.1:5071>;tag=caller\n"
        "To: <sip:sales@127.0.0.1:5060>\n"
        "Call-ID: call-1\nCSeq: 1 CANCEL\nMax-Forwards: 70\nContent-Length: 0\n\n",
        CALLER,
    )
    await harness.settle()
    to_caller, to_overflow = sent(harness)
    assert statuses(to_caller) == [200, 487]
    assert requests(to_overflow) == ["CANCEL"]
    assert harness.media.legs["overflow"].closed
    assert harness.end_of("overflow") == {"reason": "canceled", "by": "system", "cost": "0.0000"}
    assert harness.end_of("A") == {"reason": "hangup", "by": "caller", "cost": "0.0000"}
    assert harness.backend.ended == ["no_buyer"]


@pytest.mark.parametrize(
    ("trunks", "fallback"),
    [
        (("carrier", "backup"), {"trunk": "backup"}),  # the trunk the fallback names
        (("backup",), {}),  # unnamed: the configuration's only trunk
    ],
)
async def test_a_number_overflow_is_dialed_through_its_trunk(
    tmp_path: Path, trunks: tuple[str, ...], fallback: dict[str, str]
) -> None:
    configuration = forwarding(forward_to=OVERFLOW_NUMBER, trunks=trunks, fallback=fallback)
    harness = ForwardHarness(tmp_path, configuration)
    try:
        invite_sent = await overflow_invite(harness)
        # The trunk is the outbound proxy; the Request-URI names the number at it.
        assert invite_sent.uri == f"sip:{OVERFLOW_NUMBER}@127.0.0.1:5090"
        assert harness.sent_to(("127.0.0.1", 5091)) == []
    finally:
        for task in harness.b2bua.tasks:
            task.cancel()
        await asyncio.gather(*harness.b2bua.tasks, return_exceptions=True)
