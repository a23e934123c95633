"""Property tests: a random world answers, presses keys and hangs up at random times.

Whatever happens, the caller is never connected to a buyer that did not
accept, nor to the overflow line before it answered, at most one buyer is
bridged at a time, every dialed leg ends, revenue is kept once and only
when earned, and cap slots balance.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from decimal import Decimal

from hypothesis import event, given, settings
from hypothesis import strategies as st

from callwhisper.domain.campaign import Fallback
from callwhisper.domain.caps import CapCharge, CapKey
from callwhisper.domain.state import ConcurrencyLimit, MemoryCapLedger
from callwhisper.domain.whisper import AcceptMode, DtmfKey
from callwhisper.errors import IllegalTransition
from callwhisper.flow import (
    AnswerCaller,
    Bridge,
    CallRecord,
    CallState,
    CommitCaps,
    DialLeg,
    DigitReceived,
    Event,
    FailureReason,
    FlowSettings,
    ForwardCaller,
    LegAnswered,
    LegFailed,
    LegHungUp,
    LegRinging,
    MachineDetected,
    Offer,
    Persist,
    PlaybackFinished,
)
from callwhisper.flow.record import OVERFLOW
from tests.unit.flow.harness import Harness, control, offer

CALLER_HANGS_UP = 29
BUYERS = ("acme", "bolt", "crux", "dyna", "emu")
KEYS: tuple[DtmfKey, ...] = ("1", "1", "2", "7", "#")
MODES: tuple[AcceptMode, ...] = ("press_key", "any_key", "auto")
FALLBACKS = (
    Fallback(action="reject"),
    Fallback(action="message", message="Sorry."),
    Fallback(action="voicemail", voicemail_max_seconds=30),
    Fallback(action="forward", forward_to="+18005550199"),
)


@dataclass(frozen=True)
class Scenario:
    """One random call: candidates, settings, and the world's steps."""

    offers: tuple[Offer, ...]
    settings: FlowSettings
    hold_caps: bool
    concurrency_limit: int
    steps: tuple[tuple[float, int, int, int], ...]


def _calls_key(buyer: str) -> CapKey:
    return CapKey(f"buyer:{buyer}", "calls", "day", "2026-01-05")


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    count = draw(st.integers(1, len(BUYERS)))
    limit = draw(st.sampled_from([0, 1, 2, 3, 3, 3]))
    offers = tuple(
        offer(
            buyer,
            revenue=str(draw(st.integers(1, 60))),
            buffer=draw(st.sampled_from([0, 10, 30, 90])),
            mode=draw(st.sampled_from(MODES)),
            ring_mode=draw(st.sampled_from(["sequential", "parallel"])),
            tier=draw(st.integers(0, 1)),
            ring_timeout=draw(st.sampled_from([8, 30])),
            no_convert=draw(st.booleans()),
            charges=(CapCharge(_calls_key(buyer), Decimal(100), Decimal(1)),),
            concurrency=(ConcurrencyLimit("buyer:all", limit),),
        )
        for buyer in BUYERS[:count]
    )
    flow_settings = FlowSettings(
        "auto",
        fallback=draw(st.sampled_from(FALLBACKS)),
        recording=draw(st.booleans()),
        hunt_timeout_seconds=draw(st.sampled_from([60, 120])),
        max_candidates=draw(st.integers(1, 5)),
        retries_on_busy=draw(st.integers(0, 2)),
        revenue_recovery_attempts=draw(st.integers(0, 2)),
    )
    step = st.tuples(
        st.sampled_from([0, 0.02, 0.5, 1, 2, 3, 5, 10, 40, 100]),
        st.integers(0, 9),
        st.integers(0, CALLER_HANGS_UP),
        st.integers(0, len(KEYS) - 1),
    )
    steps = tuple(draw(st.lists(step, min_size=5, max_size=40)))
    return Scenario(offers, flow_settings, draw(st.booleans()), limit, steps)


def _event(h: Harness, leg: str, action: int, key: DtmfKey) -> Event | None:
    """What the world does to ``leg``, mostly what a real one would.

    Before an answer it rings, answers or fails the leg; after, it presses keys,
    ends playbacks, detects a machine or hangs up. Some events are late or
    illegal on purpose; now and then the caller hangs up.
    """
    if action == CALLER_HANGS_UP:
        return LegHungUp("A")
    if h.session.record.legs[leg].answered_at is None:
        if action < 4:
            return LegRinging(leg, early_media=action % 2 == 1)
        if action < 18:
            return LegAnswered(leg)
        reasons: tuple[FailureReason, ...] = ("busy", "failed", "rejected", "no_answer")
        return LegFailed(leg, reasons[action % 4])
    if action < 14:
        return DigitReceived(leg, key)
    if action < 21:
        # The overflow line hears no whisper: nothing plays to it.
        return None if leg == OVERFLOW else PlaybackFinished(leg, h.last_play(leg))
    if action == 21:
        return MachineDetected(leg)
    if action < 25:
        return LegHungUp(leg)
    if action == 25:
        return LegAnswered(leg)
    return None


def run(scenario: Scenario) -> Harness:
    """Play the scenario, then let the caller hang up and release every held reservation."""
    h = Harness(
        *scenario.offers,
        settings=scenario.settings,
        ledger=MemoryCapLedger(),
        hold_caps=scenario.hold_caps,
    )
    h.arrive()
    for delay, pick, action, key in scenario.steps:
        h.run_until(h.now + delay)
        if h.held and pick % 2 == 0:
            h.release_caps(1)
        dialed = [c.leg for c in h.log if isinstance(c, DialLeg | ForwardCaller)]
        if not dialed:
            continue
        legs = h.session.record.legs
        live = [leg for leg in dialed if legs[leg].ended_at is None] or dialed
        event = _event(h, live[pick % len(live)], action, KEYS[key])
        if event is None:
            continue
        state, entries, commands = h.session.state, len(h.timeline), len(h.log)
        try:
            h.send(event)
        except IllegalTransition:
            # An illegal event changes nothing.
            assert (h.session.state, len(h.timeline), len(h.log)) == (state, entries, commands)
    if h.session.state is not CallState.ENDED:
        h.send(LegHungUp("A"), at=h.now + 1)
    h.release_caps()
    return h


@settings(max_examples=200, deadline=None)
@given(scenarios())
def test_invariants_hold_whatever_the_world_does(scenario: Scenario) -> None:
    h = run(scenario)
    # How far calls get, seen with pytest --hypothesis-show-statistics: about one in five
    # is bridged to a buyer, so the bridge and money invariants are checked often.
    event(f"outcome {h.session.record.outcome}")
    check_invariants(h, scenario.offers, scenario.settings)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([0, 30, 90]),
            # Bridged times on both sides of each buffer, and on it.
            st.sampled_from([0, 1, 29, 30, 31, 89, 90, 150]),
            st.booleans(),
        ),
        min_size=2,
        max_size=5,
    ),
    st.integers(0, 5),
)
def test_money_invariants_hold_across_revenue_recovery(
    buyers: list[tuple[int, int, bool]], attempts: int
) -> None:
    """Every buyer accepts, then hangs up after a random bridged time; short ones are recovered."""
    offers = tuple(
        offer(
            name,
            revenue=str(10 + n),
            buffer=buffer,
            no_convert=duplicate,
            charges=(CapCharge(_calls_key(name), Decimal(100), Decimal(1)),),
        )
        for n, (name, (buffer, _, duplicate)) in enumerate(zip(BUYERS, buyers, strict=False))
    )
    flow_settings = FlowSettings("auto", revenue_recovery_attempts=attempts)
    h = Harness(*offers, settings=flow_settings)
    h.arrive()
    for n, (_, bridged_seconds, _) in enumerate(buyers, start=1):
        if h.session.state is CallState.ENDED:
            break
        h.send(LegAnswered(f"B{n}"), at=h.now + 1)
        h.send(DigitReceived(f"B{n}", "1"), at=h.now + 1)
        h.send(LegHungUp(f"B{n}"), at=h.now + bridged_seconds)
    if h.session.state is not CallState.ENDED:
        h.send(LegHungUp("A"), at=h.now + 1)
    check_invariants(h, offers, flow_settings)
    # call-flow 20: a buyer leaving before its buffer passes the caller on, while attempts
    # and candidates remain.
    bridged = 0
    for buffer, bridged_seconds, _ in buyers:
        bridged += 1
        short = bridged_seconds < buffer
        if not (short and bridged <= attempts and bridged < len(buyers)):
            break
    record = h.session.record
    assert len(record.bridged_legs) == bridged
    assert sum(entry.kind == "recovery" for entry in record.timeline) == bridged - 1
    # A caller every buyer would take never reaches the fallback.
    assert record.fallback is None


def check_invariants(h: Harness, candidates: tuple[Offer, ...], flow: FlowSettings) -> None:
    """The invariants of a finished call."""
    session, record = h.session, h.session.record
    offers = {o.buyer_id: o for o in candidates}
    buyer_of = {c.leg: c.buyer_id for c in h.log if isinstance(c, DialLeg)}
    assert session.finished
    assert session.get_timer() is None

    # The caller is never connected to a buyer that did not accept, nor answered before
    # a bridge or the fallback (call-flow 1, 8, 15).
    for entry in record.timeline:
        if entry.kind == "bridge" and entry.leg == OVERFLOW:
            # call-flow 14: the overflow line's answer is its bridge, after the fallback.
            overflow = record.legs[OVERFLOW]
            assert overflow.answered_at == overflow.bridged_at == entry.at
            assert record.fallback == "forward"
        elif entry.kind == "bridge":
            assert entry.leg is not None
            accepts = [e for e in record.timeline if e.kind == "accept" and e.leg == entry.leg]
            assert accepts
            assert accepts[0].at <= entry.at
            mode = offers[buyer_of[entry.leg]].whisper.accept_mode
            if mode != "auto":
                assert any(k.leg == entry.leg and k.meaning == "accept" for k in record.keys)
    calls = control(h.log)
    for index, command in enumerate(calls):
        if isinstance(command, AnswerCaller):
            bridged_next = index + 1 < len(calls) and isinstance(calls[index + 1], Bridge)
            assert bridged_next or record.fallback is not None

    # At most one buyer is bridged at a time, and one more per revenue recovery at most.
    bridged_spans = [
        (record.legs[leg].bridged_at, record.legs[leg].ended_at) for leg in record.bridged_legs
    ]
    for (_, first_end), (second_start, _) in itertools.pairwise(bridged_spans):
        assert first_end is not None
        assert second_start is not None
        assert first_end <= second_start
    assert len(record.bridged_legs) <= flow.revenue_recovery_attempts + 1

    # Every dialed leg ends: canceled, failed, declined or hung up.
    for leg in buyer_of:
        assert record.legs[leg].ended_at is not None
    if OVERFLOW in record.legs:
        overflow = record.legs[OVERFLOW]
        assert overflow.ended_at is not None
        # call-flow 18: an overflow line that never answered costs nothing.
        if overflow.answered_at is None:
            assert overflow.cost == 0
    assert record.legs["A"].ended_at is not None
    assert record.outcome is not None

    # Revenue only when the bridged time reaches the buffer, never for a duplicate, once.
    earned = [
        leg
        for leg in record.bridged_legs
        if not offers[buyer_of[leg]].no_convert
        and (record.legs[leg].ended_at or 0) - (record.legs[leg].accepted_at or 0)
        >= offers[buyer_of[leg]].buffer_seconds
    ]
    conversions = [c for c in h.log if isinstance(c, CommitCaps) and "revenue" in c.metrics]
    assert len(earned) <= 1
    assert len(conversions) == len(earned)
    if earned:
        assert record.converted_leg == earned[0]
        assert record.revenue == offers[buyer_of[earned[0]]].revenue
        assert record.outcome == "converted"
    else:
        assert (record.converted_leg, record.revenue) == (None, Decimal(0))

    # Cap slots balance: nothing stays reserved or in progress; answered calls are kept.
    assert all(value == 0 for value in h.ledger.reserved.values())
    assert all(value == 0 for value in h.ledger.in_progress.values())
    answered = [leg for leg in buyer_of if record.legs[leg].answered_at is not None]
    assert sum(h.ledger.used.values(), Decimal(0)) == len(answered)

    # Time only moves forward, and the persisted entries rebuild the record.
    times = [entry.at for entry in record.timeline]
    assert times == sorted(times)
    persisted = [c.entry for c in h.log if isinstance(c, Persist)]
    assert CallRecord.from_timeline(record.call_id, persisted) == record
