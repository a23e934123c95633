"""Caller geography from real numbering data."""

from __future__ import annotations

import gc
import random

import phonenumbers
import pytest
from phonenumbers import PhoneNumberFormat, PhoneNumberType, geocoder

from callwhisper.routing import geo
from callwhisper.routing.geo import (
    UNKNOWN,
    Geo,
    area_code_states,
    enrich,
    geo_for_number,
    normalize_number,
)
from tests.unit.routing.helpers import call


@pytest.mark.parametrize(
    ("number", "expected"),
    [
        ("+14155550100", Geo("US", "CA", "415", "San Francisco, CA")),
        ("+12125550100", Geo("US", "NY", "212", "New York, NY")),
        ("+15125550100", Geo("US", "TX", "512", "Texas")),
        ("+16135550100", Geo("CA", "ON", "613", "Ontario")),
        ("+17875550100", Geo("PR", "PR", "787", "Puerto Rico")),
        ("+442079460000", Geo("GB", None, None, "London")),
    ],
)
def test_geography_of_real_numbers(number: str, expected: Geo) -> None:
    assert geo_for_number(number) == expected


def _reference(e164: str) -> tuple[str | None, str | None, str | None] | None:
    """Country, area code and description as libphonenumber's own calls give them."""
    number = phonenumbers.parse(e164, None)
    if not phonenumbers.is_valid_number(number):
        return None
    area_code = phonenumbers.national_significant_number(number)[:3]
    return (
        phonenumbers.region_code_for_number(number),
        area_code if number.country_code == 1 else None,
        geocoder.description_for_number(number, "en") or None,
    )


def test_the_lookup_agrees_with_libphonenumber_on_valid_and_invalid_numbers() -> None:
    """Ten-digit North American numbers of any area code, and numbers of other countries."""
    rng = random.Random(7)
    numbers = [f"+1{rng.randrange(2_000_000_000, 10_000_000_000)}" for _ in range(600)]
    numbers += [f"+1{rng.randrange(1_000_000_000, 2_000_000_000)}" for _ in range(20)]
    numbers += ["+18005550100", "+18885550100", "+19005550100", "+12425550100", "+16495550100"]
    numbers += ["+442079460000", "+33142685300", "+61412345678", "+8613800138000", "+3912345"]
    # Every North American region (some are found by leading digits, the others by type).
    for region in phonenumbers.COUNTRY_CODE_TO_REGION_CODE[1]:
        for kind in (PhoneNumberType.FIXED_LINE, PhoneNumberType.MOBILE, PhoneNumberType.TOLL_FREE):
            example = phonenumbers.example_number_for_type(region, kind)
            if example is not None:
                numbers.append(phonenumbers.format_number(example, PhoneNumberFormat.E164))
    valid = 0
    for number in numbers:
        found = geo._look_up(number)
        expected = _reference(number)
        if expected is None:
            assert found is UNKNOWN, number
            continue
        valid += 1
        assert (found.country, found.area_code, found.city) == expected, number
    assert valid > 200


@pytest.mark.parametrize(
    "number", ["4155550100", "14155550100", "(415) 555-0100", "1-415-555-0100"]
)
def test_north_american_numbers_without_plus_are_understood(number: str) -> None:
    assert geo_for_number(number).state == "CA"


@pytest.mark.parametrize(
    "number", [None, "", "anonymous", "Restricted", "unavailable", "12", "+19995550100", "sip:x"]
)
def test_withheld_and_invalid_numbers_give_unknown_geography(number: str | None) -> None:
    assert geo_for_number(number) is UNKNOWN


def test_toll_free_number_has_an_area_code_but_no_state() -> None:
    assert geo_for_number("+18005550100") == Geo("US", None, "800", None)


def test_area_code_spanning_provinces_takes_the_state_most_exchanges_name() -> None:
    assert area_code_states()["902"] == "NS"
    assert area_code_states()["415"] == "CA"


def test_normalize_number_gives_e164() -> None:
    assert normalize_number(" 415.555.0100 ") == "+14155550100"
    assert normalize_number("+44 20 7946 0000") == "+442079460000"
    assert normalize_number("555-0100") is None


def test_enrich_fills_unknown_geography_only() -> None:
    enriched = enrich(call("+14155550100", state="NV"))
    assert (enriched.state, enriched.area_code, enriched.city, enriched.country) == (
        "NV",
        "415",
        "San Francisco, CA",
        "US",
    )


def test_enrich_leaves_anonymous_and_complete_calls_unchanged() -> None:
    anonymous = call(None)
    assert enrich(anonymous) is anonymous
    complete = call("+14155550100", state="CA", area_code="415", city="X", country="US")
    assert enrich(complete) is complete


def test_the_geography_cache_is_invisible_to_the_garbage_collector() -> None:
    numbers = [f"+1415555{suffix:04d}" for suffix in range(200)]
    for number in numbers:
        geo_for_number(number)
    gc.collect()
    gc.collect()
    assert not gc.is_tracked(geo._geo_cache)
    assert [geo_for_number(number) for number in numbers[:3]] == [
        Geo("US", "CA", "415", "San Francisco, CA")
    ] * 3
