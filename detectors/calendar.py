"""Public holidays: a holiday has the traffic of a Sunday, not of a weekday.

``holidays("FR")`` gives the French public holidays (fixed dates and the
Easter-based ones: Easter Monday, Ascension, Whit Monday) of any year.

>>> from datetime import date
>>> is_holiday(date(2021, 4, 5), "FR"), is_holiday(date(2021, 4, 6), "FR")
(True, False)
"""

from __future__ import annotations

from datetime import date, timedelta
from functools import lru_cache

__all__ = ["easter", "holidays", "is_holiday", "CALENDARS"]

CALENDARS = ("none", "FR")


def easter(year: int) -> date:
    """Gregorian Easter Sunday (the anonymous Gregorian computus)."""
    a = year % 19
    b, c = divmod(year, 100)
    d, e = divmod(b, 4)
    f = (b + 8) // 25
    g = (b - f + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = divmod(c, 4)
    l_ = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * l_) // 451
    month, day = divmod(h + l_ - 7 * m + 114, 31)
    return date(year, month, day + 1)


@lru_cache(maxsize=64)
def holidays(calendar: str, year: int) -> frozenset[date]:
    if calendar == "none":
        return frozenset()
    if calendar != "FR":
        raise ValueError(f"unknown holiday calendar {calendar!r} (known: {', '.join(CALENDARS)})")
    e = easter(year)
    fixed = [(1, 1), (5, 1), (5, 8), (7, 14), (8, 15), (11, 1), (11, 11), (12, 25)]
    return frozenset([date(year, m, d) for m, d in fixed] + [e + timedelta(days=n) for n in (1, 39, 50)])


def is_holiday(d: date, calendar: str, extra: frozenset[date] = frozenset()) -> bool:
    return d in extra or d in holidays(calendar, d.year)
