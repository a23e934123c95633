"""Shared building blocks of the domain model: the frozen base model and value types."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, ConfigDict, Field


class Model(BaseModel):
    """Base of every configuration object: immutable, and unknown fields are errors."""

    model_config = ConfigDict(frozen=True, extra="forbid")


def _check_timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}") from None
    return name


def _check_identifier(value: str) -> str:
    if not _IDENTIFIER.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a valid id (letters, digits, '_', '-' and '.', "
            "starting with a letter or digit, at most 64 characters)"
        )
    return value


def _check_destination(value: str) -> str:
    if value.startswith(("sip:", "sips:")):
        if "@" not in value and len(value) < 6:
            raise ValueError(f"{value!r} is not a SIP URI")
        return value
    if _E164.fullmatch(value):
        return value
    raise ValueError(
        f"{value!r} is neither a SIP URI (sip:user@host) nor an E.164 number (+15551234567)"
    )


_IDENTIFIER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")
_E164 = re.compile(r"\+[1-9][0-9]{6,14}")

TimeZoneName = Annotated[str, AfterValidator(_check_timezone)]
"""An IANA time zone name such as ``America/New_York``."""

Identifier = Annotated[str, AfterValidator(_check_identifier)]
"""A stable, human-chosen id used to refer to objects across the configuration."""

Destination = Annotated[str, AfterValidator(_check_destination)]
"""Where a buyer leg is sent: a SIP URI or an E.164 number."""

Money = Annotated[Decimal, Field(ge=0, max_digits=14, decimal_places=4)]
"""An amount of money in the operator's currency, never negative."""

Seconds = Annotated[int, Field(ge=0)]
PositiveSeconds = Annotated[int, Field(gt=0)]
