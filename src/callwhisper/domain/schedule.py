"""Hours of operation: weekly opening hours with breaks, in a time zone, with closed dates."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from itertools import pairwise
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import Field, field_validator, model_validator

from callwhisper.domain.base import Model, TimeZoneName

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MINUTES_PER_DAY = 24 * 60


def parse_time_range(text: str) -> tuple[int, int]:
    """Parse ``"HH:MM-HH:MM"`` into minutes since midnight; ``24:00`` may end a range."""
    start_text, sep, end_text = text.partition("-")
    if not sep:
        raise ValueError(f"{text!r} is not a time range like '09:00-17:00'")
    start = _parse_clock(start_text.strip(), allow_midnight_end=False)
    end = _parse_clock(end_text.strip(), allow_midnight_end=True)
    if start == end:
        raise ValueError(f"{text!r} is empty (start equals end)")
    return start, end


def _parse_clock(text: str, *, allow_midnight_end: bool) -> int:
    hours, sep, minutes = text.partition(":")
    if not (sep and hours.isdigit() and minutes.isdigit() and len(minutes) == 2):
        raise ValueError(f"{text!r} is not a time like '09:30'")
    h, m = int(hours), int(minutes)
    if allow_midnight_end and (h, m) == (24, 0):
        return _MINUTES_PER_DAY
    if not (0 <= h <= 23 and 0 <= m <= 59):
        raise ValueError(f"{text!r} is not a time of day")
    return h * 60 + m


class Schedule(Model):
    """When a buyer or target takes calls.

    ``hours`` maps weekdays to opening ranges such as ``"09:00-12:00"``; several
    ranges make breaks, a day that is not listed is closed. Without ``hours`` the
    schedule is always open (closed dates still apply). A range that ends before
    it starts (``"22:00-02:00"``) runs past midnight and needs ``overnight: true``.
    """

    timezone: TimeZoneName | None = Field(
        default=None, description="Time zone of the hours; defaults to the owner's time zone."
    )
    hours: dict[Weekday, list[str]] | None = Field(
        default=None, description="Opening ranges per weekday; a missing day is closed."
    )
    closed_dates: list[date] = Field(
        default_factory=list, description="Dates (in the schedule's time zone) closed all day."
    )
    overnight: bool = Field(
        default=False, description="Allow ranges that end after midnight, such as 22:00-02:00."
    )

    @field_validator("hours")
    @classmethod
    def _ranges_parse(
        cls, hours: dict[Weekday, list[str]] | None
    ) -> dict[Weekday, list[str]] | None:
        if hours is not None:
            for ranges in hours.values():
                for text in ranges:
                    parse_time_range(text)
        return hours

    @model_validator(mode="after")
    def _ranges_consistent(self) -> Schedule:
        for day, ranges in (self.hours or {}).items():
            spans: list[tuple[int, int]] = []
            for text in ranges:
                start, end = parse_time_range(text)
                if end < start:
                    if not self.overnight:
                        raise ValueError(
                            f"hours.{day}: {text!r} ends before it starts; "
                            "set overnight: true for ranges past midnight"
                        )
                    end = _MINUTES_PER_DAY
                spans.append((start, end))
            spans.sort()
            for (_, prev_end), (next_start, _) in pairwise(spans):
                if next_start < prev_end:
                    raise ValueError(f"hours.{day}: ranges overlap ({', '.join(ranges)})")
        return self

    def is_open(self, now: datetime, default_timezone: str) -> bool:
        """Whether the schedule is open at the aware datetime ``now``."""
        return self._open_at(now.astimezone(ZoneInfo(self.timezone or default_timezone)))

    def closed_reason(self, now: datetime, default_timezone: str) -> str | None:
        """``None`` when open, else why: ``closed until Mon 09:00 America/New_York``."""
        tz_name = self.timezone or default_timezone
        local = now.astimezone(ZoneInfo(tz_name))
        if self._open_at(local):
            return None
        opening = self._next_opening(local)
        if opening is None:
            return "closed: no opening hours"
        when = opening.strftime("%H:%M")
        if opening.date() != local.date():
            when = f"{_DAY_NAMES[opening.weekday()]} {when}"
            if (opening.date() - local.date()).days >= 7:
                when = f"{opening.date().isoformat()} {opening.strftime('%H:%M')}"
        return f"closed until {when} {tz_name}"

    def _spans(self, day: date) -> list[tuple[int, int]]:
        """Open spans of the local ``day`` in minutes, including spill-over from the day before."""
        if self.hours is None:
            return [] if day in self.closed_dates else [(0, _MINUTES_PER_DAY)]
        spans: list[tuple[int, int]] = []
        if day not in self.closed_dates:
            for text in self.hours.get(WEEKDAYS[day.weekday()], []):
                start, end = parse_time_range(text)
                spans.append((start, end if end > start else _MINUTES_PER_DAY))
        previous = day - timedelta(days=1)
        if previous not in self.closed_dates:
            for text in self.hours.get(WEEKDAYS[previous.weekday()], []):
                start, end = parse_time_range(text)
                if end < start:
                    spans.append((0, end))
        return sorted(spans)

    def _open_at(self, local: datetime) -> bool:
        minute = local.hour * 60 + local.minute
        return any(start <= minute < end for start, end in self._spans(local.date()))

    def _next_opening(self, local: datetime) -> datetime | None:
        minute = local.hour * 60 + local.minute
        # A year and a week covers every closed date a year ahead plus a full week.
        for offset in range(372):
            day = local.date() + timedelta(days=offset)
            for start, _end in self._spans(day):
                if offset == 0 and start <= minute:
                    continue
                return datetime(day.year, day.month, day.day, tzinfo=local.tzinfo) + timedelta(
                    minutes=start
                )
        return None
