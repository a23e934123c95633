"""What routing keeps between decisions never changes a decision.

Compiled plans keep schedule answers, gates, cap charges, filter answers and
skipped rows from one call to the next. A configuration decided many times
over must decide exactly as a fresh copy of it decides each call alone.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callwhisper.domain import (
    CapKey,
    Configuration,
    Filters,
    PastCall,
    RoutingCounters,
    TierRotation,
)
from callwhisper.domain.caps import period_key
from callwhisper.routing import decide
from callwhisper.routing import decision as routing_decision
from callwhisper.routing import geo as routing_geo
from callwhisper.routing import plan as routing_plan
from callwhisper.routing.geo import UNKNOWN, geo_for_number, normalize_number
from callwhisper.routing.plan import GeoPlan, RulePlan, filter_parts
from tests.unit.routing.helpers import (
    AUSTIN,
    NEW_YORK,
    NOW,
    SAN_FRANCISCO,
    buyer,
    call,
    rejection,
)
from tests.unit.routing.helpers import configuration as build

WEEKDAYS = ["mon", "tue", "wed", "thu", "fri"]


def busy_configuration() -> Configuration:
    """Four tiers of buyers with schedules, filters, caps, spacing, duplicates and targets.

    Laid out so that a decision takes every path its shortcuts have: a target
    checked alike to another (b7's t3 as t2, b8's t2 as t1), a target with its
    own limit alone in an entry (b7/t1, also named with all of b7's targets in
    the same tier), a tier whose every target fails on its switch or schedule
    (tier 4, but on Saturdays), publishers with caps or a concurrency limit
    only, and duplicate rules that skip or do not convert.
    """
    three_targets = [
        {"id": "t1", "destination": "sip:one@b.example"},
        {"id": "t2", "destination": "sip:two@b.example", "caps": {"concurrency": 1}},
        # The buyer's owners as t1, but a revenue that its revenue cap may not take.
        {
            "id": "t3",
            "destination": "sip:three@b.example",
            "conversion": {"revenue": "30", "buffer_seconds": 60},
        },
    ]
    buyers: list[dict[str, Any]] = [
        buyer("b1", schedule={"hours": {d: ["09:00-17:00"] for d in WEEKDAYS}}),
        buyer(
            "b2",
            filters={"states": ["CA", "TX"]},
            caps={"calls": {"daily": 3}},
            duplicates={"window_days": 2, "action": "no_convert"},
        ),
        buyer(
            "b3",
            targets=three_targets,
            timezone="America/Los_Angeles",
            caps={"concurrency": 2, "revenue": {"daily": "35"}},
        ),
        buyer(
            "b4",
            schedule={"hours": {d: ["08:00-12:00", "13:00-20:00"] for d in WEEKDAYS}},
            filters={"tags": [{"tag": "age", "op": ">", "value": 30}]},
            caps={"revenue": {"monthly": "25"}, "spacing_seconds": 60},
        ),
        buyer("b5", enabled=False),
        buyer(
            "b6",
            targets=[
                {
                    "id": "t1",
                    "destination": "sip:b6@b.example",
                    "schedule": {"hours": {"sat": ["00:00-23:59"]}},
                },
                {"id": "t2", "destination": "sip:b6t2@b.example", "enabled": False},
            ],
            duplicates={"window_days": 2, "scope": "buyer"},
        ),
        buyer(
            "b7",
            targets=[
                {"id": "t1", "destination": "sip:b7t1@b.example", "caps": {"concurrency": 1}},
                {
                    "id": "t2",
                    "destination": "sip:b7t2@b.example",
                    "schedule": {"hours": {d: ["12:00-18:00"] for d in WEEKDAYS}},
                },
                {"id": "t3", "destination": "sip:b7t3@b.example"},
            ],
            caps={"calls": {"daily": 4}},
            duplicates={"window_days": 1},
        ),
        buyer(
            "b8",
            targets=[
                {"id": "t1", "destination": "sip:b8t1@b.example"},
                {"id": "t2", "destination": "sip:b8t2@b.example"},
            ],
            filters={"tags": [{"tag": "age", "op": ">", "value": 40}]},
        ),
    ]
    tiers: list[dict[str, Any]] = [
        {"buyers": [{"buyer": "b1"}, {"buyer": "b2"}]},
        {"method": "round_robin", "buyers": [{"buyer": "b3"}, {"buyer": "b4"}, {"buyer": "b1"}]},
        {
            "method": "weighted",
            "buyers": [
                {"buyer": "b5"},
                {"buyer": "b6", "weight": 3},
                {"buyer": "b3", "weight": 2},
                {"buyer": "b7"},
                {"buyer": "b7", "target": "t1"},
                {"buyer": "b8"},
            ],
        },
        {"buyers": [{"buyer": "b5"}, {"buyer": "b6"}]},
    ]
    return build(
        buyers,
        tiers,
        routing={"max_candidates": 3},
        publishers=[
            {"id": "p1", "caps": {"calls": {"hourly": 40}}},
            {"id": "p2", "caps": {"concurrency": 2}},
        ],
    )


def counters_at(minutes: int) -> RoutingCounters:
    """Counters that change with the moment, so cached answers would show if they were stale."""
    now = NOW + timedelta(minutes=minutes)
    day = period_key("day", now, "America/New_York")
    ago = now - timedelta(hours=minutes % 72)
    return RoutingCounters(
        cap_usage={
            CapKey("buyer:b2", "calls", "day", day): Decimal(minutes % 5),
            CapKey(
                "buyer:b3", "revenue", "day", period_key("day", now, "America/Los_Angeles")
            ): Decimal(minutes % 10),
            CapKey("buyer:b7", "calls", "day", day): Decimal(minutes % 6),
            CapKey(
                "publisher:p1", "calls", "hour", period_key("hour", now, "America/New_York")
            ): Decimal(40 if minutes % 11 == 0 else minutes % 40),
        },
        in_progress={
            "buyer:b3": minutes % 3,
            "target:b3/t2": minutes % 2,
            "publisher:p2": minutes % 3,
            "target:b7/t1": minutes % 2,
        },
        last_call_at={"buyer:b4": now - timedelta(seconds=minutes % 90)},
        caller_history=(
            tuple(PastCall("c1", b, ago, True, True) for b in ("b2", "b6", "b7"))
            if minutes % 4 == 0
            else ()
        ),
        rotation={("c1", 1): TierRotation(last="b3/*")} if minutes % 2 else {},
    )


# A call: minutes after NOW, the caller, an age tag and the publisher.
Call = tuple[int, str | None, str | None, str | None]
calls_in_turn = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=8 * 24 * 60),
        st.sampled_from([SAN_FRANCISCO, NEW_YORK, AUSTIN, None]),
        st.sampled_from(["25", "45", None]),
        st.sampled_from(["p1", "p2", None]),
    ),
    min_size=1,
    max_size=25,
)


# The bound of every memo routing keeps, each emptied when full.
BOUNDS = [
    (routing_plan, "_MEMO_SIZE"),
    (routing_plan, "_REVENUES_KEPT"),
    (routing_decision, "_ROWS_PER_ENTRY"),
    (routing_decision, "_GATES_PER_CAMPAIGN"),
    (routing_geo, "GEO_CACHE_SIZE"),
]


def decide_again_and_again(calls: list[Call], memo_bound: int | None = None) -> None:
    """Decide ``calls`` in turn on one configuration, each as a fresh copy decides it alone.

    With ``memo_bound``, the configuration decided again and again keeps that
    many answers in each memo; the fresh copies keep their usual bounds, which
    one decision never fills.
    """
    warm = busy_configuration()
    for minutes, caller, age, publisher in calls:
        tags = {} if age is None else {"age": age}
        attributes = call(caller, publisher_id=publisher, tags=tags)
        now = NOW + timedelta(minutes=minutes)
        counters = counters_at(minutes)
        with pytest.MonkeyPatch.context() as patch:
            if memo_bound is not None:
                for module, name in BOUNDS:
                    patch.setattr(module, name, memo_bound)
            # First, so that the caller's geography is not already known from the fresh copy.
            decided = decide(warm, attributes, counters, now)
        expected = decide(busy_configuration(), attributes, counters, now)
        assert decided.to_dict() == expected.to_dict()


@settings(max_examples=60, deadline=None)
@given(calls_in_turn)
def test_a_configuration_decided_again_and_again_decides_like_a_fresh_one(
    calls: list[Call],
) -> None:
    decide_again_and_again(calls)


@settings(max_examples=30, deadline=None)
@given(calls_in_turn)
def test_memos_emptied_when_full_leave_decisions_unchanged(calls: list[Call]) -> None:
    """With room for one answer, every memo is emptied again and again, within a decision too."""
    decide_again_and_again(calls, memo_bound=1)


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=2_000_000_000, max_value=9_999_999_999))
def test_geography_is_unknown_exactly_when_the_library_says_invalid(digits: int) -> None:
    number = f"+1{digits}"
    e164 = normalize_number(number)
    assert e164 is not None
    valid = phonenumbers.is_valid_number(phonenumbers.parse(e164, None))
    assert (geo_for_number(number) is not UNKNOWN) == valid


def test_targets_sharing_owners_are_checked_at_their_own_revenue() -> None:
    # b3's t1 and t3 have the same owners, but t3 pays 30: its buyer's revenue cap is full for it.
    decision = decide(
        busy_configuration(), call(publisher_id="p1"), counters_at(7), NOW + timedelta(minutes=7)
    )
    assert [f"{c.buyer_id}/{c.target_id}" for c in decision.candidates] == [
        "b1/t1",
        "b2/t1",
        "b3/t1",
    ]
    assert [
        (s.tier_index, s.target_id, s.reason) for s in decision.skipped if s.buyer_id == "b3"
    ] == [
        (1, "t2", "target t2: concurrency 1/1"),
        (1, "t3", "daily revenue cap 7/35"),
        # b3 is in tier 3 again: what tier 2 chose is not offered twice.
        (2, "t1", "already a candidate in tier 2"),
        (2, "t2", "target t2: concurrency 1/1"),
        (2, "t3", "daily revenue cap 7/35"),
    ]


def test_a_full_cap_reason_shows_the_usage_as_counted_each_call() -> None:
    # Reasons are kept between calls; 2.50 and 2.5 are equal but not written alike.
    config = build([buyer("b1", caps={"revenue": {"daily": "10"}})])
    day = period_key("day", NOW, "UTC")
    seen = []
    for used in ("2.50", "2.5", "2.50", "3"):
        counters = RoutingCounters(
            cap_usage={CapKey("buyer:b1", "revenue", "day", day): Decimal(used)}
        )
        [skipped] = decide(config, call(), counters, NOW).skipped
        seen.append(skipped.reason)
    assert seen == [
        "daily revenue cap 2.50/10",
        "daily revenue cap 2.5/10",
        "daily revenue cap 2.50/10",
        "daily revenue cap 3/10",
    ]


@settings(max_examples=100)
@given(
    st.lists(
        st.dictionaries(
            st.sampled_from(["age", "insured", "state"]),
            st.sampled_from(["20", "70", "yes", "no", " YES ", "abc", ""]),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_filter_plans_sharing_parts_answer_like_filters(calls: list[dict[str, str]]) -> None:
    # Buyers share equal geography and rules, and with them their answers; none may leak.
    geo_plans: dict[str, GeoPlan] = {}
    rule_plans: dict[str, RulePlan] = {}
    every = [
        Filters.model_validate(data)
        for data in (
            {"states": ["CA", "TX"], "tags": [{"tag": "age", "op": ">", "value": 64}]},
            {"states": ["CA", "TX"], "allow_unknown_geo": True},
            {"exclude_area_codes": ["512"], "zips": ["94103"]},
            {
                "tags": [
                    {"tag": "insured", "op": "in", "value": ["yes"]},
                    {"tag": "age", "op": ">", "value": 64},
                ]
            },
            {
                "tags": [
                    {"tag": "age", "op": "<", "value": 64},
                    {"tag": "state", "op": "!=", "value": "NY"},
                ]
            },
            {"area_codes": ["415"], "tags": [{"tag": "insured", "op": "~", "value": "^y"}]},
        )
    ]
    plans = [filter_parts(filters, geo_plans, rule_plans) for filters in every]
    places = [
        (state, area_code, zip_code)
        for state in ("CA", "TX", "NY", None)
        for area_code in ("415", "512", None)
        for zip_code in ("94103", None)
    ]
    for tags in calls + calls:
        for place in places:
            for filters, plan in zip(every, plans, strict=True):
                assert rejection(plan, *place, tags) == filters.rejection(*place, tags)


def test_a_candidate_made_again_follows_the_callers_history() -> None:
    # Candidates are kept between calls: one made for a new caller must not serve a duplicate.
    config = build([buyer("b1", duplicates={"window_days": 7, "action": "no_convert"})])
    recent = (PastCall("c1", "b1", NOW - timedelta(days=1), True, True),)
    seen = []
    for history in ((), recent, (), recent):
        counters = RoutingCounters(caller_history=history)
        [candidate] = decide(config, call(), counters, NOW).candidates
        seen.append(candidate.no_convert_reason)
    assert seen == [None, "duplicate: same caller converted 1 day ago"] * 2
