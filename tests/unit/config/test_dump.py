"""Dumping: YAML that loads back to the same configuration, defaults left out, ids first."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from callwhisper.config import dump_configuration, load_configuration_file, load_configuration_text
from callwhisper.domain import (
    Buyer,
    Campaign,
    Caps,
    Configuration,
    ConversionRule,
    CountLimits,
    Filters,
    MoneyLimits,
    Publisher,
    RouteEntry,
    RoutingPlan,
    Schedule,
    TagRule,
    Target,
    Tier,
    TrackingNumber,
)
from tests.unit.config.helpers import EXAMPLE, MINIMAL


def test_example_round_trips() -> None:
    configuration = load_configuration_file(EXAMPLE)
    assert load_configuration_text(dump_configuration(configuration)) == configuration


def test_dump_is_stable() -> None:
    configuration = load_configuration_file(EXAMPLE)
    text = dump_configuration(configuration)
    assert dump_configuration(load_configuration_text(text)) == text


def test_defaults_are_left_out_and_ids_come_first() -> None:
    assert dump_configuration(load_configuration_text(MINIMAL)) == (
        "version: 1\n"
        "buyers:\n"
        "  - id: acme\n"
        "    conversion:\n"
        "      revenue: 40\n"
        "    targets:\n"
        "      - id: main\n"
        "        destination: sip:sales@acme.example\n"
        "campaigns:\n"
        "  - id: auto\n"
        "    routing:\n"
        "      tiers:\n"
        "        - buyers:\n"
        "            - buyer: acme\n"
        "numbers:\n"
        "  - number: '+18005550100'\n"
        "    campaign: auto\n"
    )


def test_money_keeps_its_digits_and_short_lists_are_inline() -> None:
    text = MINIMAL.replace("revenue: 40", "revenue: 42.50").replace(
        "    conversion:", "    filters: {states: [ca, nv]}\n    conversion:"
    )
    dumped = dump_configuration(load_configuration_text(text))
    assert "      revenue: 42.50\n" in dumped
    assert "      states: [CA, NV]\n" in dumped


@pytest.mark.parametrize(
    "name", ["caf\u00e9 \u2603", "line\x85break", "a\u2028b", "no", "08:00", ""]
)
def test_awkward_strings_round_trip(name: str) -> None:
    configuration = load_configuration_text(
        MINIMAL.replace("  - id: acme\n", "  - id: acme\n    name: x\n")
    )
    buyer = configuration.buyers[0].model_copy(update={"name": name})
    changed = configuration.model_copy(update={"buyers": [buyer]})
    assert load_configuration_text(dump_configuration(changed)).buyers[0].name == name


def test_empty_configuration() -> None:
    assert dump_configuration(Configuration()) == "version: 1\n"


_IDS = st.sampled_from(["a", "b", "acme", "x-1", "007", "no", "on", "null", "1.5"])
_TEXT = st.text(max_size=12)
_COUNT = st.none() | st.integers(min_value=0, max_value=10_000)
_MONEY = st.decimals(min_value=0, max_value=10_000, places=2)
_RANGES = st.sampled_from(["09:00-17:00", "8:00-12:00", "00:00-24:00", "13:30-14:00"])


@st.composite
def _caps(draw: st.DrawFn) -> Caps:
    return Caps(
        calls=draw(st.none() | st.builds(CountLimits, daily=_COUNT, hourly=_COUNT)),
        revenue=draw(st.none() | st.builds(MoneyLimits, weekly=st.none() | _MONEY)),
        concurrency=draw(_COUNT),
    )


@st.composite
def _filters(draw: st.DrawFn) -> Filters:
    value = draw(
        st.sampled_from(["no", "08:00", "+1", "yes", "1"])
        | st.integers(-5, 100)
        | st.floats(0, 10, allow_nan=False)
        | _TEXT
    )
    return Filters(
        states=draw(st.lists(st.sampled_from(["CA", "NV", "TX"]), max_size=2)),
        area_codes=draw(st.lists(st.sampled_from(["212", "010"]), max_size=2)),
        tags=[TagRule(tag="t", op="==", value=value)] if draw(st.booleans()) else [],
    )


@st.composite
def _buyer(draw: st.DrawFn, buyer_id: str) -> Buyer:
    return Buyer(
        id=buyer_id,
        name=draw(st.none() | _TEXT),
        enabled=draw(st.booleans()),
        conversion=ConversionRule(revenue=draw(_MONEY), buffer_seconds=draw(st.integers(0, 300))),
        caps=draw(st.none() | _caps()),
        schedule=draw(
            st.none()
            | st.builds(
                Schedule,
                hours=st.none()
                | st.dictionaries(
                    st.sampled_from(["mon", "sat"]), st.lists(_RANGES, min_size=1, max_size=1)
                ),
            )
        ),
        filters=draw(st.none() | _filters()),
        targets=[Target(id=draw(_IDS), destination="sip:t@example.com")],
    )


@st.composite
def _configurations(draw: st.DrawFn) -> Configuration:
    buyer_ids = draw(st.lists(_IDS, min_size=1, max_size=3, unique=True))
    buyers = [draw(_buyer(buyer_id)) for buyer_id in buyer_ids]
    campaign = Campaign(
        id=draw(_IDS),
        name=draw(st.none() | _TEXT),
        routing=RoutingPlan(
            tiers=[
                Tier(
                    method=draw(st.sampled_from(["priority", "round_robin", "weighted"])),
                    buyers=[
                        RouteEntry(
                            buyer=b, weight=draw(st.integers(1, 5)), caps=draw(st.none() | _caps())
                        )
                        for b in buyer_ids
                    ],
                )
            ]
        ),
    )
    return Configuration(
        publishers=[Publisher(id="p", name=draw(st.none() | _TEXT))],
        buyers=buyers,
        campaigns=[campaign],
        numbers=[
            TrackingNumber(
                number=draw(st.sampled_from(["+18005550100", "4155550100", "sales"])),
                campaign=campaign.id,
                publisher=draw(st.none() | st.just("p")),
                tags=draw(st.dictionaries(_TEXT.filter(bool), _TEXT, max_size=2)),
            )
        ],
    )


@settings(max_examples=75, suppress_health_check=[HealthCheck.too_slow])
@given(_configurations())
def test_generated_configurations_round_trip(configuration: Configuration) -> None:
    assert load_configuration_text(dump_configuration(configuration)) == configuration


def test_decimal_revenue_round_trips_exactly() -> None:
    configuration = load_configuration_text(MINIMAL.replace("revenue: 40", "revenue: 0.0001"))
    again = load_configuration_text(dump_configuration(configuration))
    assert again.buyers[0].conversion.revenue == Decimal("0.0001")
