"""Schedules compiled to minutes of the week, so a routing decision never parses a time range.

``Hours`` answers what ``Schedule.closed_reason`` answers, with the same
words: open spans are laid out once as sorted intervals over the week, and
one binary search tells whether a minute is open and when the next opening
is. Closed dates only change the days they touch, so a day-by-day search
(as ``Schedule`` does it) is left for when one of those days is involved.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from callwhisper.domain import Schedule
from callwhisper.domain.schedule import WEEKDAYS, parse_time_range

_MINUTES_PER_DAY = 24 * 60
_MINUTES_PER_WEEK = 7 * _MINUTES_PER_DAY
_DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
# As Schedule: a year and a week covers every closed date a year ahead plus a full week.
_LOOKAHEAD_DAYS = 372
_ONE_DAY = timedelta(days=1)
_ONE_MINUTE = timedelta(minutes=1)
_TICK = timedelta(microseconds=1)

Span = tuple[int, int]


@dataclass(frozen=True, slots=True)
class Hours:
    """A schedule in minutes since local midnight, in its time zone.

    ``own[d]`` are the spans weekday ``d`` (Monday first) opens itself;
    ``spill[d]`` the part of the previous weekday's overnight ranges that runs
    into ``d``. ``starts``/``ends`` are both, merged, as minutes of the week.
    ``affected`` are the ordinals of the days a closed date changes: the date
    itself and the day after (whose spill-over it cancels), sorted.
    """

    timezone_name: str
    timezone: ZoneInfo
    own: tuple[tuple[Span, ...], ...]
    spill: tuple[tuple[Span, ...], ...]
    starts: tuple[int, ...]
    ends: tuple[int, ...]
    closed_dates: frozenset[date]
    affected: tuple[int, ...]
    # The latest answer and the instants it holds for, in UTC: (first, end, answer).
    # Answers only change when the schedule opens or closes, or the day changes.
    _latest: list[tuple[datetime, datetime, str | None]] = field(
        default_factory=list, compare=False, repr=False
    )

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
        week = sorted(
            (weekday * _MINUTES_PER_DAY + start, weekday * _MINUTES_PER_DAY + end)
            for weekday in range(7)
            for start, end in own[weekday] + spill[weekday]
        )
        merged: list[list[int]] = []
        for start, end in week:
            if merged and start <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([start, end])
        name = schedule.timezone or default_timezone
        return cls(
            timezone_name=name,
            timezone=ZoneInfo(name),
            own=tuple(tuple(sorted(spans)) for spans in own),
            spill=tuple(tuple(sorted(spans)) for spans in spill),
            starts=tuple(start for start, _ in merged),
            ends=tuple(end for _, end in merged),
            closed_dates=frozenset(schedule.closed_dates),
            affected=tuple(
                sorted(
                    {day.toordinal() for day in schedule.closed_dates}
                    | {day.toordinal() + 1 for day in schedule.closed_dates}
                )
            ),
        )

    def closed_reason(self, now: datetime) -> str | None:
        """``None`` when open at the aware ``now``, else ``closed until Mon 09:00 <zone>``.

        The answer is kept with the instants it holds for, so that asking
        again before the schedule opens or closes converts no time zone.
        """
        if self._latest:
            first, end, answer = self._latest[0]
            if first <= now < end:
                return answer
        local = now.astimezone(self.timezone)
        minute = local.hour * 60 + local.minute
        answer, first_minute, end_minute = self.closed_reason_span(local.date(), minute)
        # The instants of those minutes of the local day, while the offset from UTC holds.
        this_minute = now.astimezone(UTC) - timedelta(
            seconds=local.second, microseconds=local.microsecond
        )
        first = this_minute - timedelta(minutes=minute - first_minute)
        end = this_minute + timedelta(minutes=end_minute - minute)
        offset = local.utcoffset()
        if (
            first.astimezone(self.timezone).utcoffset() != offset
            or (end - _TICK).astimezone(self.timezone).utcoffset() != offset
        ):
            # The clocks change within those minutes: the answer holds for this minute only.
            first, end = this_minute, this_minute + _ONE_MINUTE
        self._latest[:] = [(first, end, answer)]
        return answer

    def closed_reason_span(self, today: date, minute: int) -> tuple[str | None, int, int]:
        """Why closed at ``minute`` past midnight of the local ``today`` (``None``: open).

        Also returns the minutes [first, end) of ``today`` that get the same
        answer. Within an open span, or between a closing and the next opening, on the
        same day, every minute gets the same words. When a closed date is
        involved the answer is worked out day by day and holds for ``minute``.
        """
        starts = self.starts
        if not starts:
            # Closed dates only close more: a week that never opens never will.
            return "closed: no opening hours", 0, _MINUTES_PER_DAY
        day_start = today.weekday() * _MINUTES_PER_DAY
        week_minute = day_start + minute
        index = bisect_right(starts, week_minute) - 1
        is_open = index >= 0 and week_minute < self.ends[index]
        if is_open:
            low, high = starts[index], self.ends[index]
            opening = week_minute
        else:
            low = self.ends[index] if index >= 0 else 0
            index += 1
            opening = starts[index] if index < len(starts) else starts[0] + _MINUTES_PER_WEEK
            high = opening
        offset = opening // _MINUTES_PER_DAY - week_minute // _MINUTES_PER_DAY
        if self.affected:
            first = today.toordinal()
            position = bisect_left(self.affected, first)
            if position < len(self.affected) and self.affected[position] <= first + offset:
                return self._closed_reason_by_date(today, minute), minute, minute + 1
        span = max(low - day_start, 0), min(high - day_start, _MINUTES_PER_DAY)
        if is_open:
            return None, *span
        when = _when(today, offset, opening % _MINUTES_PER_DAY)
        return f"closed until {when} {self.timezone_name}", *span

    def _spans(self, day: date) -> list[Span]:
        """Open spans of the local ``day``, including spill-over from the day before."""
        weekday = day.weekday()
        spans: list[Span] = []
        if day not in self.closed_dates:
            spans += self.own[weekday]
        if day - _ONE_DAY not in self.closed_dates:
            spans += self.spill[weekday]
        return sorted(spans)

    def _closed_reason_by_date(self, today: date, minute: int) -> str | None:
        """The answer worked out day by day, for when a closed date is involved."""
        for offset in range(_LOOKAHEAD_DAYS):
            for start, end in self._spans(today + timedelta(days=offset)):
                if offset == 0:
                    if start <= minute < end:
                        return None
                    if start <= minute:
                        continue
                return f"closed until {_when(today, offset, start)} {self.timezone_name}"
        return "closed: no opening hours"


def _when(today: date, offset: int, start: int) -> str:
    clock = f"{start // 60:02d}:{start % 60:02d}"
    if offset == 0:
        return clock
    if offset >= 7:
        return f"{(today + timedelta(days=offset)).isoformat()} {clock}"
    return f"{_DAY_NAMES[(today.weekday() + offset) % 7]} {clock}"
