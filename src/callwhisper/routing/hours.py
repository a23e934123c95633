"""Schedules compiled to minutes, so a routing decision never parses a time range.

``Hours`` answers the same questions as ``Schedule.is_open`` and
``Schedule.closed_reason``, with the same words, from spans computed once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from callwhisper.domain import Schedule
from callwhisper.domain.schedule import WEEKDAYS, parse_time_range

_MINUTES_PER_DAY = 24 * 60
_DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
# As Schedule: a year and a week covers every closed date a year ahead plus a full week.
_LOOKAHEAD_DAYS = 372

Span = tuple[int, int]


@dataclass(frozen=True, slots=True)
class Hours:
    """A schedule in minutes since local midnight, per weekday (Monday first).

    ``own[d]`` are the spans a weekday opens itself; ``spill[d]`` the part of
    the previous weekday's overnight ranges that runs into weekday ``d``.
    ``both[d]`` is their sorted union, for days when no closed date interferes.
    """

    timezone_name: str
    timezone: ZoneInfo
    own: tuple[tuple[Span, ...], ...]
    spill: tuple[tuple[Span, ...], ...]
    both: tuple[tuple[Span, ...], ...]
    closed_dates: frozenset[date]

    @classmethod
    def compile(cls, schedule: Schedule, default_timezone: str) -> Hours:
        """Compile ``schedule``; ``default_timezone`` applies when it names none."""
        own: list[list[Span]] = [[] for _ in WEEKDAYS]
        spill: list[list[Span]] = [[] for _ in WEEKDAYS]
        if schedule.hours is None:
            own = [[(0, _MINUTES_PER_DAY)] for _ in WEEKDAYS]
        else:
            for day, ranges in schedule.hours.items():
                weekday = WEEKDAYS.index(day)
                for text in ranges:
                    start, end = parse_time_range(text)
                    if end > start:
                        own[weekday].append((start, end))
                    else:
                        own[weekday].append((start, _MINUTES_PER_DAY))
                        spill[(weekday + 1) % 7].append((0, end))
        name = schedule.timezone or default_timezone
        return cls(
            timezone_name=name,
            timezone=ZoneInfo(name),
            own=tuple(tuple(sorted(spans)) for spans in own),
            spill=tuple(tuple(sorted(spans)) for spans in spill),
            both=tuple(tuple(sorted(a + b)) for a, b in zip(own, spill, strict=True)),
            closed_dates=frozenset(schedule.closed_dates),
        )

    def spans(self, day: date) -> tuple[Span, ...]:
        """Open spans of the local ``day``, including spill-over from the day before."""
        weekday = day.weekday()
        if not self.closed_dates:
            return self.both[weekday]
        spans: list[Span] = []
        if day not in self.closed_dates:
            spans += self.own[weekday]
        if day - timedelta(days=1) not in self.closed_dates:
            spans += self.spill[weekday]
        return tuple(sorted(spans))

    def closed_reason_local(self, local: datetime) -> str | None:
        """``None`` when open at ``local``, else ``closed until Mon 09:00 America/New_York``."""
        minute = local.hour * 60 + local.minute
        today = local.date()
        for offset in range(_LOOKAHEAD_DAYS):
            day = today + timedelta(days=offset)
            for start, end in self.spans(day):
                if offset == 0:
                    if start <= minute < end:
                        return None
                    if start <= minute:
                        continue
                return f"closed until {_when(today, day, start)} {self.timezone_name}"
        return "closed: no opening hours"

    def closed_reason(self, now: datetime) -> str | None:
        """``None`` when open at the aware ``now``, else why it is closed."""
        return self.closed_reason_local(now.astimezone(self.timezone))


def _when(today: date, day: date, start: int) -> str:
    clock = f"{start // 60:02d}:{start % 60:02d}"
    if day == today:
        return clock
    if (day - today).days >= 7:
        return f"{day.isoformat()} {clock}"
    return f"{_DAY_NAMES[day.weekday()]} {clock}"
