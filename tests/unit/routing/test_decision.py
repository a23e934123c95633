"""The routing decision: candidates in order, and the exact reason for every buyer skipped."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from callwhisper.domain import (
    CallAttributes,
    CapCharge,
    CapKey,
    ConcurrencyLimit,
    Configuration,
    MemoryCapLedger,
    PastCall,
    RoutingCounters,
    TierRotation,
)
from callwhisper.domain.caps import CapMetric, CapPeriod
from callwhisper.errors import ConfigError
from callwhisper.routing import Skipped, compile_plan, counter_scope, decide
from callwhisper.routing.decision import RoutingDecision
from tests.unit.routing.helpers import AUSTIN, NEW_YORK, NOW, buyer, call, configuration


def route(
    config: Configuration,
    attributes: CallAttributes | None = None,
    counters: RoutingCounters | None = None,
    now: datetime = NOW,
) -> RoutingDecision:
    return decide(config, attributes or call(), counters or RoutingCounters(), now)


def chosen(decision: RoutingDecision) -> list[str]:
    return [f"{c.buyer_id}/{c.target_id}" for c in decision.candidates]


def reasons(decision: RoutingDecision) -> list[str]:
    return [s.reason for s in decision.skipped]


def only_reason(config: Configuration, **kwargs: Any) -> str:
    decision = route(config, **kwargs)
    assert decision.candidates == ()
    [skipped] = decision.skipped
    return skipped.reason


def usage(
    owner: str, metric: CapMetric, period: CapPeriod, key: str, amount: int
) -> RoutingCounters:
    return RoutingCounters(cap_usage={CapKey(owner, metric, period, key): Decimal(amount)})


# The whole call refused.


def test_unknown_campaign_refuses_the_call() -> None:
    decision = route(configuration([buyer("b1")]), replace(call(), campaign_id="c9"))
    assert decision.call_refused == "unknown campaign c9"


def test_disabled_campaign_refuses_the_call() -> None:
    decision = route(configuration([buyer("b1")], enabled=False))
    assert decision == RoutingDecision("campaign c1 disabled", (), (), {}, duplicate=False)
    assert decision.explain() == "call refused: campaign c1 disabled"


@pytest.mark.parametrize("caller", [None, "anonymous", "Restricted"])
def test_anonymous_caller_is_refused_when_the_campaign_blocks_them(caller: str | None) -> None:
    config = configuration([buyer("b1")], blocking={"anonymous": True})
    assert route(config, call(caller)).call_refused == "anonymous caller blocked"


def test_anonymous_caller_is_routed_when_not_blocked() -> None:
    assert chosen(route(configuration([buyer("b1")]), call(None))) == ["b1/t1"]


def test_block_list_matches_numbers_in_any_north_american_form() -> None:
    config = configuration([buyer("b1")], blocking={"numbers": ["(415) 555-0100"]})
    assert route(config, call("+14155550100")).call_refused == "caller +14155550100 blocked"
    assert route(config, call(NEW_YORK)).call_refused is None


# Buyers and targets switched off.


def test_disabled_buyer_is_skipped() -> None:
    decision = route(configuration([buyer("b1", enabled=False), buyer("b2")]))
    assert chosen(decision) == ["b2/t1"]
    assert decision.skipped == (Skipped("b1", None, 0, "buyer disabled"),)


def test_disabled_target_is_skipped_and_the_others_remain() -> None:
    targets = [
        {"id": "t1", "destination": "sip:one@b1.example", "enabled": False},
        {"id": "t2", "destination": "sip:two@b1.example"},
    ]
    decision = route(configuration([buyer("b1", targets=targets)]))
    assert chosen(decision) == ["b1/t2"]
    assert decision.skipped == (Skipped("b1", "t1", 0, "target disabled"),)


# Schedules.


def test_closed_buyer_says_when_it_opens_in_its_time_zone() -> None:
    # 10:00 in New York is 07:00 in Los Angeles.
    config = configuration(
        [
            buyer(
                "b1",
                timezone="America/Los_Angeles",
                schedule={"hours": {"wed": ["09:00-17:00"]}},
            )
        ]
    )
    assert only_reason(config) == "closed until 09:00 America/Los_Angeles"


def test_target_schedule_overrides_the_buyers() -> None:
    targets = [
        {"id": "t1", "destination": "sip:one@b1.example"},
        {"id": "t2", "destination": "sip:two@b1.example", "schedule": {}},
    ]
    schedule = {"hours": {"thu": ["09:00-17:00"]}}
    decision = route(configuration([buyer("b1", targets=targets, schedule=schedule)]))
    assert chosen(decision) == ["b1/t2"]
    assert decision.skipped == (Skipped("b1", "t1", 0, "closed until Thu 09:00 America/New_York"),)


def test_schedule_is_checked_before_filters() -> None:
    config = configuration([buyer("b1", schedule={"hours": {}}, filters={"states": ["NY"]})])
    assert only_reason(config) == "closed: no opening hours"


# Filters, each with its exact reason.


@pytest.mark.parametrize(
    ("filters", "caller", "reason"),
    [
        ({"states": ["CA", "NV"]}, AUSTIN, "state TX not in [CA, NV]"),
        ({"exclude_states": ["CA"]}, "+14155550100", "state CA excluded"),
        ({"states": ["CA"]}, "+442079460000", "state unknown"),
        ({"area_codes": ["212"]}, "+14155550100", "area code 415 not in [212]"),
        ({"exclude_area_codes": ["415"]}, "+14155550100", "area code 415 excluded"),
        ({"area_codes": ["212"]}, None, "area code unknown"),
        ({"zips": ["94103"]}, "+14155550100", "ZIP unknown"),
        (
            {"tags": [{"tag": "vertical", "op": "==", "value": "auto"}]},
            "+14155550100",
            "tag rule vertical == auto failed (vertical missing)",
        ),
        (
            {"tags": [{"tag": "country", "op": "in", "value": ["CA", "MX"]}]},
            "+14155550100",
            "tag rule country in [CA, MX] failed (country 'US')",
        ),
    ],
)
def test_filter_rejection_reason(filters: dict[str, Any], caller: str | None, reason: str) -> None:
    assert only_reason(configuration([buyer("b1", filters=filters)]), attributes=call(caller)) == (
        reason
    )


def test_zip_filter_uses_the_zip_the_call_carries() -> None:
    config = configuration([buyer("b1", filters={"zips": ["94103"]})])
    assert only_reason(config, attributes=call(zip_code="10001")) == "ZIP 10001 not accepted"
    assert chosen(route(config, call(zip_code="94103"))) == ["b1/t1"]


def test_tag_rules_see_ivr_answers_and_call_attributes() -> None:
    rules = [
        {"tag": "age", "op": ">", "value": 64},
        {"tag": "city", "op": "~", "value": "^San Francisco"},
    ]
    config = configuration([buyer("b1", filters={"tags": rules})])
    assert chosen(route(config, call(tags={"age": "70"}))) == ["b1/t1"]
    assert only_reason(config, attributes=call(tags={"age": "40"})) == (
        "tag rule age > 64 failed (age '40')"
    )


def test_unknown_geography_passes_when_allowed() -> None:
    config = configuration([buyer("b1", filters={"states": ["CA"], "allow_unknown_geo": True})])
    assert chosen(route(config, call(None))) == ["b1/t1"]


def test_geography_passed_by_the_traffic_source_wins_over_the_number() -> None:
    config = configuration([buyer("b1", filters={"states": ["TX"]})])
    assert chosen(route(config, call("+14155550100", state="TX"))) == ["b1/t1"]


def test_target_filters_apply_after_the_buyers() -> None:
    targets = [
        {"id": "t1", "destination": "sip:one@b1.example", "filters": {"states": ["NY"]}},
        {"id": "t2", "destination": "sip:two@b1.example"},
    ]
    decision = route(configuration([buyer("b1", targets=targets, filters={"states": ["CA"]})]))
    assert chosen(decision) == ["b1/t2"]
    assert decision.skipped == (Skipped("b1", "t1", 0, "state CA not in [NY]"),)


# Duplicates.


def past(days: float, **fields: Any) -> PastCall:
    values: dict[str, Any] = {
        "campaign_id": "c1",
        "buyer_id": "b1",
        "at": NOW - timedelta(days=days),
        "connected": True,
        "converted": True,
    }
    values.update(fields)
    return PastCall(**values)


def history(*calls: PastCall) -> RoutingCounters:
    return RoutingCounters(caller_history=calls)


def test_buyer_duplicate_rule_skips_a_caller_that_converted_recently() -> None:
    config = configuration([buyer("b1", duplicates={"window_days": 30}), buyer("b2")])
    decision = route(config, counters=history(past(3.5), past(10)))
    assert chosen(decision) == ["b2/t1"]
    assert decision.skipped == (
        Skipped("b1", None, 0, "duplicate: same caller converted 3 days ago"),
    )


def test_buyer_scope_counts_only_calls_to_that_buyer() -> None:
    config = configuration([buyer("b1", duplicates={"scope": "buyer"})])
    assert chosen(route(config, counters=history(past(1, buyer_id="b2")))) == ["b1/t1"]


def test_campaign_scope_counts_calls_of_the_campaign_to_any_buyer() -> None:
    config = configuration([buyer("b1", duplicates={"scope": "campaign"})])
    assert only_reason(config, counters=history(past(1, buyer_id="b2"))) == (
        "duplicate: same caller converted 1 day ago"
    )
    assert chosen(route(config, counters=history(past(1, campaign_id="c2")))) == ["b1/t1"]


def test_connected_basis_counts_calls_that_did_not_convert() -> None:
    earlier = past(2 / 24, converted=False)
    connected = configuration([buyer("b1", duplicates={"count_on": "connected"})])
    converted = configuration([buyer("b1", duplicates={"count_on": "converted"})])
    assert only_reason(connected, counters=history(earlier)) == (
        "duplicate: same caller connected 2 h ago"
    )
    assert chosen(route(converted, counters=history(earlier))) == ["b1/t1"]


def test_calls_outside_the_window_are_not_duplicates() -> None:
    config = configuration([buyer("b1", duplicates={"window_days": 30})])
    assert chosen(route(config, counters=history(past(30)))) == ["b1/t1"]


def test_no_convert_action_keeps_the_buyer_but_marks_the_call() -> None:
    config = configuration([buyer("b1", duplicates={"action": "no_convert"})])
    [candidate] = route(config, counters=history(past(0.01))).candidates
    assert candidate.no_convert
    assert candidate.no_convert_reason == "duplicate: same caller converted 14 min ago"


def test_campaign_duplicate_rule_marks_the_call_as_not_converting() -> None:
    config = configuration([buyer("b1")], duplicates={"window_days": 7})
    decision = route(config, counters=history(past(2, buyer_id="b9")))
    assert decision.duplicate
    assert [(c.no_convert, c.no_convert_reason) for c in decision.candidates] == [
        (True, "duplicate: same caller converted 2 days ago")
    ]
    assert decision.explain().splitlines()[0] == "duplicate call: it does not convert"


def test_withheld_caller_has_no_duplicate_history() -> None:
    config = configuration([buyer("b1", duplicates={})], duplicates={})
    decision = route(config, call(None), history(past(1)))
    assert chosen(decision) == ["b1/t1"]
    assert not decision.duplicate


# Caps.


@pytest.mark.parametrize(
    ("metric", "period", "word", "key"),
    [
        ("calls", "hour", "hourly", "2026-03-04T10"),
        ("connections", "day", "daily", "2026-03-04"),
        ("conversions", "week", "weekly", "2026-W10"),
        ("calls", "month", "monthly", "2026-03"),
        ("connections", "total", "total", "all"),
    ],
)
def test_full_cap_skips_the_buyer(
    metric: CapMetric, period: CapPeriod, word: str, key: str
) -> None:
    config = configuration([buyer("b1", caps={metric: {word: 50}})])
    assert only_reason(config, counters=usage("buyer:b1", metric, period, key, 50)) == (
        f"{word} {metric} cap 50/50"
    )
    assert chosen(route(config, counters=usage("buyer:b1", metric, period, key, 49))) == ["b1/t1"]


def test_revenue_cap_counts_the_revenue_of_this_call() -> None:
    config = configuration([buyer("b1", caps={"revenue": {"daily": "500"}})])
    assert only_reason(config, counters=usage("buyer:b1", "revenue", "day", "2026-03-04", 491)) == (
        "daily revenue cap 491/500"
    )
    decision = route(config, counters=usage("buyer:b1", "revenue", "day", "2026-03-04", 490))
    [charge] = decision.candidates[0].charges
    assert charge.amount == Decimal("10")


def test_a_call_fits_a_cap_it_fills_exactly_and_not_a_cent_more() -> None:
    config = configuration(
        [buyer("b1", caps={"revenue": {"daily": "100"}}, conversion={"revenue": "12.5"})]
    )
    day = "2026-03-04"
    exact = RoutingCounters(cap_usage={CapKey("buyer:b1", "revenue", "day", day): Decimal("87.5")})
    assert chosen(route(config, counters=exact)) == ["b1/t1"]
    over = RoutingCounters(cap_usage={CapKey("buyer:b1", "revenue", "day", day): Decimal("87.51")})
    assert only_reason(config, counters=over) == "daily revenue cap 87.51/100"


def test_a_cap_of_zero_takes_no_call() -> None:
    config = configuration([buyer("b1", caps={"calls": {"daily": 0}})])
    assert only_reason(config) == "daily calls cap 0/0"


def test_week_cap_counts_the_week_in_the_buyers_time_zone() -> None:
    # Monday 9 March 2026 03:00 UTC is still Sunday 23:00 (EDT) of week 10 in New York.
    now = datetime(2026, 3, 9, 3, 0, tzinfo=UTC)
    config = configuration([buyer("b1", caps={"calls": {"weekly": 5}})])
    assert only_reason(
        config, counters=usage("buyer:b1", "calls", "week", "2026-W10", 5), now=now
    ) == ("weekly calls cap 5/5")
    decision = route(config, counters=usage("buyer:b1", "calls", "week", "2026-W11", 5), now=now)
    assert chosen(decision) == ["b1/t1"]


def test_month_cap_counts_the_month_in_the_buyers_time_zone() -> None:
    # 1 April 02:00 UTC is 31 March 19:00 in Los Angeles.
    now = datetime(2026, 4, 1, 2, 0, tzinfo=UTC)
    config = configuration(
        [buyer("b1", timezone="America/Los_Angeles", caps={"calls": {"monthly": 100}})]
    )
    [candidate] = route(config, now=now).candidates
    assert candidate.charges[0].key == CapKey("buyer:b1", "calls", "month", "2026-03")


def test_caps_of_target_route_and_publisher_say_whose_they_are() -> None:
    targets = [{"id": "t1", "destination": "sip:one@b1.example", "caps": {"calls": {"daily": 5}}}]
    config = configuration(
        [buyer("b1", targets=targets)],
        tiers=[{"buyers": [{"buyer": "b1", "caps": {"calls": {"daily": 7}}}]}],
        publishers=[{"id": "p1", "caps": {"calls": {"daily": 9}}}],
    )
    attributes = call(publisher_id="p1")
    day = "2026-03-04"
    for owner, limit, reason in [
        ("target:b1/t1", 5, "target t1: daily calls cap 5/5"),
        ("route:c1/b1/*", 7, "campaign c1: daily calls cap 7/7"),
        ("publisher:p1", 9, "publisher p1: daily calls cap 9/9"),
    ]:
        counters = usage(owner, "calls", "day", day, limit)
        assert only_reason(config, attributes=attributes, counters=counters) == reason


def test_publisher_comes_last_in_each_kind_of_check_caps_first() -> None:
    """Caps of all owners, then concurrency, then spacing; the publisher last in each."""
    config = configuration(
        [buyer("b1", caps={"concurrency": 1, "spacing_seconds": 60})],
        publishers=[
            {
                "id": "p1",
                "caps": {"calls": {"daily": 9}, "concurrency": 4, "spacing_seconds": 5},
            }
        ],
    )
    attributes = call(publisher_id="p1")
    full = {CapKey("publisher:p1", "calls", "day", "2026-03-04"): Decimal(9)}
    busy = {"buyer:b1": 1, "publisher:p1": 4}
    recent = {"buyer:b1": NOW - timedelta(seconds=2), "publisher:p1": NOW - timedelta(seconds=2)}
    for counters, reason in [
        (RoutingCounters(full, busy, recent), "publisher p1: daily calls cap 9/9"),
        (RoutingCounters({}, busy, recent), "concurrency 1/1"),
        (RoutingCounters({}, {"publisher:p1": 4}, recent), "publisher p1: concurrency 4/4"),
        (RoutingCounters({}, {}, recent), "spacing: last call 2 s ago, needs 60 s"),
        (
            RoutingCounters({}, {}, {"publisher:p1": NOW - timedelta(seconds=2)}),
            "publisher p1: spacing: last call 2 s ago, needs 5 s",
        ),
    ]:
        assert only_reason(config, attributes=attributes, counters=counters) == reason


def test_a_publisher_revenue_cap_is_checked_at_each_buyers_revenue() -> None:
    cheap = buyer("b1")
    dear = buyer("b2", conversion={"revenue": "30", "buffer_seconds": 90})
    config = configuration(
        [cheap, dear], publishers=[{"id": "p1", "caps": {"revenue": {"daily": "100"}}}]
    )
    counters = usage("publisher:p1", "revenue", "day", "2026-03-04", 80)
    decision = route(config, call(publisher_id="p1"), counters)
    assert chosen(decision) == ["b1/t1"]
    assert decision.skipped == (Skipped("b2", None, 0, "publisher p1: daily revenue cap 80/100"),)


def test_candidate_carries_every_charge_it_reserves() -> None:
    config = configuration(
        [buyer("b1", caps={"calls": {"daily": 50}, "revenue": {"monthly": 1000}})],
        tiers=[{"buyers": [{"buyer": "b1", "caps": {"conversions": {"total": 10}}}]}],
        publishers=[{"id": "p1", "timezone": "Europe/London", "caps": {"calls": {"hourly": 3}}}],
    )
    [candidate] = route(config, call(publisher_id="p1")).candidates
    assert candidate.charges == (
        CapCharge(CapKey("buyer:b1", "calls", "day", "2026-03-04"), Decimal(50), Decimal(1)),
        CapCharge(CapKey("buyer:b1", "revenue", "month", "2026-03"), Decimal(1000), Decimal(10)),
        CapCharge(CapKey("route:c1/b1/*", "conversions", "total", "all"), Decimal(10), Decimal(1)),
        CapCharge(CapKey("publisher:p1", "calls", "hour", "2026-03-04T15"), Decimal(3), Decimal(1)),
    )


def test_reservations_from_decisions_never_overshoot_a_cap() -> None:
    """Decide, reserve, decide again: the ledger's usage closes the buyer at its cap."""
    config = configuration([buyer("b1", caps={"calls": {"daily": 2}})])
    ledger = MemoryCapLedger()
    for number in range(2):
        [candidate] = route(config, counters=ledger.counters()).candidates
        assert ledger.reserve(candidate.reservation(f"r{number}", NOW)) is None
    assert only_reason(config, counters=ledger.counters()) == "daily calls cap 2/2"


# Concurrency and spacing.


def test_concurrency_limit_skips_a_busy_buyer() -> None:
    config = configuration([buyer("b1", caps={"concurrency": 3})])
    assert only_reason(config, counters=RoutingCounters(in_progress={"buyer:b1": 3})) == (
        "concurrency 3/3"
    )
    [candidate] = route(config, counters=RoutingCounters(in_progress={"buyer:b1": 2})).candidates
    assert candidate.concurrency == (ConcurrencyLimit("buyer:b1", 3),)


def test_target_concurrency_is_the_targets() -> None:
    targets = [{"id": "t1", "destination": "sip:one@b1.example", "caps": {"concurrency": 2}}]
    config = configuration([buyer("b1", targets=targets)])
    counters = RoutingCounters(in_progress={"target:b1/t1": 2})
    assert route(config, counters=counters).skipped == (
        Skipped("b1", "t1", 0, "target t1: concurrency 2/2"),
    )


def test_spacing_skips_a_buyer_called_too_recently() -> None:
    config = configuration([buyer("b1", caps={"spacing_seconds": 30})])
    recent = RoutingCounters(last_call_at={"buyer:b1": NOW - timedelta(seconds=12.7)})
    assert only_reason(config, counters=recent) == "spacing: last call 12 s ago, needs 30 s"
    enough = RoutingCounters(last_call_at={"buyer:b1": NOW - timedelta(seconds=30)})
    assert chosen(route(config, counters=enough)) == ["b1/t1"]


def test_a_dialed_call_starts_the_spacing_of_an_owner_with_no_other_limit() -> None:
    config = configuration([buyer("b1", caps={"spacing_seconds": 30})])
    ledger = MemoryCapLedger()
    [candidate] = route(config, counters=ledger.counters()).candidates
    assert candidate.spaced == ("buyer:b1",)
    assert ledger.reserve(candidate.reservation("r1", NOW)) is None
    later = NOW + timedelta(seconds=5)
    assert only_reason(config, counters=ledger.counters(), now=later) == (
        "spacing: last call 5 s ago, needs 30 s"
    )


def test_caps_are_checked_before_concurrency_and_spacing() -> None:
    config = configuration(
        [buyer("b1", caps={"calls": {"daily": 1}, "concurrency": 1, "spacing_seconds": 60})]
    )
    counters = RoutingCounters(
        cap_usage={CapKey("buyer:b1", "calls", "day", "2026-03-04"): Decimal(1)},
        in_progress={"buyer:b1": 1},
        last_call_at={"buyer:b1": NOW},
    )
    assert only_reason(config, counters=counters) == "daily calls cap 1/1"


def test_a_target_checked_alike_to_a_disabled_one_is_checked_itself() -> None:
    """t2 would reuse t1's answer, but t1 was never checked: it is disabled."""
    targets = [
        {"id": "t1", "destination": "sip:one@b1.example", "enabled": False},
        {"id": "t2", "destination": "sip:two@b1.example"},
        {"id": "t3", "destination": "sip:three@b1.example"},
    ]
    config = configuration([buyer("b1", targets=targets, caps={"calls": {"daily": 4}})])
    counters = usage("buyer:b1", "calls", "day", "2026-03-04", 4)
    assert route(config, counters=counters).skipped == (
        Skipped("b1", "t1", 0, "target disabled"),
        Skipped("b1", "t2", 0, "daily calls cap 4/4"),
        Skipped("b1", "t3", 0, "daily calls cap 4/4"),
    )


def test_targets_failing_their_own_equal_filters_get_a_row_each() -> None:
    """Equal target filters are checked alike, but the failure is each target's own."""
    targets = [
        {"id": "t1", "destination": "sip:one@b1.example", "filters": {"states": ["NY"]}},
        {"id": "t2", "destination": "sip:two@b1.example", "filters": {"states": ["NY"]}},
    ]
    assert route(configuration([buyer("b1", targets=targets)])).skipped == (
        Skipped("b1", "t1", 0, "state CA not in [NY]"),
        Skipped("b1", "t2", 0, "state CA not in [NY]"),
    )


def test_a_buyer_failing_for_all_its_targets_is_one_row() -> None:
    targets = [
        {"id": "t1", "destination": "sip:one@b1.example"},
        {"id": "t2", "destination": "sip:two@b1.example"},
    ]
    config = configuration([buyer("b1", targets=targets, caps={"concurrency": 1})])
    counters = RoutingCounters(in_progress={"buyer:b1": 1})
    assert route(config, counters=counters).skipped == (Skipped("b1", None, 0, "concurrency 1/1"),)


# What a candidate carries: overrides resolved.


def test_target_overrides_buyer_overrides_campaign() -> None:
    whisper = {"text": "Target whisper"}
    targets = [
        {"id": "t1", "destination": "+13105550100", "trunk": "carrier", "ring_timeout_seconds": 12,
         "whisper": whisper, "conversion": {"revenue": "30", "buffer_seconds": 60}},
        {"id": "t2", "destination": "sip:two@b1.example"},
    ]  # fmt: skip
    data: dict[str, Any] = {
        "trunks": [{"id": "carrier", "proxy": "sip:trunk.example"}],
        "buyers": [
            buyer(
                "b1",
                name="Acme Insurance",
                targets=targets,
                ring_timeout_seconds=20,
                whisper={"text": "Buyer whisper"},
            )
        ],
        "campaigns": [
            {
                "id": "c1",
                "ring_timeout_seconds": 25,
                "routing": {"tiers": [{"buyers": [{"buyer": "b1"}]}]},
            }
        ],
    }
    config = Configuration.model_validate(data)
    first, second = route(config).candidates
    assert (first.destination, first.trunk_id, first.ring_timeout_seconds, first.whisper.text) == (
        "+13105550100",
        "carrier",
        12,
        "Target whisper",
    )
    assert (first.revenue, first.buffer_seconds) == (Decimal(30), 60)
    assert (second.trunk_id, second.ring_timeout_seconds, second.whisper.text) == (
        None,
        20,
        "Buyer whisper",
    )
    assert (second.revenue, second.buffer_seconds, second.buyer_name) == (
        Decimal(10),
        90,
        "Acme Insurance",
    )


def test_campaign_defaults_apply_without_overrides() -> None:
    config = configuration([buyer("b1")], ring_timeout_seconds=45, whisper={"text": "Hello"})
    [candidate] = route(config).candidates
    assert (candidate.ring_timeout_seconds, candidate.whisper.text) == (45, "Hello")


def test_route_entry_conversion_overrides_the_targets() -> None:
    targets = [{"id": "t1", "destination": "sip:x@b1.example", "conversion": {"revenue": "30"}}]
    config = configuration(
        [buyer("b1", targets=targets)],
        tiers=[
            {"buyers": [{"buyer": "b1", "conversion": {"revenue": "45", "buffer_seconds": 120}}]}
        ],
    )
    [candidate] = route(config).candidates
    assert (candidate.revenue, candidate.buffer_seconds) == (Decimal(45), 120)


# Tiers, methods and the candidate list.


def test_tiers_are_tried_in_order_with_their_ring_mode() -> None:
    config = configuration(
        [buyer("b1"), buyer("b2"), buyer("b3")],
        tiers=[
            {"buyers": [{"buyer": "b2"}, {"buyer": "b3"}], "ring": "parallel"},
            {"buyers": [{"buyer": "b1"}]},
        ],
    )
    decision = route(config)
    assert [(c.buyer_id, c.tier_index, c.ring) for c in decision.candidates] == [
        ("b2", 0, "parallel"),
        ("b3", 0, "parallel"),
        ("b1", 1, "sequential"),
    ]


def test_a_buyer_in_two_tiers_is_offered_once() -> None:
    config = configuration(
        [buyer("b1"), buyer("b2")],
        tiers=[{"buyers": [{"buyer": "b1"}]}, {"buyers": [{"buyer": "b1"}, {"buyer": "b2"}]}],
    )
    decision = route(config)
    assert chosen(decision) == ["b1/t1", "b2/t1"]
    assert decision.skipped == (Skipped("b1", "t1", 1, "already a candidate in tier 1"),)


def test_already_a_candidate_comes_before_the_checks_of_the_later_tier() -> None:
    """b1 is chosen in tier 1: in tier 2 that is its reason, not its route's full cap there."""
    config = configuration(
        [buyer("b1"), buyer("b2")],
        tiers=[
            {"buyers": [{"buyer": "b1"}]},
            {"buyers": [{"buyer": "b2"}, {"buyer": "b1", "caps": {"calls": {"daily": 0}}}]},
        ],
    )
    decision = route(config)
    assert chosen(decision) == ["b1/t1", "b2/t1"]
    assert decision.skipped == (Skipped("b1", "t1", 1, "already a candidate in tier 1"),)


def test_max_candidates_caps_the_list_and_says_who_was_not_tried() -> None:
    config = configuration([buyer("b1"), buyer("b2"), buyer("b3")], routing={"max_candidates": 2})
    decision = route(config)
    assert chosen(decision) == ["b1/t1", "b2/t1"]
    assert decision.skipped == (
        Skipped("b3", "t1", 0, "not tried: already 2 candidates (max_candidates)"),
    )


def test_round_robin_rotates_across_decisions_and_skips_ineligible_buyers() -> None:
    config = configuration(
        [buyer("b1"), buyer("b2", enabled=False), buyer("b3")],
        tiers=[{"method": "round_robin", "buyers": [{"buyer": b} for b in ("b1", "b2", "b3")]}],
    )
    counters = RoutingCounters()
    firsts = []
    for _ in range(4):
        decision = route(config, counters=counters)
        firsts.append(decision.candidates[0].buyer_id)
        counters = replace(counters, rotation={**counters.rotation, **decision.rotations})
    assert firsts == ["b1", "b3", "b1", "b3"]
    assert decision.rotations == {("c1", 0): TierRotation(last="b3/*")}


def test_weighted_tier_gives_exact_shares_across_decisions() -> None:
    config = configuration(
        [buyer("b1"), buyer("b2")],
        tiers=[
            {
                "method": "weighted",
                "buyers": [{"buyer": "b1", "weight": 3}, {"buyer": "b2", "weight": 1}],
            }
        ],
    )
    counters = RoutingCounters()
    firsts = []
    for _ in range(8):
        decision = route(config, counters=counters)
        firsts.append(decision.candidates[0].buyer_id)
        counters = replace(counters, rotation=decision.rotations)
    assert firsts == ["b1", "b1", "b2", "b1"] * 2


def test_rotation_is_kept_for_tiers_that_supplied_no_candidate() -> None:
    config = configuration(
        [buyer("b1"), buyer("b2")],
        tiers=[
            {"buyers": [{"buyer": "b1"}]},
            {"method": "round_robin", "buyers": [{"buyer": "b2"}]},
        ],
        routing={"max_candidates": 1},
    )
    assert route(config).rotations == {}


# Explanation, storage and purity.


def test_explain_prints_one_line_per_candidate_and_skipped_buyer() -> None:
    config = configuration([buyer("b1", name="Acme"), buyer("b2", filters={"states": ["NY"]})])
    assert route(config).explain() == (
        "candidate 1: b1/t1 (Acme) -> sip:b1@buyers.example, tier 1 sequential, ring 30 s, "
        "pays 10 after 90 s\n"
        "skipped b2/* (tier 1): state CA not in [NY]"
    )


def test_explain_says_when_no_buyer_is_left() -> None:
    config = configuration([buyer("b1", enabled=False)])
    assert route(config).explain() == "no candidates\nskipped b1/* (tier 1): buyer disabled"


def test_to_dict_is_json_ready() -> None:
    config = configuration(
        [buyer("b1", caps={"calls": {"daily": 5}, "concurrency": 2}), buyer("b2", enabled=False)],
        tiers=[{"method": "round_robin", "buyers": [{"buyer": "b1"}, {"buyer": "b2"}]}],
    )
    data = json.loads(json.dumps(route(config).to_dict()))
    assert data["candidates"][0]["charges"] == [
        {
            "owner": "buyer:b1",
            "metric": "calls",
            "period": "day",
            "period_key": "2026-03-04",
            "limit": "5",
            "amount": "1",
        }
    ]
    assert data["candidates"][0]["concurrency"] == [{"owner": "buyer:b1", "limit": 2}]
    assert data["skipped"] == [
        {"buyer_id": "b2", "target_id": None, "tier_index": 0, "reason": "buyer disabled"}
    ]
    assert data["rotations"] == [
        {"campaign_id": "c1", "tier_index": 0, "last": "b1/*", "current": {}}
    ]


def test_same_inputs_give_the_same_decision() -> None:
    config = configuration([buyer("b1"), buyer("b2")])
    assert route(config, call(AUSTIN)) == route(config, call(AUSTIN))


def test_now_must_be_aware() -> None:
    with pytest.raises(ValueError, match="aware"):
        decide(configuration([buyer("b1")]), call(), RoutingCounters(), datetime(2026, 3, 4))


def test_plan_is_compiled_once_per_configuration() -> None:
    config = configuration([buyer("b1")])
    assert compile_plan(config) is compile_plan(config)


def test_plan_refuses_broken_references() -> None:
    config = Configuration.model_validate(
        {"campaigns": [{"id": "c1", "routing": {"tiers": [{"buyers": [{"buyer": "nobody"}]}]}}]}
    )
    with pytest.raises(ConfigError) as raised:
        compile_plan(config)
    # In the words of the configuration check.
    assert raised.value.problems == [
        "campaigns[0].routing.tiers[0].buyers[0].buyer: unknown buyer 'nobody'"
    ]


def test_counter_scope_names_every_counter_and_owner_the_decision_reads() -> None:
    config = configuration([buyer("b1", caps={"calls": {"daily": 5}, "concurrency": 2})])
    keys, owners = counter_scope(config, call(), NOW)
    [decision_key] = [charge.key for charge in route(config).candidates[0].charges]
    assert keys == {decision_key}
    assert owners == {"buyer:b1"}
    assert counter_scope(config, replace(call(), campaign_id="c9"), NOW) == (
        frozenset(),
        frozenset(),
    )


def test_counter_scope_asked_again_follows_the_periods() -> None:
    """Each call names the counters of its own hour, day and month, whatever came before."""
    config = configuration([buyer("b1", caps={"calls": {"hourly": 5, "daily": 50}})])
    for minutes in (0, 14, 59, 60, -1, 24 * 60, 0):
        now = NOW + timedelta(minutes=minutes)
        keys, _ = counter_scope(config, call(), now)
        [candidate] = route(config, now=now).candidates
        assert keys == {charge.key for charge in candidate.charges}, now


def test_counter_scope_names_the_publishers_counters_too() -> None:
    config = configuration(
        [buyer("b1", caps={"calls": {"daily": 5}})],
        publishers=[
            {"id": "p1", "timezone": "Europe/London", "caps": {"calls": {"hourly": 3}}},
            {"id": "p2", "caps": {"concurrency": 2}},
        ],
    )
    for publisher_id, publisher_owners in [("p1", {"publisher:p1"}), ("p2", {"publisher:p2"})]:
        attributes = call(publisher_id=publisher_id)
        keys, owners = counter_scope(config, attributes, NOW)
        [candidate] = route(config, attributes).candidates
        assert keys == {charge.key for charge in candidate.charges}
        assert owners == {"buyer:b1", *publisher_owners}
