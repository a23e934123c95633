"""Render template variables as text a speech engine reads correctly.

Left alone, a TTS engine reads ``CA`` as "ka", ``4155550100`` as "four billion..."
and ``$25.50`` as "twenty-five dollars fifty". These pure functions turn the
values into what an agent expects to hear: "California", "4 1 5, 5 5 5, 0 1 0 0"
(the commas make the engine pause between groups), "25 dollars and 50 cents".
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from types import MappingProxyType
from typing import Final, Literal

import phonenumbers

US_STATES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "AL": "Alabama",
        "AK": "Alaska",
        "AZ": "Arizona",
        "AR": "Arkansas",
        "CA": "California",
        "CO": "Colorado",
        "CT": "Connecticut",
        "DE": "Delaware",
        "FL": "Florida",
        "GA": "Georgia",
        "HI": "Hawaii",
        "ID": "Idaho",
        "IL": "Illinois",
        "IN": "Indiana",
        "IA": "Iowa",
        "KS": "Kansas",
        "KY": "Kentucky",
        "LA": "Louisiana",
        "ME": "Maine",
        "MD": "Maryland",
        "MA": "Massachusetts",
        "MI": "Michigan",
        "MN": "Minnesota",
        "MS": "Mississippi",
        "MO": "Missouri",
        "MT": "Montana",
        "NE": "Nebraska",
        "NV": "Nevada",
        "NH": "New Hampshire",
        "NJ": "New Jersey",
        "NM": "New Mexico",
        "NY": "New York",
        "NC": "North Carolina",
        "ND": "North Dakota",
        "OH": "Ohio",
        "OK": "Oklahoma",
        "OR": "Oregon",
        "PA": "Pennsylvania",
        "RI": "Rhode Island",
        "SC": "South Carolina",
        "SD": "South Dakota",
        "TN": "Tennessee",
        "TX": "Texas",
        "UT": "Utah",
        "VT": "Vermont",
        "VA": "Virginia",
        "WA": "Washington",
        "WV": "West Virginia",
        "WI": "Wisconsin",
        "WY": "Wyoming",
        "DC": "the District of Columbia",
        # Territories and freely associated states with USPS codes
        "AS": "American Samoa",
        "GU": "Guam",
        "MP": "the Northern Mariana Islands",
        "PR": "Puerto Rico",
        "VI": "the U.S. Virgin Islands",
        "UM": "the U.S. Minor Outlying Islands",
        "FM": "the Federated States of Micronesia",
        "MH": "the Marshall Islands",
        "PW": "Palau",
        # USPS military "states"
        "AA": "Armed Forces Americas",
        "AE": "Armed Forces Europe",
        "AP": "Armed Forces Pacific",
    }
)
"""USPS codes of the 50 states, DC, territories and military post, to spoken names."""

CA_PROVINCES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "AB": "Alberta",
        "BC": "British Columbia",
        "MB": "Manitoba",
        "NB": "New Brunswick",
        "NL": "Newfoundland and Labrador",
        "NS": "Nova Scotia",
        "NT": "the Northwest Territories",
        "NU": "Nunavut",
        "ON": "Ontario",
        "PE": "Prince Edward Island",
        "QC": "Quebec",
        "SK": "Saskatchewan",
        "YT": "Yukon",
    }
)
"""Canada Post codes of the provinces and territories, to spoken names."""

_ONES: Final = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
    "ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen",
    "seventeen", "eighteen", "nineteen",
)  # fmt: skip
_TENS: Final = (
    "", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety",
)  # fmt: skip
_SCALES: Final = ("", "thousand", "million", "billion", "trillion")

_CANADIAN_POSTAL: Final = re.compile(r"([A-Z]\d[A-Z])\s?(\d[A-Z]\d)")
_US_ZIP: Final = re.compile(r"(\d{5})(?:-?(\d{4}))?")
_AMOUNT: Final = re.compile(r"(-)?\$?\s*(-)?([\d,]*\.?\d*)")


def region_name(code: str, country: Literal["US", "CA"] | None = None) -> str:
    """Spoken name of a US state or territory or a Canadian province: ``"CA"`` -> California.

    The two code sets do not overlap, so ``country`` is only needed to refuse the
    other country's codes. Case and surrounding spaces are ignored; an unknown
    code raises ValueError.
    """
    key = code.strip().upper()
    if country in (None, "US") and key in US_STATES:
        return US_STATES[key]
    if country in (None, "CA") and key in CA_PROVINCES:
        return CA_PROVINCES[key]
    where = {"US": "US state", "CA": "Canadian province"}.get(country or "", "state or province")
    raise ValueError(f"unknown {where} code {code!r}")


def say_digits(digits: str) -> str:
    """Digits one by one: ``"0100"`` -> ``"0 1 0 0"``; anything but digits raises ValueError."""
    if not digits.isascii() or not digits.isdigit():
        raise ValueError(f"expected only digits, got {digits!r}")
    return " ".join(digits)


def say_phone_number(number: str, default_region: str = "US") -> str:
    """A phone number digit by digit in its natural groups.

    ``"+1 415 555 0100"`` -> ``"4 1 5, 5 5 5, 0 1 0 0"``. North American numbers
    (country code 1) are read as dialled within North America, other numbers
    with their country code: ``"+44 20 7946 0958"`` ->
    ``"plus 4 4, 2 0, 7 9 4 6, 0 9 5 8"``. A number without country code is
    taken to be in ``default_region``. Text that is not a phone number raises
    ValueError.
    """
    try:
        parsed = phonenumbers.parse(number, default_region)
    except phonenumbers.NumberParseException as exc:
        raise ValueError(f"not a phone number: {number!r} ({exc})") from None
    if not phonenumbers.is_possible_number(parsed):
        raise ValueError(f"not a possible phone number: {number!r}")
    if parsed.country_code == 1:
        style, lead = phonenumbers.PhoneNumberFormat.NATIONAL, ""
    else:
        style, lead = phonenumbers.PhoneNumberFormat.INTERNATIONAL, "plus "
    groups = re.findall(r"\d+", phonenumbers.format_number(parsed, style))
    return lead + ", ".join(say_digits(group) for group in groups)


def say_zip_code(code: str) -> str:
    """A US ZIP or ZIP+4, or a Canadian postal code, character by character.

    ``"94105"`` -> ``"9 4 1 0 5"``, ``"94105-1234"`` -> ``"9 4 1 0 5, 1 2 3 4"``,
    ``"K1A 0B6"`` -> ``"K 1 A, 0 B 6"``. Anything else raises ValueError.
    """
    text = code.strip().upper()
    if match := _US_ZIP.fullmatch(text):
        return ", ".join(say_digits(group) for group in match.groups() if group)
    if match := _CANADIAN_POSTAL.fullmatch(text):
        return ", ".join(" ".join(group) for group in match.groups())
    raise ValueError(f"not a US ZIP code or Canadian postal code: {code!r}")


def int_to_words(number: int) -> str:
    """English words for an integer, US style: 125 -> "one hundred twenty-five"."""
    if number < 0:
        return f"minus {int_to_words(-number)}"
    if number < 1000:
        return _below_thousand(number)
    parts = []
    for scale in _SCALES:
        number, chunk = divmod(number, 1000)
        if chunk:
            parts.append(f"{_below_thousand(chunk)} {scale}".rstrip())
        if not number:
            break
    else:
        raise ValueError("numbers of a quadrillion or more are not supported")
    return " ".join(reversed(parts))


def _below_thousand(number: int) -> str:
    hundreds, rest = divmod(number, 100)
    words = [f"{_ONES[hundreds]} hundred"] if hundreds else []
    if rest >= 20:
        tens, ones = divmod(rest, 10)
        words.append(f"{_TENS[tens]}-{_ONES[ones]}" if ones else _TENS[tens])
    elif rest or not hundreds:
        words.append(_ONES[rest])
    return " ".join(words)


def parse_amount(amount: Decimal | int | str) -> Decimal:
    """A money amount as Decimal: accepts ``25``, ``"25.5"``, ``"$1,250.00"``, ``"-$3"``.

    Fractions of a cent raise ValueError: an amount read to a buyer must be exact.
    """
    if isinstance(amount, str):
        match = _AMOUNT.fullmatch(amount.strip())
        if match is None or (match[1] and match[2]) or not any(c.isdigit() for c in match[3]):
            raise ValueError(f"not an amount of money: {amount!r}")
        text = ("-" if match[1] or match[2] else "") + match[3].replace(",", "")
        try:
            value = Decimal(text)
        except InvalidOperation:
            raise ValueError(f"not an amount of money: {amount!r}") from None
    elif isinstance(amount, bool):
        raise TypeError("a bool is not an amount of money")
    else:
        value = Decimal(amount)
    if not value.is_finite() or value != value.quantize(Decimal("0.01")):
        raise ValueError(f"amount {amount!r} is not a whole number of cents")
    return value


def say_amount(amount: Decimal | int | str) -> str:
    """A dollar amount as a TTS engine reads it right: ``"$25.50"`` -> "25 dollars and 50 cents".

    Numbers stay in digits, which every engine reads as a number, without the
    thousands separators that some read as a pause: ``"$1,250"`` -> "1250 dollars".
    """
    value = parse_amount(amount)
    sign = "minus " if value < 0 else ""
    cents_total = int(abs(value) * 100)
    dollars, cents = divmod(cents_total, 100)
    dollar_words = f"{dollars} dollar{'' if dollars == 1 else 's'}"
    cent_words = f"{cents} cent{'' if cents == 1 else 's'}"
    if not cents:
        return sign + dollar_words
    if not dollars:
        return sign + cent_words
    return f"{sign}{dollar_words} and {cent_words}"
