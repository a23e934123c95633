"""Whisper variables in the form a speech engine reads correctly.

The flow fills a whisper template with :func:`callwhisper.flow.template.call_variables`;
:func:`spoken_variables` turns those values into speech-friendly text
(call-flow 7), so that the buyer hears "California", not "ka":

- ``caller_state``: the state or province name (``CA`` -> California);
- ``caller_city``: a trailing state code spelled out
  (``San Francisco, CA`` -> San Francisco, California);
- ``caller_zip``: character by character (``94105`` -> 9 4 1 0 5);
- ``area_code``: digit by digit (``415`` -> 4 1 5);
- any other value (call tags, IVR answers) by its shape: an amount with a
  dollar sign in words a TTS engine reads right (``$25.50`` -> 25 dollars and
  50 cents), a phone number digit by digit in its groups, and a run of five
  or more digits (an account or policy number) digit by digit.

A value that does not have the expected shape is spoken as it is: a whisper
never fails a call.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from decimal import Decimal
from functools import cache
from typing import Final

from callwhisper.audio.speech import (
    region_name,
    say_amount,
    say_digits,
    say_phone_number,
    say_zip_code,
)
from callwhisper.domain.call import CallAttributes
from callwhisper.domain.whisper import WhisperConfig
from callwhisper.flow.offers import Offer
from callwhisper.flow.settings import FlowSettings
from callwhisper.flow.template import call_variables

_AMOUNT: Final = re.compile(r"-?\$\s*-?[\d,]*\.?\d+")
_PHONE: Final = re.compile(r"\+?[\d\s().-]{7,}")
_CITY_STATE: Final = re.compile(r"(.+),\s*([A-Za-z]{2})")


def _city(value: str) -> str:
    match = _CITY_STATE.fullmatch(value.strip())
    if match is None:
        return value
    return f"{match[1]}, {region_name(match[2])}"


_BY_NAME: Final[Mapping[str, Callable[[str], str]]] = {
    "caller_state": region_name,
    "caller_city": _city,
    "caller_zip": say_zip_code,
    "area_code": say_digits,
}


def speak_value(name: str, value: str) -> str:
    """The spoken form of the variable ``name`` whose value is ``value``."""
    try:
        formatter = _BY_NAME.get(name)
        if formatter is not None:
            return formatter(value)
        return _by_shape(value)
    except ValueError:
        # Not the shape we took it for: the engine reads it as written.
        return value


def _by_shape(value: str) -> str:
    text = value.strip()
    if _AMOUNT.fullmatch(text):
        return say_amount(text)
    digit_count = sum(c.isdigit() for c in text)
    if text.isdigit() and digit_count >= 5:
        if digit_count in (10, 11):
            return _phone_or_digits(text)
        return say_digits(text)
    if _PHONE.fullmatch(text) and (text.startswith("+") or 10 <= digit_count <= 15):
        return say_phone_number(text)
    return value


def _phone_or_digits(digits: str) -> str:
    try:
        return say_phone_number(digits)
    except ValueError:
        return say_digits(digits)


def spoken_variables(variables: Mapping[str, str]) -> dict[str, str]:
    """``variables`` (as the flow builds them) with every value in its spoken form."""
    return {name: speak_value(name, value) for name, value in variables.items()}


@cache
def builtin_variables() -> frozenset[str]:
    """The names the flow itself gives every call (``campaign``, ``caller_state``...).

    Asked of :func:`~callwhisper.flow.template.call_variables` with every
    attribute set, so the linter knows exactly the names the live call has.
    """
    settings = FlowSettings(campaign_id="c", campaign_name="c", publisher_name="p")
    attributes = CallAttributes(
        campaign_id="c",
        dialed="d",
        caller="+1",
        state="s",
        area_code="a",
        zip_code="z",
        city="c",
        country="US",
    )
    offer = Offer(
        buyer_id="b",
        destination="d",
        whisper=WhisperConfig(text="t"),
        revenue=Decimal(0),
        buffer_seconds=0,
    )
    return frozenset(call_variables(settings, attributes, offer))
