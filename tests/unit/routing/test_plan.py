"""The compiled plan answers exactly what the domain model answers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from callwhisper.domain import Caps, Filters
from callwhisper.domain.caps import charges_for
from callwhisper.routing.plan import (
    OwnerLimits,
    OwnerSet,
    compile_plan,
    filter_parts,
    quarter_of,
)
from tests.unit.routing.helpers import buyer, configuration, rejection

# Zones with half- and quarter-hour offsets and daylight saving time.
ZONES = [
    "America/New_York",
    "America/St_Johns",
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "Australia/Adelaide",
    "Pacific/Chatham",
    "Europe/London",
]
CAPS = Caps.model_validate(
    {
        "calls": {"hourly": 5, "daily": 50, "weekly": 200, "monthly": 800, "total": 9000},
        "revenue": {"daily": "1000"},
    }
)


@given(
    st.sampled_from(ZONES),
    st.integers(min_value=0, max_value=3 * 365 * 24 * 3600),
    st.sampled_from([Decimal(0), Decimal("12.5")]),
)
def test_charges_match_the_domain_at_every_moment(
    zone: str, seconds: int, revenue: Decimal
) -> None:
    """Cap periods computed per UTC quarter hour are the periods of the exact moment."""
    now = datetime(2025, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds)
    limits = OwnerLimits.of("buyer:b1", "", CAPS, zone, target_level=False)
    assert limits is not None
    caps = OwnerSet.of((limits,)).caps(quarter_of(now), revenue)
    assert list(caps.charges()) == charges_for("buyer:b1", CAPS, now, zone, revenue)


ROUTE_CAPS = Caps.model_validate({"calls": {"hourly": 2}, "revenue": {"monthly": "300"}})


@given(
    st.sampled_from(ZONES),
    st.lists(st.integers(min_value=0, max_value=40 * 24 * 3600), min_size=1, max_size=30),
    st.lists(st.sampled_from([Decimal(10), Decimal("12.5")]), min_size=30, max_size=30),
)
def test_an_owner_sets_checks_follow_the_moment_and_the_revenue(
    zone: str, seconds: list[int], revenues: list[Decimal]
) -> None:
    """Caps kept from one quarter hour to the next are those of the exact moment."""
    buyer = OwnerLimits.of("buyer:b1", "", CAPS, zone, target_level=False)
    route = OwnerLimits.of("route:c1/b1/*", "", ROUTE_CAPS, zone, target_level=False)
    assert buyer is not None
    assert route is not None
    owners = OwnerSet.of((buyer, route))
    start = datetime(2026, 3, 1, tzinfo=UTC)
    for offset, revenue in zip(sorted(seconds), revenues, strict=False):
        now = start + timedelta(seconds=offset)
        expected = charges_for("buyer:b1", CAPS, now, zone, revenue) + charges_for(
            "route:c1/b1/*", ROUTE_CAPS, now, zone, revenue
        )
        caps = owners.caps(quarter_of(now), revenue)
        assert list(caps.charges()) == expected
        assert caps.checks == tuple(
            (charge.key, charge.limit - charge.amount, owner, index)
            for charge, (owner, index) in zip(
                expected,
                [(buyer, index) for index in range(6)] + [(route, index) for index in range(2)],
                strict=True,
            )
        )


def test_owner_without_limits_compiles_to_nothing() -> None:
    assert OwnerLimits.of("buyer:b1", "", Caps(), "UTC", target_level=False) is None
    assert OwnerLimits.of("buyer:b1", "", None, "UTC", target_level=False) is None


def test_filter_plan_answers_like_filters_for_each_combination() -> None:
    filters = Filters.model_validate(
        {"states": ["CA", "TX"], "tags": [{"tag": "age", "op": ">", "value": 64}]}
    )
    parts = filter_parts(filters, {}, {})
    for state in ("CA", "NY", None):
        for tags in ({"age": "70"}, {"age": "30"}, {}, {"age": "70", "other": "x"}):
            for _ in range(2):
                assert rejection(parts, state, "415", None, tags) == filters.rejection(
                    state, "415", None, tags
                )


def test_targets_are_checked_alike_only_without_filters_caps_or_revenue_of_their_own() -> None:
    """Only a target that adds nothing to its buyer's checks reuses an earlier one's answer."""
    targets = [
        {"id": "t1", "destination": "sip:t1@b.example"},
        {
            "id": "t2",
            "destination": "sip:t2@b.example",
            "schedule": {"hours": {"sat": ["09:00-17:00"]}},
        },
        {"id": "t3", "destination": "sip:t3@b.example", "filters": {"states": ["NY"]}},
        {"id": "t4", "destination": "sip:t4@b.example", "caps": {"concurrency": 1}},
        {
            "id": "t5",
            "destination": "sip:t5@b.example",
            "conversion": {"revenue": "30", "buffer_seconds": 60},
        },
        {"id": "t6", "destination": "sip:t6@b.example", "filters": {"states": ["NY"]}},
        {"id": "t7", "destination": "sip:t7@b.example", "filters": {"states": ["TX"]}},
    ]
    config = configuration([buyer("b1", targets=targets, filters={"states": ["CA", "NY"]})])
    [entry] = compile_plan(config).campaigns["c1"].tiers[0].entries
    # t2's own schedule is settled before these checks; t6's filters equal t3's, t7's do not.
    assert entry.alike == (None, 0, None, None, None, 2, None)
