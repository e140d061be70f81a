"""Holiday calendars from the ``holidays`` package, and school holidays as a day type of their own."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta

import pytest

from detectors.baseline import SeasonalBaseline, day_type, upgrade_profile
from detectors.calendar import (
    ORDINARY,
    PUBLIC_HOLIDAY,
    SCHOOL_HOLIDAY,
    day_kind,
    holidays,
    is_holiday,
    parse_calendar,
    school_holidays,
)


def _days(first: date, last: date) -> set[date]:
    return {first + timedelta(n) for n in range((last - first).days + 1)}


@pytest.mark.parametrize("zone", ["A", "B", "C"])
def test_easter_2021_school_holidays_of_each_zone(zone):
    """Spring 2021: the three zones' breaks (planned 10, 17 and 24 April) were
    moved to the same fortnight, 10-25 April, when schools closed for COVID-19;
    the week of 6 April (the demo's incident day) was taught at home, not a holiday."""
    cal = f"FR+school-{zone}"
    spring = _days(date(2021, 4, 10), date(2021, 4, 25))
    april_may = _days(date(2021, 4, 1), date(2021, 5, 31))
    off = {d for d in april_may if d in school_holidays(cal, 2021)}
    assert off == spring | _days(date(2021, 5, 13), date(2021, 5, 16))  # and the Ascension bridge
    assert day_kind(date(2021, 4, 6), cal) == ORDINARY
    assert day_kind(date(2021, 4, 9), cal) == ORDINARY
    assert day_kind(date(2021, 4, 12), cal) == SCHOOL_HOLIDAY
    assert day_kind(date(2021, 4, 26), cal) == ORDINARY  # back to school (at home for secondary)
    assert day_kind(date(2021, 4, 5), cal) == PUBLIC_HOLIDAY  # Easter Monday wins over the school calendar
    assert day_kind(date(2021, 5, 13), cal) == PUBLIC_HOLIDAY  # Ascension


def test_zones_differ_in_an_ordinary_year():
    # Winter 2021: A from 6 February, C from 13 February, B from 20 February.
    starts = {z: min(d for d in school_holidays(f"FR+school-{z}", 2021) if d.month == 2) for z in "ABC"}
    assert starts == {"A": date(2021, 2, 6), "C": date(2021, 2, 13), "B": date(2021, 2, 20)}
    assert school_holidays("FR", 2021) == frozenset()  # no zone, no school holidays


def test_french_public_holidays_are_the_eleven():
    assert holidays("FR", 2021) == {
        date(2021, 1, 1), date(2021, 4, 5), date(2021, 5, 1), date(2021, 5, 8), date(2021, 5, 13),
        date(2021, 5, 24), date(2021, 7, 14), date(2021, 8, 15), date(2021, 11, 1), date(2021, 11, 11),
        date(2021, 12, 25),
    }


@pytest.mark.parametrize("subdiv", ["57", "6AE"])
def test_alsace_moselle_adds_good_friday_and_26_december(subdiv):
    cal = f"FR-{subdiv}"
    assert holidays(cal, 2021) - holidays("FR", 2021) == {date(2021, 4, 2), date(2021, 12, 26)}
    assert is_holiday(date(2021, 4, 2), cal) and not is_holiday(date(2021, 4, 2), "FR")


def test_other_countries_and_extra_dates():
    assert is_holiday(date(2021, 7, 4), "US") and not is_holiday(date(2021, 7, 4), "FR")
    assert is_holiday(date(2021, 10, 3), "DE")
    assert not is_holiday(date(2021, 7, 14), "none")
    assert is_holiday(date(2021, 6, 1), "none", frozenset({date(2021, 6, 1)}))


@pytest.mark.parametrize("spec, message", [
    ("fr", "expected none or COUNTRY"),
    ("FR-", "expected none or COUNTRY"),
    ("XX", "no country 'XX'"),
    ("FR-99", "no subdivision '99'"),
    ("FR+school-D", "no school zone 'D'"),
    ("DE+school-A", "no school holidays known for DE"),
])
def test_bad_calendar_names_say_what_is_wrong(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_calendar(spec)


def test_day_types():
    assert [day_type(wd) for wd in range(7)] == [0, 0, 1, 0, 0, 2, 3]
    assert [day_type(wd, SCHOOL_HOLIDAY) for wd in range(7)] == [4, 4, 4, 4, 4, 2, 3]
    assert [day_type(wd, PUBLIC_HOLIDAY) for wd in range(7)] == [3] * 7


def _ts(d: date, hour: int) -> float:
    """``hour``:30 UTC, a slot's centre: each value teaches that slot alone."""
    return datetime(d.year, d.month, d.day, hour, 30, tzinfo=UTC).timestamp()


def _teach(b: SeasonalBaseline, first: date, last: date, level) -> None:
    for d in sorted(_days(first, last)):
        for hour in range(24):
            b.learn(_ts(d, hour), math.log(level(d)))


def test_the_baseline_learns_school_holidays_as_their_own_day_type():
    """Zone A's winter break (6-21 February 2021) is learned apart from the
    term weeks, so the Easter break of April is expected at its level."""
    term, holiday = 1000.0, 150.0

    def level(d: date) -> float:
        return holiday if day_kind(d, "FR+school-A") == SCHOOL_HOLIDAY and d.weekday() < 5 else term

    with_zone = SeasonalBaseline(alpha=0.05, calendar="FR+school-A")
    without = SeasonalBaseline(alpha=0.05, calendar="FR")
    for b in (with_zone, without):
        _teach(b, date(2021, 1, 11), date(2021, 3, 31), level)

    easter_tuesday, term_tuesday = _ts(date(2021, 4, 13), 10), _ts(date(2021, 4, 6), 10)
    mean, _, n = with_zone.expect(easter_tuesday)
    assert n >= 10 and math.exp(mean) == pytest.approx(holiday, rel=0.05)
    assert math.exp(with_zone.expect(term_tuesday)[0]) == pytest.approx(term, rel=0.05)
    # Without the zone, the holiday Tuesday is expected like any Tuesday,
    # and the profile's term Tuesday is dragged down by the holiday ones.
    assert math.exp(without.expect(easter_tuesday)[0]) > 3 * holiday
    assert math.exp(without.expect(term_tuesday)[0]) < 0.95 * term


def test_a_profile_of_four_day_types_is_upgraded():
    b = SeasonalBaseline(alpha=0.05, calendar="FR")
    _teach(b, date(2021, 3, 1), date(2021, 3, 14), lambda d: 200.0)
    old = b.to_bytes()[:SeasonalBaseline.SIZE_4_DAY_TYPES]  # the school-holiday block is last: unlearned here
    assert b.to_bytes()[SeasonalBaseline.SIZE_4_DAY_TYPES:] == bytes(SeasonalBaseline.SIZE - len(old))
    again = SeasonalBaseline.from_bytes(old, alpha=0.05, calendar="FR")
    assert again.to_bytes() == b.to_bytes()
    tail = b"fallback"
    assert upgrade_profile(old + tail) == b.to_bytes() + tail
    with pytest.raises(ValueError, match="960 bytes, not 10"):
        SeasonalBaseline.from_bytes(b"0123456789")
