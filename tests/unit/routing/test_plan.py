"""The compiled plan answers exactly what the domain model answers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from callwhisper.domain import Caps, Filters
from callwhisper.domain.caps import charges_for
from callwhisper.routing.plan import FilterPlan, OwnerLimits, quarter_of

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
    assert list(limits.charges(quarter_of(now), revenue)) == charges_for(
        "buyer:b1", CAPS, now, zone, revenue
    )


def test_owner_without_limits_compiles_to_nothing() -> None:
    assert OwnerLimits.of("buyer:b1", "", Caps(), "UTC", target_level=False) is None
    assert OwnerLimits.of("buyer:b1", "", None, "UTC", target_level=False) is None


def test_filter_plan_answers_like_filters_for_each_combination() -> None:
    filters = Filters.model_validate(
        {"states": ["CA", "TX"], "tags": [{"tag": "age", "op": ">", "value": 64}]}
    )
    plan = FilterPlan.of(filters)
    for state in ("CA", "NY", None):
        for tags in ({"age": "70"}, {"age": "30"}, {}, {"age": "70", "other": "x"}):
            for _ in range(2):
                assert plan.rejection(state, "415", None, tags) == filters.rejection(
                    state, "415", None, tags
                )
