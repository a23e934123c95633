"""The session's contract with its driver: legality, late reports, requests and mappings."""

from __future__ import annotations

from decimal import Decimal

import pytest

from callwhisper.domain.campaign import (
    Campaign,
    Fallback,
    PayoutRule,
    Publisher,
    RouteEntry,
    RoutingPlan,
    TelephonyCosts,
    Tier,
)
from callwhisper.domain.state import ConcurrencyLimit
from callwhisper.errors import IllegalTransition
from callwhisper.flow import (
    CallArrived,
    CallRefused,
    CallState,
    CapsReserved,
    DigitReceived,
    Event,
    FlowSettings,
    LegAnswered,
    LegFailed,
    LegHungUp,
    LegRinging,
    MachineDetected,
    Offer,
    PlaybackFinished,
    RejectCaller,
    RoutingDecided,
    RoutingResult,
    reason_for_sip_status,
)
from callwhisper.routing import Candidate, RoutingDecision, Skipped
from tests.unit.flow.harness import Harness, attributes, control, offer, whisper


@pytest.mark.parametrize(
    ("event", "prepare"),
    [
        (LegAnswered("B1"), False),
        (RoutingDecided(RoutingResult(())), True),
        (CallArrived(attributes()), True),
        (CallRefused(attributes(), 488), True),
        (DigitReceived("B7", "1"), True),
        (LegHungUp("B1"), True),
        (LegAnswered("A"), True),
        (CapsReserved("call-1/B9"), True),
        (PlaybackFinished("B1", 1), True),
    ],
    ids=[
        "leg event before arrival",
        "routing never requested",
        "second arrival",
        "refusal after arrival",
        "unknown leg",
        "hang-up of a leg that never answered",
        "the caller's leg answering",
        "unknown reservation",
        "playback on a ringing leg",
    ],
)
def test_an_illegal_event_raises_and_changes_nothing(event: Event, prepare: bool) -> None:
    h = Harness(offer("acme"))
    if prepare:
        h.arrive()
    state, entries = h.session.state, len(h.timeline)
    with pytest.raises(IllegalTransition):
        h.session.handle(event, 5.0)
    assert (h.session.state, len(h.timeline)) == (state, entries)


def test_the_error_names_the_machine_the_state_and_the_event() -> None:
    h = Harness(offer("acme"))
    h.arrive()
    with pytest.raises(IllegalTransition) as error:
        h.session.handle(LegHungUp("B1"), 1.0)
    assert (error.value.machine, error.value.state, error.value.event) == (
        "leg B1",
        "dialing",
        "LegHungUp",
    )


def test_late_reports_about_a_leg_we_ended_are_dropped() -> None:
    h = Harness(offer("acme", ring_mode="parallel"), offer("bolt", ring_mode="parallel"))
    h.arrive()
    h.send(LegAnswered("B1"), at=1)
    h.send(DigitReceived("B1", "1"), at=2)  # B2 is canceled
    assert h.send(LegAnswered("B2"), at=2.01) == []  # a 200 crossing our CANCEL
    assert h.send(LegFailed("B2", "rejected", 487), at=2.02) == []
    assert h.send(PlaybackFinished("B1", 1), at=3) == []  # the stopped whisper
    assert h.session.state is CallState.BRIDGED


def test_a_stale_playback_end_does_not_start_the_wait() -> None:
    h = Harness(offer("acme"))
    h.arrive()
    h.send(LegAnswered("B1"), at=1)
    h.send(DigitReceived("B1", "7"), at=2)  # wrong key: play 1 stopped, play 2 started
    assert h.send(PlaybackFinished("B1", 1), at=2.1) == []
    assert h.session.get_timer() == 120


def test_routing_refusal_ends_in_the_fallback_as_refused() -> None:
    h = Harness(routing=RoutingResult((), "caller blocked", {"acme/main": "blocked"}))
    h.arrive()
    assert control(h.log)[-1] == RejectCaller(480, "caller blocked")
    record = h.session.record
    assert (record.outcome, record.refused_reason) == ("refused", "caller blocked")
    assert record.explanation == {"acme/main": "blocked"}


def test_a_call_the_driver_refused_is_recorded_as_refused_and_commands_nothing() -> None:
    h = Harness(offer("acme"))
    commands = h.session.handle(CallRefused(attributes(), 488), 3.0)
    assert control(commands) == []
    assert [(entry.kind, entry.leg, dict(entry.data)) for entry in h.timeline] == [
        ("arrived", "A", {"dialed": "+18005550100", "caller": "+14155550100", "campaign": "auto"}),
        ("leg_end", "A", {"reason": "rejected", "by": "system", "cost": "0.0000", "status": "488"}),
        ("ended", None, {"outcome": "refused", "revenue": "0", "payout": "0", "cost": "0.0000"}),
    ]
    assert h.session.finished
    assert h.session.get_timer() is None
    with pytest.raises(IllegalTransition):
        h.session.handle(CallArrived(attributes()), 4.0)


def test_a_routing_answer_after_the_caller_left_is_dropped() -> None:
    h = Harness(offer("acme"))
    h.routing = RoutingResult((offer("acme"),))
    h.session.handle(CallArrived(attributes()), 0.0)  # the routing request stays unanswered
    h.session.handle(LegHungUp("A"), 1.0)
    assert h.session.handle(RoutingDecided(h.routing), 2.0) == []
    assert h.session.record.outcome == "caller_hangup"
    with pytest.raises(IllegalTransition):
        h.session.handle(RoutingDecided(h.routing), 3.0)


def test_a_reservation_refused_for_an_abandoned_leg_dials_nothing() -> None:
    slot = (ConcurrencyLimit("buyer:bolt", 0),)
    h = Harness(
        offer("acme", ring_mode="parallel"),
        offer("bolt", ring_mode="parallel", concurrency=slot),
        hold_caps=True,
    )
    h.arrive()
    h.release_caps(1)
    h.send(LegAnswered("B1"), at=1)
    h.send(DigitReceived("B1", "1"), at=2)
    assert control(h.release_caps()) == []
    assert h.session.record.skipped == [("bolt", "concurrency 0/0")]
    assert "B2" not in h.session.record.legs


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (None, "failed"),
        (486, "busy"),
        (600, "busy"),
        (408, "no_answer"),
        (480, "no_answer"),
        (603, "rejected"),
        (404, "rejected"),
        (503, "rejected"),
    ],
)
def test_sip_statuses_map_to_the_ring_outcomes(status: int | None, reason: str) -> None:
    assert reason_for_sip_status(status) == reason


def test_a_provisional_or_success_status_is_not_a_failure() -> None:
    with pytest.raises(ValueError, match="183"):
        reason_for_sip_status(183)


def test_a_routing_decision_maps_onto_offers() -> None:
    gate = whisper()
    candidate = Candidate(
        buyer_id="acme", buyer_name="Acme", target_id="main", destination="+14155550111",
        trunk_id="carrier", tier_index=1, ring="parallel", ring_timeout_seconds=20,
        whisper=gate, revenue=Decimal(40), buffer_seconds=60, no_convert=True,
        no_convert_reason="duplicate", charges=(), concurrency=(),
    )  # fmt: skip
    decision = RoutingDecision(
        call_refused=None,
        candidates=(candidate,),
        skipped=(Skipped("bolt", None, 0, "daily calls cap 50/50"),),
        rotations={},
        duplicate=False,
    )
    result = RoutingResult.from_decision(decision, caller_id="+18005550100")
    assert result == RoutingResult(
        (
            Offer(
                buyer_id="acme",
                destination="+14155550111",
                whisper=gate,
                revenue=Decimal(40),
                buffer_seconds=60,
                target_id="main",
                buyer_name="Acme",
                trunk="carrier",
                caller_id="+18005550100",
                tier=1,
                ring_mode="parallel",
                ring_timeout_seconds=20,
                no_convert=True,
            ),
        ),
        None,
        {"acme/main": "candidate 1", "bolt/*": "daily calls cap 50/50"},
    )


def test_settings_come_from_the_campaign_and_the_publisher() -> None:
    campaign = Campaign(
        id="auto",
        name="Auto CA",
        lead_type="Auto insurance",
        routing=RoutingPlan(
            tiers=[Tier(buyers=[RouteEntry(buyer="acme")])],
            hunt_timeout_seconds=90,
            retries_on_busy=1,
            revenue_recovery_attempts=2,
        ),
        recording=True,
        fallback=Fallback(action="reject", sip_code=486),
        payout=PayoutRule(amount=Decimal(5)),
    )
    publisher = Publisher(id="leads", payout=PayoutRule(amount=Decimal(7), buffer_seconds=30))
    costs = TelephonyCosts(outbound_per_minute=Decimal("0.01"))
    settings = FlowSettings.for_campaign(campaign, costs, publisher)
    assert settings == FlowSettings(
        campaign_id="auto",
        campaign_name="Auto CA",
        lead_type="Auto insurance",
        publisher_name="leads",
        fallback=Fallback(action="reject", sip_code=486),
        recording=True,
        hunt_timeout_seconds=90,
        retries_on_busy=1,
        revenue_recovery_attempts=2,
        payout=PayoutRule(amount=Decimal(7), buffer_seconds=30),
        costs=costs,
    )
    assert FlowSettings.for_campaign(campaign, costs).payout == PayoutRule(amount=Decimal(5))


def test_ringing_is_recorded_once_and_early_media_when_it_starts() -> None:
    h = Harness(offer("acme"))
    h.arrive()
    h.send(LegRinging("B1"), at=1)
    h.send(LegRinging("B1"), at=1.5)
    h.send(LegRinging("B1", early_media=True), at=2)
    h.send(LegRinging("B1", early_media=True), at=3)
    assert [(e.at, dict(e.data)) for e in h.entries("ringing")] == [(1, {"early_media": "no"})]
    assert [(e.at, e.leg) for e in h.entries("early_media")] == [(2, "B1")]
    assert h.session.record.legs["B1"].ringing_at == 1


def test_a_leg_ringing_with_early_media_at_once_has_no_separate_early_media_entry() -> None:
    h = Harness(offer("acme"))
    h.arrive()
    h.send(LegRinging("B1", early_media=True), at=1)
    h.send(LegRinging("B1"), at=2)
    assert [dict(e.data) for e in h.entries("ringing")] == [{"early_media": "yes"}]
    assert h.entries("early_media") == []


def test_a_late_machine_verdict_after_accept_changes_nothing() -> None:
    h = Harness(offer("acme"))
    h.arrive()
    h.send(LegAnswered("B1"), at=1)
    h.send(DigitReceived("B1", "1"), at=2)
    assert control(h.send(MachineDetected("B1"), at=4)) == []
    assert h.session.state is CallState.BRIDGED
