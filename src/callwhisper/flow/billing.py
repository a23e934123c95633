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
    increments = (duration / increment_seconds).to_integral_value(rounding=ROUND_CEILING)
    return max(1, int(increments)) * increment_seconds


_NOTHING = Decimal(0).quantize(_MONEY_PLACES)


def leg_cost(
    answered_at: float | None, ended_at: float, per_minute: Decimal, increment_seconds: int
) -> Decimal:
    """What a leg costs (call-flow 18): nothing unanswered, else billed time at ``per_minute``."""
    if answered_at is None:
        return _NOTHING
    # billed_seconds on whole milliseconds: the increments a duration takes, rounded up.
    milliseconds = _milliseconds(answered_at, ended_at)
    billed = max(1, -(-milliseconds // (1000 * increment_seconds))) * increment_seconds
    return (per_minute * billed / 60).quantize(_MONEY_PLACES, rounding=ROUND_HALF_UP)
