"""Caller geography from the caller's number, with the ``phonenumbers`` library.

North American (NANP, country code 1) numbers give a state or province, an
area code and a place description; other numbers give their country only.
Numbers that are withheld, anonymous or invalid give unknown geography: this
module never raises on caller input.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from dataclasses import dataclass
from functools import cache
from typing import Final

import phonenumbers
from phonenumbers import PhoneMetadata, PhoneNumber, PhoneNumberType, geocoder
from phonenumbers.geodata import GEOCODE_DATA, GEOCODE_LONGEST_PREFIX
from phonenumbers.phonenumberutil import _number_type_helper

from callwhisper.domain import CallAttributes

# Names used by libphonenumber's English geocoding data, to two-letter codes.
_REGION_CODES: dict[str, str] = {
    "Alabama": "AL",
    "Alaska": "AK",
    "Arizona": "AZ",
    "Arkansas": "AR",
    "California": "CA",
    "Colorado": "CO",
    "Connecticut": "CT",
    "Delaware": "DE",
    "Florida": "FL",
    "Georgia": "GA",
    "Hawaii": "HI",
    "Idaho": "ID",
    "Illinois": "IL",
    "Indiana": "IN",
    "Iowa": "IA",
    "Kansas": "KS",
    "Kentucky": "KY",
    "Louisiana": "LA",
    "Maine": "ME",
    "Maryland": "MD",
    "Massachusetts": "MA",
    "Michigan": "MI",
    "Minnesota": "MN",
    "Mississippi": "MS",
    "Missouri": "MO",
    "Montana": "MT",
    "Nebraska": "NE",
    "Nevada": "NV",
    "New Hampshire": "NH",
    "New Jersey": "NJ",
    "New Mexico": "NM",
    "New York": "NY",
    "North Carolina": "NC",
    "North Dakota": "ND",
    "Ohio": "OH",
    "Oklahoma": "OK",
    "Oregon": "OR",
    "Pennsylvania": "PA",
    "Rhode Island": "RI",
    "South Carolina": "SC",
    "South Dakota": "SD",
    "Tennessee": "TN",
    "Texas": "TX",
    "Utah": "UT",
    "Vermont": "VT",
    "Virginia": "VA",
    "Washington": "WA",
    "Washington State": "WA",
    "Washington D.C.": "DC",
    "West Virginia": "WV",
    "Wisconsin": "WI",
    "Wyoming": "WY",
    "Alberta": "AB",
    "British Columbia": "BC",
    "British Colombia": "BC",  # sic: spelled so for some prefixes in the data
    "Manitoba": "MB",
    "New Brunswick": "NB",
    "Newfoundland and Labrador": "NL",
    "Northwest Territories": "NT",
    "Nova Scotia": "NS",
    "Nunavut": "NU",
    "Ontario": "ON",
    "Prince Edward Island": "PE",
    "Quebec": "QC",
    "Saskatchewan": "SK",
    "Yukon": "YT",
}
_STATE_CODES = frozenset(_REGION_CODES.values())

# US territories have their own NANP region and a USPS two-letter code equal to it.
_US_TERRITORIES = frozenset({"PR", "VI", "GU", "MP", "AS"})

# What switches and SIP providers put in From when the caller withholds its number.
_WITHHELD = frozenset({"", "anonymous", "restricted", "private", "unavailable", "unknown"})


@dataclass(frozen=True, slots=True)
class Geo:
    """Where a caller's number belongs; every field is ``None`` when unknown.

    ``city`` is the most precise place the numbering data names: a city and
    state ("San Francisco, CA"), a state ("Texas") or, outside North America,
    a city or country ("London").
    """

    country: str | None = None
    state: str | None = None
    area_code: str | None = None
    city: str | None = None


UNKNOWN = Geo()
"""The geography of a withheld, anonymous or invalid number."""


def is_withheld(caller: str | None) -> bool:
    """Whether the caller withheld its number (none, empty, or "anonymous" and the like)."""
    return caller is None or caller.strip().lower() in _WITHHELD


def normalize_number(caller: str | None) -> str | None:
    """The caller as E.164 (``+14155550100``), or ``None`` when it is not a phone number.

    Accepts E.164, and 10- or 11-digit North American numbers with or without
    punctuation (``(415) 555-0100``, ``1-415-555-0100``).
    """
    if caller is None or is_withheld(caller):
        return None
    text = caller.strip()
    digits = "".join(c for c in text if c.isdigit())
    if text.startswith("+"):
        return "+" + digits if 7 <= len(digits) <= 15 and digits[0] != "0" else None
    if len(digits) == 10:
        return "+1" + digits
    if len(digits) == 11 and digits[0] == "1":
        return "+" + digits
    return None


_NANP: Final = re.compile(r"\+1[2-9]\d{9}")
"""A North American number as :func:`normalize_number` writes it, with a valid first digit."""

GEO_CACHE_SIZE: Final = 65536
"""Callers whose geography is kept; the cache starts again empty when it is full."""

_Fields = tuple[str | None, str | None, str | None, str | None]
_UNKNOWN_FIELDS: Final[_Fields] = (None, None, None, None)
_geo_cache: dict[str | None, _Fields] = {}


def geo_for_number(caller: str | None) -> Geo:
    """The geography of ``caller`` (E.164 or a 10/11-digit NANP number), ``UNKNOWN`` if none.

    Looked up once per caller. The cache holds plain tuples of strings in a
    plain dict, which the garbage collector stops tracking: a server that has
    seen tens of thousands of callers would otherwise have every full
    collection walk them all, stalling calls in progress.
    """
    fields = _geo_cache.get(caller)
    if fields is None:
        geo = _look_up(caller)
        if len(_geo_cache) >= GEO_CACHE_SIZE:
            _geo_cache.clear()
        _geo_cache[caller] = (geo.country, geo.state, geo.area_code, geo.city)
        return geo
    return UNKNOWN if fields == _UNKNOWN_FIELDS else Geo(*fields)


def _look_up(caller: str | None) -> Geo:
    e164 = normalize_number(caller)
    if e164 is None:
        return UNKNOWN
    if _NANP.fullmatch(e164):
        # What parse makes of it, without its general parsing (a third of a lookup).
        number = PhoneNumber(country_code=1, national_number=int(e164[2:]))
        country, kind = _nanp_region_and_type(e164[2:])
    else:
        try:
            number = phonenumbers.parse(e164, None)
        except phonenumbers.NumberParseException:
            return UNKNOWN
        # A number is valid when it has a type in its own region (is_valid_number).
        kind = phonenumbers.number_type(number)
        country = phonenumbers.region_code_for_number(number)
    country_code = number.country_code
    if kind == PhoneNumberType.UNKNOWN or country is None or country_code is None:
        return UNKNOWN
    # The type says what geocoder.description_for_number would describe.
    if not phonenumbers.is_number_type_geographical(kind, country_code):
        description = geocoder.country_name_for_number(number, "en") or None
    elif country_code == 1:
        description = _nanp_place(e164) or geocoder.country_name_for_number(number, "en") or None
    else:
        description = geocoder.description_for_valid_number(number, "en") or None
    if country_code != 1:
        return Geo(country=country, city=description)
    area_code = phonenumbers.national_significant_number(number)[:3]
    if country in _US_TERRITORIES:
        state: str | None = country
    else:
        state = _state_of(description) or area_code_states().get(area_code)
    return Geo(country=country, state=state, area_code=area_code, city=description)


@cache
def _nanp_regions() -> tuple[tuple[str, PhoneMetadata, re.Pattern[str] | None], ...]:
    """The regions of country code 1 in libphonenumber's order, with their metadata."""
    regions = []
    for region in phonenumbers.COUNTRY_CODE_TO_REGION_CODE[1]:
        metadata = PhoneMetadata.metadata_for_region(region)
        if metadata is not None:
            leading = metadata.leading_digits
            regions.append((region, metadata, None if leading is None else re.compile(leading)))
    return tuple(regions)


def _nanp_region_and_type(national: str) -> tuple[str | None, int]:
    """The region and type of a ten-digit North American number, as libphonenumber finds them.

    ``region_code_for_number`` tries the regions in turn, by leading digits
    or by the number having a type there, and ``number_type`` does it again
    before typing the number in the region found; the geocoder then finds
    the region a third time. Here the type worked out while finding the
    region is kept: one pass over the region patterns instead of three or
    four, with the same answers (the tests compare it with the library's own
    calls on random numbers).
    """
    for region, metadata, leading in _nanp_regions():
        if leading is not None:
            if leading.match(national):
                return region, _number_type_helper(national, metadata)
        else:
            kind = _number_type_helper(national, metadata)
            if kind != PhoneNumberType.UNKNOWN:
                return region, kind
    return None, PhoneNumberType.UNKNOWN


def _nanp_place(e164: str) -> str | None:
    """The English place the geocoder's data names for the longest prefix of ``e164``.

    What ``geocoder.description_for_valid_number`` finds for a North
    American number (whose country has no mobile token), without finding
    its region again.
    """
    digits = e164[1:]
    for length in range(min(GEOCODE_LONGEST_PREFIX, len(digits)), 0, -1):
        names = GEOCODE_DATA.get(digits[:length])
        name = None if names is None else names.get("en")
        if name is not None:
            return str(name) or None
    return None


def _state_of(description: str | None) -> str | None:
    """The state code in a description such as ``"San Francisco, CA"`` or ``"Texas"``."""
    if not description:
        return None
    _, comma, suffix = description.rpartition(", ")
    if comma and suffix in _STATE_CODES:
        return suffix
    return _REGION_CODES.get(description)


@cache
def area_code_states() -> dict[str, str]:
    """NANP area codes of the US and Canada to their state or province, from the geocoder data.

    An area code whose own description spans several regions
    ("Nova Scotia/Prince Edward Island") takes the state named most often by
    its exchanges.
    """
    direct: dict[str, str] = {}
    votes: dict[str, Counter[str]] = {}
    for prefix, names in GEOCODE_DATA.items():
        if not (prefix.startswith("1") and len(prefix) >= 4):
            continue
        state = _state_of(names.get("en"))
        if state is None:
            continue
        area_code = prefix[1:4]
        if len(prefix) == 4:
            direct[area_code] = state
        else:
            votes.setdefault(area_code, Counter())[state] += 1
    for area_code, counter in votes.items():
        direct.setdefault(area_code, counter.most_common(1)[0][0])
    return direct


def enrich(attributes: CallAttributes) -> CallAttributes:
    """``attributes`` with country, state, area code and city filled from the caller when unknown.

    Values already set (by the traffic source or an IVR answer) are kept.
    """
    geo = geo_for_number(attributes.caller)
    if geo is UNKNOWN:
        return attributes
    known = (attributes.country, attributes.state, attributes.area_code, attributes.city)
    filled = (
        attributes.country or geo.country,
        attributes.state or geo.state,
        attributes.area_code or geo.area_code,
        attributes.city or geo.city,
    )
    if filled == known:
        # Already enriched (as when the call arrived, before routing): nothing to copy.
        return attributes
    country, state, area_code, city = filled
    return dataclasses.replace(
        attributes, country=country, state=state, area_code=area_code, city=city
    )
