"""Caps: limits on calls, connections, conversions and revenue per calendar period.

A cap counts one metric over one calendar period in the owner's time zone:

- ``calls``: calls offered to the buyer that it answered (declines included,
  since an agent or a voicemail box took them);
- ``connections``: calls the buyer accepted and was bridged to;
- ``conversions``: calls that converted (bridged time reached the buffer);
- ``revenue``: the revenue of converted calls.

Every metric is reserved when a buyer leg is dialed and settled when the
attempt's outcome is known: kept if the outcome counts for the metric, released
otherwise. Reservations count against the limit, so concurrent calls can never
overshoot a cap. Concurrency counts calls in progress; spacing is the least
time between two calls sent to the same owner.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal, NamedTuple
from zoneinfo import ZoneInfo

from pydantic import Field

from callwhisper.domain.base import Model, Money

CapMetric = Literal["calls", "connections", "conversions", "revenue"]
CapPeriod = Literal["hour", "day", "week", "month", "total"]
CAP_METRICS: tuple[CapMetric, ...] = ("calls", "connections", "conversions", "revenue")
CAP_PERIODS: tuple[CapPeriod, ...] = ("hour", "day", "week", "month", "total")
_PERIOD_WORDS: dict[CapPeriod, str] = {
    "hour": "hourly",
    "day": "daily",
    "week": "weekly",
    "month": "monthly",
    "total": "total",
}

Count = Annotated[int, Field(ge=0)]


class _PeriodLimits(Model):
    """What count and money limits share: one optional limit per calendar period."""

    def limits(self) -> Iterator[tuple[CapPeriod, Decimal]]:
        """The limits that are set, as (period, limit)."""
        for period in CAP_PERIODS:
            value = getattr(self, _PERIOD_WORDS[period])
            if value is not None:
                yield period, Decimal(value)


class CountLimits(_PeriodLimits):
    """Limits on a count per calendar period; a missing period is unlimited."""

    hourly: Count | None = Field(default=None, description="Limit per clock hour.")
    daily: Count | None = Field(default=None, description="Limit per calendar day.")
    weekly: Count | None = Field(default=None, description="Limit per ISO week (Monday first).")
    monthly: Count | None = Field(default=None, description="Limit per calendar month.")
    total: Count | None = Field(default=None, description="Limit over all time.")


class MoneyLimits(_PeriodLimits):
    """Limits on an amount of money per calendar period; a missing period is unlimited."""

    hourly: Money | None = Field(default=None, description="Limit per clock hour.")
    daily: Money | None = Field(default=None, description="Limit per calendar day.")
    weekly: Money | None = Field(default=None, description="Limit per ISO week (Monday first).")
    monthly: Money | None = Field(default=None, description="Limit per calendar month.")
    total: Money | None = Field(default=None, description="Limit over all time.")


class Caps(Model):
    """Every limit that applies to one owner (a buyer, a target, a route or a publisher)."""

    calls: CountLimits | None = Field(default=None, description="Answered calls per period.")
    connections: CountLimits | None = Field(
        default=None, description="Accepted (bridged) calls per period."
    )
    conversions: CountLimits | None = Field(default=None, description="Converted calls per period.")
    revenue: MoneyLimits | None = Field(default=None, description="Revenue per period.")
    concurrency: Count | None = Field(default=None, description="Most calls in progress at once.")
    spacing_seconds: Count | None = Field(
        default=None, description="Least seconds between two calls sent to this owner."
    )

    def limits(self) -> Iterator[tuple[CapMetric, CapPeriod, Decimal]]:
        """Every period limit that is set, as (metric, period, limit)."""
        for metric in CAP_METRICS:
            limits: _PeriodLimits | None = getattr(self, metric)
            if limits is not None:
                for period, limit in limits.limits():
                    yield metric, period, limit


class CapKey(NamedTuple):
    """One counter: an owner's metric in one calendar period (``period_key``).

    A named tuple rather than a dataclass: routing looks counters up by key
    for every target of every call, and a tuple hashes and compares in C.
    """

    owner: str
    metric: CapMetric
    period: CapPeriod
    period_key: str


@dataclass(frozen=True, slots=True)
class CapCharge:
    """A request to reserve ``amount`` on the counter ``key`` without passing ``limit``."""

    key: CapKey
    limit: Decimal
    amount: Decimal


def period_key(period: CapPeriod, now: datetime, timezone: str) -> str:
    """The calendar period containing ``now`` in ``timezone``, e.g. ``2026-W47`` for a week."""
    return _period_key(period, now.astimezone(ZoneInfo(timezone)))


def period_keys(now: datetime, timezone: str) -> tuple[str, ...]:
    """``period_key`` of every period, in ``CAP_PERIODS`` order, converting ``now`` once."""
    local = now.astimezone(ZoneInfo(timezone))
    return tuple(_period_key(period, local) for period in CAP_PERIODS)


def _period_key(period: CapPeriod, local: datetime) -> str:
    if period == "hour":
        return local.strftime("%Y-%m-%dT%H")
    if period == "day":
        return local.strftime("%Y-%m-%d")
    if period == "week":
        year, week, _ = local.isocalendar()
        return f"{year}-W{week:02d}"
    if period == "month":
        return local.strftime("%Y-%m")
    return "all"


def describe_cap(metric: CapMetric, period: CapPeriod, used: Decimal, limit: Decimal) -> str:
    """A reason such as ``daily calls cap 50/50``."""
    return f"{_PERIOD_WORDS[period]} {metric} cap {_number(used)}/{_number(limit)}"


def _number(value: Decimal) -> str:
    return format(value.normalize(), "f") if value == value.to_integral() else format(value, "f")


def metric_amount(metric: CapMetric, revenue: Decimal) -> Decimal:
    """How much one call reserves on ``metric``: one call, or its expected revenue."""
    return revenue if metric == "revenue" else Decimal(1)


def charges_for(
    owner: str, caps: Caps | None, now: datetime, timezone: str, revenue: Decimal
) -> list[CapCharge]:
    """The counters one dialed call reserves against the caps of ``owner``."""
    if caps is None:
        return []
    return [
        CapCharge(
            CapKey(owner, metric, period, period_key(period, now, timezone)),
            limit,
            metric_amount(metric, revenue),
        )
        for metric, period, limit in caps.limits()
    ]
