"""Time intervals (Alertmanager's ``time_intervals``): when a route is muted or active.

A :class:`TimeRange` is a set of times of day, weekdays, days of the month,
months and years, read in a time zone (``location``, UTC by default). A
field left out matches everything; a time is in the range when every field
matches. A named interval is a list of ranges: a time is in it when it is in
any of them.

>>> r = TimeRange.parse({"weekdays": ["monday:friday"],
...                      "times": [{"start_time": "09:00", "end_time": "17:00"}],
...                      "location": "Europe/Paris"})
>>> r.contains(1617696240.0)  # Tuesday 2021-04-06 10:04 in Paris
True
>>> r.contains(1617523440.0)  # Sunday
False
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["TimeRange", "in_any"]

_WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
_MONTHS = [
    "january", "february", "march", "april", "may", "june",
    "july", "august", "september", "october", "november", "december",
]
_FIELDS = ("times", "weekdays", "days_of_month", "months", "years", "location")


def _minutes(text: Any, what: str) -> int:
    if not isinstance(text, str) or len(text.split(":")) != 2:
        raise ValueError(f"{what} {text!r} is not a time of day (use HH:MM)")
    h, m = text.split(":")
    if not (h.isdigit() and m.isdigit() and len(m) == 2):
        raise ValueError(f"{what} {text!r} is not a time of day (use HH:MM)")
    hours, minutes = int(h), int(m)
    if not (0 <= hours <= 24 and 0 <= minutes < 60) or (hours == 24 and minutes):
        raise ValueError(f"{what} {text!r} is out of range (00:00 to 24:00)")
    return hours * 60 + minutes


def _ranges(items: Any, field: str, names: list[str] | None, lo: int, hi: int) -> tuple[tuple[int, int], ...]:
    """Parse ``["monday:friday", "sunday"]`` or ``["1:5", -1]`` into inclusive ranges."""
    if not isinstance(items, list):
        raise ValueError(f"{field} must be a list")

    def one(x: Any) -> int:
        s = str(x).strip().lower()
        if names is not None and s in names:
            return names.index(s) + lo
        try:
            v = int(s)
        except ValueError:
            allowed = f" or a name ({names[0]}..{names[-1]})" if names else ""
            raise ValueError(f"{field}: {x!r} is not a number{allowed}") from None
        if field == "days_of_month":
            if v == 0 or not (-31 <= v <= 31):
                raise ValueError(f"{field}: {x!r} is out of range (1 to 31, or -31 to -1 from the end)")
        elif not (lo <= v <= hi):
            raise ValueError(f"{field}: {x!r} is out of range ({lo} to {hi})")
        return v

    out = []
    for item in items:
        parts = str(item).split(":")
        if len(parts) == 1:
            a = b = one(parts[0])
        elif len(parts) == 2:
            a, b = one(parts[0]), one(parts[1])
        else:
            raise ValueError(f"{field}: {item!r} is not a value or a range (a:b)")
        if (a > 0) == (b > 0) and a > b:
            raise ValueError(f"{field}: {item!r} ends before it starts")
        out.append((a, b))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class TimeRange:
    """One entry of a named time interval; see the module docstring."""

    times: tuple[tuple[int, int], ...] = ()  # minutes of the day, [start, end)
    weekdays: tuple[tuple[int, int], ...] = ()  # 0 = Monday
    days_of_month: tuple[tuple[int, int], ...] = ()
    months: tuple[tuple[int, int], ...] = ()  # 1 = January
    years: tuple[tuple[int, int], ...] = ()
    location: str = "UTC"

    @classmethod
    def parse(cls, v: Any) -> TimeRange:
        if isinstance(v, TimeRange):
            return v
        if not isinstance(v, dict):
            raise ValueError("a time interval is a mapping of times, weekdays, days_of_month, months, years, location")
        unknown = set(v) - set(_FIELDS)
        if unknown:
            raise ValueError(f"unknown field(s) {', '.join(sorted(unknown))} (have: {', '.join(_FIELDS)})")
        times = []
        for t in v.get("times") or []:
            if not isinstance(t, dict) or set(t) != {"start_time", "end_time"}:
                raise ValueError("times: each entry needs start_time and end_time (HH:MM)")
            start, end = _minutes(t["start_time"], "start_time"), _minutes(t["end_time"], "end_time")
            if end <= start:
                raise ValueError(f"times: end_time {t['end_time']} is not after start_time {t['start_time']}")
            times.append((start, end))
        location = v.get("location") or "UTC"
        try:
            ZoneInfo(str(location))
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"location: unknown time zone {location!r} (use an IANA name like Europe/Paris)") from None
        return cls(
            times=tuple(times),
            weekdays=_ranges(v.get("weekdays") or [], "weekdays", _WEEKDAYS, 0, 6),
            days_of_month=_ranges(v.get("days_of_month") or [], "days_of_month", None, 1, 31),
            months=_ranges(v.get("months") or [], "months", _MONTHS, 1, 12),
            years=_ranges(v.get("years") or [], "years", None, 1, 9999),
            location=str(location),
        )

    def contains(self, ts: float) -> bool:
        """Is epoch second ``ts`` in this range (read in ``location``)?"""
        dt = datetime.fromtimestamp(ts, ZoneInfo(self.location))
        if self.times:
            minute = dt.hour * 60 + dt.minute
            if not any(a <= minute < b for a, b in self.times):
                return False
        if self.weekdays and not any(a <= dt.weekday() <= b for a, b in self.weekdays):
            return False
        if self.days_of_month:
            last = _days_in_month(dt.year, dt.month)

            def day(v: int) -> int:
                return v if v > 0 else last + 1 + v

            if not any(day(a) <= dt.day <= day(b) for a, b in self.days_of_month):
                return False
        if self.months and not any(a <= dt.month <= b for a, b in self.months):
            return False
        return not self.years or any(a <= dt.year <= b for a, b in self.years)


def _days_in_month(year: int, month: int) -> int:
    nxt = datetime(year + month // 12, month % 12 + 1, 1)
    return (nxt - datetime(year, month, 1)).days


def in_any(ranges: Iterable[TimeRange], ts: float) -> bool:
    """Is ``ts`` in any of ``ranges``?"""
    return any(r.contains(ts) for r in ranges)
