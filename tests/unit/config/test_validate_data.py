"""Validating parsed data: every problem is reported with its location, as for YAML."""

from __future__ import annotations

from typing import Any

import pytest

from callwhisper.config import validate_configuration
from callwhisper.domain.configuration import Configuration, format_location
from callwhisper.errors import ConfigError


def base() -> dict[str, Any]:
    return {
        "buyers": [
            {
                "id": "acme",
                "conversion": {"revenue": "25.00", "buffer_seconds": 90},
                "targets": [{"id": "main", "destination": "sip:agents@acme.example"}],
            }
        ],
        "campaigns": [
            {"id": "auto", "routing": {"tiers": [{"buyers": [{"buyer": "acme"}]}]}},
        ],
        "numbers": [{"number": "+18005550100", "campaign": "auto"}],
    }


def problems(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        validate_configuration(data)
    return info.value.problems


def test_a_valid_configuration_builds_and_indexes_its_objects() -> None:
    configuration = validate_configuration(base())
    assert configuration.buyers_by_id["acme"].targets[0].destination == "sip:agents@acme.example"
    assert configuration.lookup_number("18005550100") is configuration.numbers[0]
    assert configuration.lookup_number("+18005550199") is None


def test_location_formatting() -> None:
    location = ("campaigns", 0, "routing", "tiers", 1)
    assert format_location(location) == "campaigns[0].routing.tiers[1]"
    assert format_location(()) == "(top level)"


def test_negative_cap_is_reported_at_its_path() -> None:
    data = base()
    data["campaigns"][0]["routing"]["tiers"][0]["buyers"][0]["caps"] = {"calls": {"daily": -5}}
    assert problems(data) == [
        "campaigns[0].routing.tiers[0].buyers[0].caps.calls.daily: must be >= 0"
    ]


def test_unknown_field_and_wrong_type_are_both_reported() -> None:
    data = base()
    data["buyers"][0]["colour"] = "blue"
    data["campaigns"][0]["ring_timeout_seconds"] = "soon"
    assert problems(data) == [
        "buyers[0].colour: unknown field",
        "campaigns[0].ring_timeout_seconds: must be an integer, not 'soon'",
    ]


def test_broken_references_and_duplicates_are_each_reported() -> None:
    data = base()
    data["numbers"].append({"number": "+18005550100", "campaign": "home", "publisher": "p9"})
    data["campaigns"][0]["routing"]["tiers"][0]["buyers"].append({"buyer": "acme", "target": "x"})
    assert problems(data) == [
        "numbers[1]: duplicate tracking number '+18005550100' (first at numbers[0])",
        "campaigns[0].routing.tiers[0].buyers[1].target: buyer 'acme' has no target 'x'",
        "numbers[1].campaign: unknown campaign 'home'",
        "numbers[1].publisher: unknown publisher 'p9'",
    ]


def test_weight_of_zero_in_a_weighted_tier_is_rejected() -> None:
    data = base()
    tier = data["campaigns"][0]["routing"]["tiers"][0]
    tier["method"] = "weighted"
    tier["buyers"][0]["weight"] = 0
    assert problems(data) == [
        "campaigns[0].routing.tiers[0].buyers[0].weight: must be > 0 in a weighted tier "
        "(remove the buyer instead)"
    ]


def test_destination_must_be_a_sip_uri_or_e164() -> None:
    data = base()
    data["buyers"][0]["targets"][0]["destination"] = "555-0100"
    assert problems(data) == [
        "buyers[0].targets[0].destination: '555-0100' is neither a SIP URI (sip:user@host) "
        "nor an E.164 number (+15551234567)"
    ]


def test_empty_configuration_is_valid() -> None:
    assert validate_configuration({}) == Configuration()
    assert validate_configuration({"version": 1}) == Configuration()


def forwarding(forward_to: str, *trunk_ids: str, trunk: str | None = None) -> dict[str, Any]:
    """The base campaign forwarding to ``forward_to``, with trunks named ``trunk_ids``."""
    data = base()
    data["trunks"] = [{"id": name, "proxy": f"sip:{name}.example:5060"} for name in trunk_ids]
    fallback: dict[str, Any] = {"action": "forward", "forward_to": forward_to}
    if trunk is not None:
        fallback["trunk"] = trunk
    data["campaigns"][0]["fallback"] = fallback
    return data


def test_a_forward_fallback_naming_an_unknown_trunk_is_reported() -> None:
    assert problems(forwarding("+18885550101", "carrier", trunk="backup")) == [
        "campaigns[0].fallback.trunk: unknown trunk 'backup'"
    ]


@pytest.mark.parametrize(
    ("trunk_ids", "have"),
    [((), "no trunk is configured"), (("carrier", "backup"), "2 trunks are configured")],
)
def test_a_number_overflow_without_a_trunk_to_take_is_reported(
    trunk_ids: tuple[str, ...], have: str
) -> None:
    assert problems(forwarding("+18885550101", *trunk_ids)) == [
        "campaigns[0].fallback.forward_to: the number '+18885550101' is dialed through a trunk: "
        f"name it in fallback.trunk ({have})"
    ]


@pytest.mark.parametrize(
    ("forward_to", "trunk_ids", "trunk"),
    [
        ("+18885550101", ("carrier",), None),  # the only trunk
        ("+18885550101", ("carrier", "backup"), "backup"),
        ("sip:overflow@pbx.example", (), None),  # dialed directly
        ("sip:overflow@pbx.example", ("carrier", "backup"), "carrier"),
    ],
)
def test_a_forward_fallback_with_a_trunk_to_take_is_valid(
    forward_to: str, trunk_ids: tuple[str, ...], trunk: str | None
) -> None:
    configuration = validate_configuration(forwarding(forward_to, *trunk_ids, trunk=trunk))
    assert configuration.campaigns[0].fallback.trunk == trunk


def target_dialing(destination: str, *trunk_ids: str, trunk: str | None = None) -> dict[str, Any]:
    """The base buyer's target dialing ``destination``, with trunks named ``trunk_ids``."""
    data = base()
    data["trunks"] = [{"id": name, "proxy": f"sip:{name}.example:5060"} for name in trunk_ids]
    target: dict[str, Any] = {"id": "main", "destination": destination}
    if trunk is not None:
        target["trunk"] = trunk
    data["buyers"][0]["targets"] = [target]
    return data


@pytest.mark.parametrize(
    ("trunk_ids", "have"),
    [((), "no trunk is configured"), (("carrier", "backup"), "2 trunks are configured")],
)
def test_a_number_target_without_a_trunk_to_take_is_reported(
    trunk_ids: tuple[str, ...], have: str
) -> None:
    assert problems(target_dialing("+13105550142", *trunk_ids)) == [
        "buyers[0].targets[0].destination: the number '+13105550142' is dialed through a trunk: "
        f"name it in trunk ({have})"
    ]


@pytest.mark.parametrize(
    ("destination", "trunk_ids", "trunk"),
    [
        ("+13105550142", ("carrier",), None),  # the only trunk
        ("+13105550142", ("carrier", "backup"), "backup"),
        ("sip:agents@acme.example", (), None),  # dialed directly
    ],
)
def test_a_target_with_a_trunk_to_take_is_valid(
    destination: str, trunk_ids: tuple[str, ...], trunk: str | None
) -> None:
    configuration = validate_configuration(target_dialing(destination, *trunk_ids, trunk=trunk))
    assert configuration.buyers[0].targets[0].trunk == trunk
