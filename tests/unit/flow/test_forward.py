"""The forward fallback: the overflow line as a leg of the call, recorded to its end.

call-flow 14 with the rules every bridged call follows: the caller hears
ringback until the overflow line answers (2), is answered then (1), the
line's answer is its bridge (no whisper: it has no accept gate), each leg's
answer, bridge, end and who ended it are recorded (16), and every answered
leg costs (18). The overflow line is no buyer: no revenue, no payout.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from callwhisper.domain.campaign import Fallback, PayoutRule, TelephonyCosts
from callwhisper.domain.ivr import Ivr, IvrBranch, IvrNode
from callwhisper.errors import IllegalTransition
from callwhisper.flow import (
    AnswerCaller,
    Bridge,
    CallRecord,
    CallState,
    CancelLeg,
    DigitReceived,
    FlowSettings,
    ForwardCaller,
    HangupLeg,
    LegAnswered,
    LegFailed,
    LegHungUp,
    LegRinging,
    Persist,
    RejectCaller,
    StartRecording,
    StopRecording,
    StopRingback,
    format_timeline,
)
from tests.unit.flow.harness import CALLER_NUMBER, Harness, control, offer

OVERFLOW_NUMBER = "+18885550101"
COSTS = TelephonyCosts(
    inbound_per_minute=Decimal("0.60"),
    outbound_per_minute=Decimal("1.20"),
    increment_seconds=6,
)


def forwarding(
    *,
    sip_code: int = 480,
    ring_timeout: int = 45,
    trunk: str | None = None,
    recording: bool = False,
    ivr: Ivr | None = None,
) -> Harness:
    """A call whose only buyer is busy at t=1, so that the overflow line is dialed then."""
    fallback = Fallback(
        action="forward",
        forward_to=OVERFLOW_NUMBER,
        sip_code=sip_code,
        ring_timeout_seconds=ring_timeout,
        trunk=trunk,
    )
    settings = FlowSettings(
        "auto",
        fallback=fallback,
        costs=COSTS,
        recording=recording,
        ivr=ivr,
        payout=PayoutRule(amount=Decimal("12.00"), buffer_seconds=0),
    )
    h = Harness(offer("acme"), settings=settings)
    h.arrive()
    if ivr is not None:
        h.send(DigitReceived("A", "1"), at=0.5)
    h.send(LegFailed("B1", "busy", 486), at=1)
    return h


def ends(h: Harness) -> dict[str, tuple[str | None, str | None, Decimal]]:
    """Each leg's end reason, who ended it, and what it cost."""
    return {
        leg: (record.end_reason, record.ended_by, record.cost)
        for leg, record in h.session.record.legs.items()
    }


def state_of(h: Harness) -> CallState:
    """The call's state now."""
    return h.session.state


def test_the_overflow_line_is_dialed_for_the_caller_without_stopping_the_ringback() -> None:
    h = forwarding(ring_timeout=45, trunk="carrier")
    assert control(h.log)[-1] == ForwardCaller(
        "overflow", OVERFLOW_NUMBER, "carrier", CALLER_NUMBER, 45
    )
    assert StopRingback() not in control(h.log)
    assert h.session.state is CallState.FALLBACK
    assert not h.session.finished
    assert h.session.get_timer() == 46  # the overflow's ring timeout
    [dial] = h.entries("dial", "overflow")
    assert (dial.at, dict(dial.data)) == (1, {"destination": OVERFLOW_NUMBER, "trunk": "carrier"})
    overflow = h.session.record.legs["overflow"]
    assert (overflow.buyer_id, overflow.reservation_id, overflow.dialed_at) == (None, None, 1)


def test_the_answer_of_the_overflow_line_answers_the_caller_and_bridges_at_once() -> None:
    h = forwarding()
    assert control(h.send(LegRinging("overflow"), at=2)) == []
    assert control(h.send(LegAnswered("overflow"), at=10)) == [
        StopRingback(),
        AnswerCaller(),
        Bridge("A", "overflow"),
    ]
    assert h.session.state is CallState.FORWARDED
    assert h.session.get_timer() is None
    record = h.session.record
    overflow = record.legs["overflow"]
    assert (overflow.ringing_at, overflow.answered_at, overflow.bridged_at) == (2, 10, 10)
    assert overflow.accepted_at is None  # no accept gate: nothing was accepted
    assert record.legs["A"].answered_at == 10
    # The overflow line is no buyer: the call is not connected to one.
    assert record.bridged_legs == []
    assert [e.kind for e in h.timeline if e.leg == "overflow"] == [
        "dial",
        "ringing",
        "answer",
        "bridge",
    ]


def test_the_overflow_hanging_up_ends_the_call_with_each_legs_cost_and_no_revenue() -> None:
    h = forwarding()
    h.send(LegAnswered("overflow"), at=10)
    # call-flow 18: 125.5 s answered, billed as 126 s in 6 s increments.
    assert control(h.send(LegHungUp("overflow"), at=135.5)) == [HangupLeg("A", "overflow hung up")]
    assert ends(h) == {
        "A": ("hangup", "system", Decimal("1.26")),
        "B1": ("busy", None, Decimal(0)),
        "overflow": ("hangup", "overflow", Decimal("2.52")),
    }
    record = h.session.record
    assert record.legs["overflow"].ended_at == record.legs["A"].ended_at == 135.5
    assert record.legs["B1"].status == "486"
    assert (record.revenue, record.payout, record.cost) == (Decimal(0), Decimal(0), Decimal("3.78"))
    assert (record.outcome, record.ended_at) == ("no_buyer", 135.5)
    [ended] = h.entries("ended")
    assert dict(ended.data) == {
        "outcome": "no_buyer",
        "revenue": "0",
        "payout": "0",
        "cost": "3.7800",
    }
    assert h.session.finished


def test_the_caller_hanging_up_a_forwarded_call_hangs_up_the_overflow_line() -> None:
    h = forwarding()
    h.send(LegAnswered("overflow"), at=10)
    assert control(h.send(LegHungUp("A"), at=70)) == [HangupLeg("overflow", "caller hung up")]
    assert ends(h) == {
        "A": ("hangup", "caller", Decimal("0.60")),
        "B1": ("busy", None, Decimal(0)),
        "overflow": ("hangup", "system", Decimal("1.20")),
    }
    assert h.session.record.outcome == "no_buyer"


def test_an_overflow_line_that_fails_gets_the_unanswered_caller_the_fallback_code() -> None:
    h = forwarding(sip_code=486)
    h.send(LegRinging("overflow", early_media=True), at=2)
    assert control(h.send(LegFailed("overflow", "busy", 486), at=5)) == [
        StopRingback(),
        RejectCaller(486, "overflow busy"),
    ]
    assert ends(h) == {
        "A": ("rejected", "system", Decimal(0)),
        "B1": ("busy", None, Decimal(0)),
        "overflow": ("busy", None, Decimal(0)),
    }
    assert h.session.record.legs["overflow"].status == "486"
    assert h.session.record.legs["A"].answered_at is None
    assert h.session.finished


def test_an_overflow_line_that_rings_too_long_is_canceled_and_the_caller_let_go() -> None:
    h = forwarding(ring_timeout=45)
    h.send(LegRinging("overflow"), at=2)
    assert control(h.run_until(45.9)) == []
    assert control(h.run_until(46)) == [
        CancelLeg("overflow"),
        StopRingback(),
        RejectCaller(480, "overflow no_answer"),
    ]
    assert ends(h)["overflow"] == ("no_answer", "system", Decimal(0))
    assert h.session.get_timer() is None
    # A 200 crossing our CANCEL is the driver's to hang up; the session drops it.
    assert h.send(LegAnswered("overflow"), at=46.1) == []


def test_the_caller_hanging_up_while_the_overflow_rings_cancels_it() -> None:
    h = forwarding()
    h.send(LegRinging("overflow"), at=2)
    assert control(h.send(LegHungUp("A"), at=8)) == [CancelLeg("overflow")]
    assert ends(h)["overflow"] == ("canceled", "system", Decimal(0))
    assert ends(h)["A"] == ("hangup", "caller", Decimal(0))
    assert h.session.record.outcome == "no_buyer"
    assert h.session.get_timer() is None


def test_a_caller_answered_for_an_ivr_is_bridged_without_a_second_answer_or_hung_up() -> None:
    node = IvrNode(id="q", say="Press 1.", branches={"1": IvrBranch(action="route")})
    ivr = Ivr(start="q", nodes=[node])
    bridged = forwarding(ivr=ivr)
    assert control(bridged.send(LegAnswered("overflow"), at=10)) == [
        StopRingback(),
        Bridge("A", "overflow"),
    ]
    assert bridged.session.record.legs["A"].answered_at == 0
    let_go = forwarding(ivr=ivr)
    assert control(let_go.send(LegFailed("overflow", "failed"), at=3)) == [
        StopRingback(),
        HangupLeg("A", "overflow failed"),
    ]
    # The caller's minutes since the IVR's answer cost, the unanswered overflow does not.
    assert ends(let_go)["A"] == ("hangup", "system", Decimal("0.06"))
    assert ends(let_go)["overflow"] == ("failed", None, Decimal(0))


def test_a_recorded_campaign_records_the_forwarded_conversation() -> None:
    h = forwarding(recording=True)
    assert control(h.send(LegAnswered("overflow"), at=10))[-1] == StartRecording(("A", "overflow"))
    assert control(h.send(LegHungUp("A"), at=20)) == [
        StopRecording(),
        HangupLeg("overflow", "caller hung up"),
    ]
    assert [(e.kind, e.leg, e.at) for e in h.timeline if e.kind.startswith("recording")] == [
        ("recording_start", "overflow", 10),
        ("recording_stop", "overflow", 20),
    ]


def test_keys_from_the_overflow_line_change_nothing_and_illegal_reports_are_refused() -> None:
    h = forwarding()
    entries = len(h.timeline)
    with pytest.raises(IllegalTransition):
        h.send(DigitReceived("overflow", "1"), at=2)  # a ringing line presses no key
    with pytest.raises(IllegalTransition):
        h.send(LegHungUp("overflow"), at=2)  # an unanswered line fails, it does not hang up
    assert (state_of(h), len(h.timeline)) == (CallState.FALLBACK, entries)
    h.send(LegAnswered("overflow"), at=3)
    assert h.send(DigitReceived("overflow", "1"), at=4) == []
    with pytest.raises(IllegalTransition):
        h.send(LegAnswered("overflow"), at=5)
    assert state_of(h) is CallState.FORWARDED


def test_reports_about_the_overflow_before_it_is_dialed_are_refused() -> None:
    h = Harness(offer("acme"), settings=FlowSettings("auto", fallback=Fallback(action="reject")))
    h.arrive()
    with pytest.raises(IllegalTransition, match="unknown leg overflow"):
        h.send(LegAnswered("overflow"), at=1)


def test_the_stored_entries_rebuild_the_forwarded_call_and_read_as_a_timeline() -> None:
    h = forwarding(trunk="carrier")
    h.send(LegRinging("overflow"), at=2)
    h.send(LegAnswered("overflow"), at=10)
    h.send(LegHungUp("overflow"), at=40)
    persisted = [c.entry for c in h.log if isinstance(c, Persist)]
    assert CallRecord.from_timeline("call-1", persisted) == h.session.record
    lines = format_timeline(persisted).splitlines()
    assert f"+1.000s   overflow dial  overflow -> {OVERFLOW_NUMBER} (trunk carrier)" in lines
    assert "+40.000s  overflow end  hangup by overflow cost 0.6000" in lines
