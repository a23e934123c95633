"""Template variables made speakable: regions, phone numbers, ZIP codes, amounts, numbers."""

from __future__ import annotations

from decimal import Decimal

import pytest

from callwhisper.audio import (
    int_to_words,
    parse_amount,
    region_name,
    say_amount,
    say_digits,
    say_phone_number,
    say_zip_code,
)
from callwhisper.audio.speech import CA_PROVINCES, US_STATES

FIFTY_STATES = (
    "AL", "AK", "AZ", "AR", "CA", "CO", "CT", "DE", "FL", "GA",
    "HI", "ID", "IL", "IN", "IA", "KS", "KY", "LA", "ME", "MD",
    "MA", "MI", "MN", "MS", "MO", "MT", "NE", "NV", "NH", "NJ",
    "NM", "NY", "NC", "ND", "OH", "OK", "OR", "PA", "RI", "SC",
    "SD", "TN", "TX", "UT", "VT", "VA", "WA", "WV", "WI", "WY",
)  # fmt: skip


def test_every_state_dc_and_territory_has_a_name() -> None:
    territories = {"AS", "GU", "MP", "PR", "VI", "UM", "FM", "MH", "PW", "AA", "AE", "AP"}
    assert len(FIFTY_STATES) == 50
    assert set(US_STATES) == {*FIFTY_STATES, "DC", *territories}
    assert len(set(US_STATES.values())) == len(US_STATES)


def test_every_province_and_territory_of_canada_has_a_name() -> None:
    provinces = {"AB", "BC", "MB", "NB", "NL", "NS", "NT", "NU", "ON", "PE", "QC", "SK", "YT"}
    assert set(CA_PROVINCES) == provinces
    assert not set(CA_PROVINCES) & set(US_STATES)


@pytest.mark.parametrize(
    ("code", "name"),
    [
        ("CA", "California"),
        ("ca", "California"),
        (" ny ", "New York"),
        ("DC", "the District of Columbia"),
        ("PR", "Puerto Rico"),
        ("ON", "Ontario"),
        ("QC", "Quebec"),
        ("NL", "Newfoundland and Labrador"),
    ],
)
def test_region_name(code: str, name: str) -> None:
    assert region_name(code) == name


def test_region_name_restricted_to_a_country() -> None:
    assert region_name("BC", country="CA") == "British Columbia"
    with pytest.raises(ValueError, match="unknown US state code 'BC'"):
        region_name("BC", country="US")
    with pytest.raises(ValueError, match="unknown Canadian province code 'TX'"):
        region_name("TX", country="CA")


def test_unknown_region_code() -> None:
    with pytest.raises(ValueError, match="unknown state or province code 'ZZ'"):
        region_name("ZZ")


def test_say_digits() -> None:
    assert say_digits("0100") == "0 1 0 0"
    with pytest.raises(ValueError, match="only digits"):
        say_digits("01a")
    with pytest.raises(ValueError, match="only digits"):
        say_digits("١٢")  # Arabic-Indic digits are digits to Python, not to a TTS voice


@pytest.mark.parametrize(
    "number", ["+1 415 555 0100", "(415) 555-0100", "415.555.0100", "14155550100", "4155550100"]
)
def test_north_american_number_in_three_groups(number: str) -> None:
    assert say_phone_number(number) == "4 1 5, 5 5 5, 0 1 0 0"


def test_international_number_with_country_code() -> None:
    assert say_phone_number("+44 20 7946 0958") == "plus 4 4, 2 0, 7 9 4 6, 0 9 5 8"


def test_number_in_another_default_region() -> None:
    assert say_phone_number("020 7946 0958", default_region="GB") == (
        "plus 4 4, 2 0, 7 9 4 6, 0 9 5 8"
    )


@pytest.mark.parametrize("text", ["hello", "123", ""])
def test_not_a_phone_number(text: str) -> None:
    with pytest.raises(ValueError, match="phone number"):
        say_phone_number(text)


@pytest.mark.parametrize(
    ("code", "spoken"),
    [
        ("94105", "9 4 1 0 5"),
        ("94105-1234", "9 4 1 0 5, 1 2 3 4"),
        ("941051234", "9 4 1 0 5, 1 2 3 4"),
        ("K1A 0B6", "K 1 A, 0 B 6"),
        ("k1a0b6", "K 1 A, 0 B 6"),
    ],
)
def test_say_zip_code(code: str, spoken: str) -> None:
    assert say_zip_code(code) == spoken


@pytest.mark.parametrize("code", ["9410", "94105-12", "K1A-0B6", "ABCDE"])
def test_not_a_zip_code(code: str) -> None:
    with pytest.raises(ValueError, match="not a US ZIP code or Canadian postal code"):
        say_zip_code(code)


@pytest.mark.parametrize(
    ("number", "words"),
    [
        (0, "zero"),
        (7, "seven"),
        (13, "thirteen"),
        (20, "twenty"),
        (25, "twenty-five"),
        (100, "one hundred"),
        (105, "one hundred five"),
        (999, "nine hundred ninety-nine"),
        (1000, "one thousand"),
        (1001, "one thousand one"),
        (2_500_000, "two million five hundred thousand"),
        (1_000_000_042, "one billion forty-two"),
        (-42, "minus forty-two"),
    ],
)
def test_int_to_words(number: int, words: str) -> None:
    assert int_to_words(number) == words


def test_int_to_words_stops_at_a_quadrillion() -> None:
    assert int_to_words(10**15 - 1).startswith("nine hundred ninety-nine trillion")
    with pytest.raises(ValueError, match="quadrillion"):
        int_to_words(10**15)


@pytest.mark.parametrize(
    ("amount", "spoken"),
    [
        ("$25.50", "25 dollars and 50 cents"),
        ("$1.01", "1 dollar and 1 cent"),
        ("$25", "25 dollars"),
        ("25.00", "25 dollars"),
        ("$0.50", "50 cents"),
        ("$0", "0 dollars"),
        ("$1,250.75", "1250 dollars and 75 cents"),
        ("-$3.10", "minus 3 dollars and 10 cents"),
        (Decimal("12.3400"), "12 dollars and 34 cents"),
        (40, "40 dollars"),
    ],
)
def test_say_amount(amount: Decimal | int | str, spoken: str) -> None:
    assert say_amount(amount) == spoken


def test_parse_amount() -> None:
    assert parse_amount("$1,250.00") == Decimal("1250.00")
    assert parse_amount("-$0.05") == Decimal("-0.05")
    assert parse_amount(".5") == Decimal("0.5")


@pytest.mark.parametrize("text", ["", "$", "abc", "--5", "-$-5", "$1.2.3"])
def test_not_an_amount(text: str) -> None:
    with pytest.raises(ValueError, match="not an amount of money"):
        parse_amount(text)


def test_fractions_of_a_cent_are_refused() -> None:
    with pytest.raises(ValueError, match="not a whole number of cents"):
        say_amount("$1.005")


def test_bool_is_not_an_amount() -> None:
    with pytest.raises(TypeError, match="bool"):
        say_amount(True)
