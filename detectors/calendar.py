"""Holiday calendars: which days have the traffic of a Sunday, which of a school holiday.

A calendar is named by one string, ``COUNTRY[-SUBDIVISION][+school-ZONE]``:

- ``COUNTRY`` is an ISO 3166-1 alpha-2 code known to the ``holidays``
  package (``FR``, ``DE``, ``US``...); its public holidays are learned and
  scored as Sundays.
- ``-SUBDIVISION`` adds a region's own public holidays, as ``holidays`` names
  it: ``FR-57`` (Moselle) and ``FR-6AE`` (Alsace) add Good Friday and
  26 December to the national ones.
- ``+school-ZONE`` adds the school holidays of that zone (``FR``: ``A``,
  ``B`` or ``C``; the ``holidays`` package's school category, drawn from the
  Education ministry's calendar decrees for the school years 2017-2018 to
  2027-2028 and by its rules after that); a weekday in school holidays is a
  day type of its own (school platforms see a fraction of term-time traffic).
- ``none``: no holidays at all.

>>> from datetime import date
>>> is_holiday(date(2021, 4, 5), "FR"), is_holiday(date(2021, 4, 2), "FR"), is_holiday(date(2021, 4, 2), "FR-57")
(True, False, True)
>>> [day_kind(date(2021, 4, d), "FR+school-B") for d in (5, 6, 12)]  # Easter Monday, a school day, a holiday
[1, 0, 2]
"""

from __future__ import annotations

import re
from datetime import date
from functools import lru_cache

import holidays as holidays_pkg

__all__ = [
    "ORDINARY",
    "PUBLIC_HOLIDAY",
    "SCHOOL_HOLIDAY",
    "CalendarSpec",
    "day_kind",
    "holidays",
    "is_holiday",
    "parse_calendar",
    "school_holidays",
]

#: What :func:`day_kind` says of a day.
ORDINARY = 0
PUBLIC_HOLIDAY = 1
SCHOOL_HOLIDAY = 2

_SPEC = re.compile(r"(?P<country>[A-Z]{2})(?:-(?P<subdiv>[0-9A-Z]{1,4}))?(?:\+school-(?P<zone>[0-9A-Z]{1,4}))?")

# ``holidays`` names the French school zones "Zone A".."Zone C".
_SCHOOL_SUBDIV_FORMAT: dict[str, str] = {"FR": "Zone {}"}


class CalendarSpec:
    """A parsed calendar name: country, subdivision (or ""), school zone (or "")."""

    __slots__ = ("country", "subdiv", "school_zone")

    def __init__(self, country: str, subdiv: str, school_zone: str) -> None:
        self.country = country
        self.subdiv = subdiv
        self.school_zone = school_zone

    def __repr__(self) -> str:
        return f"CalendarSpec({self.country!r}, {self.subdiv!r}, {self.school_zone!r})"


@lru_cache(maxsize=32)
def parse_calendar(calendar: str) -> CalendarSpec | None:
    """Check a calendar name; None for ``none``. Raises ValueError saying what is wrong.

    >>> parse_calendar("FR-57+school-B")
    CalendarSpec('FR', '57', 'B')
    >>> parse_calendar("FR-99")
    Traceback (most recent call last):
    ...
    ValueError: holiday calendar 'FR-99': FR has no subdivision '99' (known: 57, 6AE, 971, ...)
    """
    if calendar == "none":
        return None
    m = _SPEC.fullmatch(calendar)
    if m is None:
        raise ValueError(
            f"holiday calendar {calendar!r}: expected none or COUNTRY[-SUBDIVISION][+school-ZONE], "
            "e.g. FR, FR-57, FR+school-B")
    country, subdiv, zone = m.group("country"), m.group("subdiv") or "", m.group("zone") or ""
    known: dict = holidays_pkg.list_supported_countries()
    if country not in known:
        raise ValueError(f"holiday calendar {calendar!r}: the holidays package has no country {country!r}")
    subdivs = [str(s) for s in known[country]]
    if subdiv and subdiv not in subdivs:
        raise ValueError(f"holiday calendar {calendar!r}: {country} has no subdivision {subdiv!r} "
                         f"(known: {', '.join(subdivs[:3])}, ...)")
    if zone:
        if country not in _SCHOOL_SUBDIV_FORMAT:
            raise ValueError(f"holiday calendar {calendar!r}: no school holidays known for {country} "
                             f"(known for: {', '.join(sorted(_SCHOOL_SUBDIV_FORMAT))})")
        name = _SCHOOL_SUBDIV_FORMAT[country].format(zone)
        if name not in subdivs:
            raise ValueError(f"holiday calendar {calendar!r}: {country} has no school zone {zone!r}")
    return CalendarSpec(country, subdiv, zone)


@lru_cache(maxsize=64)
def holidays(calendar: str, year: int) -> frozenset[date]:
    """The public holidays of ``year`` in ``calendar`` (the school zone is ignored here)."""
    spec = parse_calendar(calendar)
    if spec is None:
        return frozenset()
    days = holidays_pkg.country_holidays(spec.country, subdiv=spec.subdiv or None, years=year)
    return frozenset(days.keys())


@lru_cache(maxsize=64)
def school_holidays(calendar: str, year: int) -> frozenset[date]:
    """The school-holiday days of ``year`` in ``calendar``'s zone (empty without a zone)."""
    spec = parse_calendar(calendar)
    if spec is None or not spec.school_zone:
        return frozenset()
    subdiv = _SCHOOL_SUBDIV_FORMAT[spec.country].format(spec.school_zone)
    days = holidays_pkg.country_holidays(spec.country, subdiv=subdiv, years=year, categories=("school",))
    return frozenset(days.keys())


def is_holiday(d: date, calendar: str, extra: frozenset[date] = frozenset()) -> bool:
    """A public holiday of ``calendar``, or one of the ``extra`` dates."""
    return d in extra or d in holidays(calendar, d.year)


def day_kind(d: date, calendar: str, extra: frozenset[date] = frozenset()) -> int:
    """:data:`PUBLIC_HOLIDAY` (or an ``extra`` date), :data:`SCHOOL_HOLIDAY` or :data:`ORDINARY`."""
    if is_holiday(d, calendar, extra):
        return PUBLIC_HOLIDAY
    if d in school_holidays(calendar, d.year):
        return SCHOOL_HOLIDAY
    return ORDINARY
