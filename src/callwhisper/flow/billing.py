"""Money: telephony cost per answered leg, and the conversion clock.

Durations are counted in milliseconds so that float timestamps never tip a
comparison (``90.0`` bridged seconds always reach a 90 s buffer).
"""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal

_MONEY_PLACES = Decimal("0.0001")
"""Amounts of money are kept to four decimal places, like the domain's ``Money``."""


def _milliseconds(start: float, end: float) -> int:
    return round((end - start) * 1000)


def elapsed(start: float, end: float) -> Decimal:
    """Seconds from ``start`` to ``end``, to the millisecond."""
    return Decimal(_milliseconds(start, end)).scaleb(-3)


def billed_seconds(duration: Decimal, increment_seconds: int) -> int:
    """Seconds billed for an answered leg: rounded up to the increment, one increment at least."""
    milliseconds = int((duration * 1000).to_integral_value(rounding=ROUND_CEILING))
    return _billed(milliseconds, increment_seconds)


def _billed(milliseconds: int, increment_seconds: int) -> int:
    """:func:`billed_seconds` of a whole number of milliseconds, in integers.

    Rounding the milliseconds up first changes nothing: an increment is a
    whole number of milliseconds.
    """
    increments = -(-milliseconds // (1000 * increment_seconds))
    return max(1, increments) * increment_seconds


_NOTHING = Decimal(0).quantize(_MONEY_PLACES)


def leg_cost(
    answered_at: float | None, ended_at: float, per_minute: Decimal, increment_seconds: int
) -> Decimal:
    """What a leg costs (call-flow 18): nothing unanswered, else billed time at ``per_minute``."""
    if answered_at is None:
        return _NOTHING
    billed = _billed(_milliseconds(answered_at, ended_at), increment_seconds)
    return (per_minute * billed / 60).quantize(_MONEY_PLACES, rounding=ROUND_HALF_UP)
