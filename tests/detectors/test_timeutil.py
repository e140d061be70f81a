"""Event times in bulk: fast_utc_many (C and numpy) against the scalar parsers."""

import random
import re
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import detectors.features
from detectors.timeutil import (
    EVENT_TS_MAX,
    EVENT_TS_MIN,
    EVENT_TS_PATTERN,
    _fast_utc,
    _fast_utc_many_numpy,
    fast_utc_many,
    parse_event_ts,
    parse_ts,
)

NATIVE = detectors.features._native


def _usual(rnd: random.Random) -> str:
    """The usual form, with a field out of range now and then (invalid dates, 24:00, 60 s)."""

    def pick(valid, invalid):
        return rnd.choice(invalid) if rnd.random() < 0.05 else valid

    y = rnd.choice([rnd.randint(1, 9999), 2020, 2021, 2000, 1900, 2100, 1970])
    mo = pick(rnd.choice([rnd.randint(1, 12), 2]), [0, 13])
    d = pick(rnd.randint(1, 28), [0, 29, 30, 31, 32])
    h, mi, s = pick(rnd.randint(0, 23), [24]), pick(rnd.randint(0, 59), [60]), pick(rnd.randint(0, 59), [60])
    return f"{y:04d}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}.{rnd.randint(0, 999):03d}{rnd.choice('ZZz')}"


def _mangled(rnd: random.Random, s: str) -> str:
    i = rnd.randrange(len(s))
    return s[:i] + rnd.choice(["x", " ", "/", "é", "٣", "", "0", "t", "+"]) + s[i + 1:]


def _check(strs: list[str]) -> int:
    """Each result None or the scalar parsers' float; C and numpy agree."""
    numpy = _fast_utc_many_numpy(strs)
    results = [numpy, fast_utc_many(strs)]
    if NATIVE is not None:
        c = NATIVE.utc_many(strs)
        results.append(c)
        assert c == numpy
    for res in results:
        assert len(res) == len(strs)
        for s, v in zip(strs, res, strict=True):
            if v is not None:
                assert v == _fast_utc(s) == parse_ts(s), s
    return sum(v is not None for v in results[-1])


def test_bulk_times_are_the_scalar_times():
    rnd = random.Random(7)
    strs = [_usual(rnd) for _ in range(20_000)]
    strs += [_mangled(rnd, s) for s in strs[:5000]]
    rnd.shuffle(strs)
    parsed = sum(_check(strs[i:i + 997]) for i in range(0, len(strs), 997))
    if NATIVE is not None:  # numpy leaves a chunk with a non-ASCII string to the scalar parser: all None
        assert parsed > 5000  # both kinds, many of each
    assert _check([s for s in strs if s.isascii()]) > 5000
    _check([])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(alphabet="0123456789-T:.Zz ", min_size=20, max_size=26), max_size=40))
def test_bulk_times_of_any_strings(strs):
    _check(strs)


@pytest.mark.skipif(NATIVE is None, reason="detectors._native is not built (pure Python install)")
def test_native_utc_many_refuses_what_is_not_a_list():
    with pytest.raises(TypeError):
        NATIVE.utc_many(("2021-04-06T08:00:01.250Z",))
    assert NATIVE.utc_many([1617696001.25, b"2021-04-06T08:00:01.250Z"]) == [None, None]


# -- the time of an input event: one range for both forms ----------------------------

OFFSETS = ["Z", "z", "+00:00", "+02:00", "-05:30", "+23:59", "-23:59"]


@settings(max_examples=500, deadline=None)
@given(st.datetimes(datetime(1990, 1, 1), datetime(2110, 12, 31)), st.sampled_from(OFFSETS),
       st.sampled_from(["", ".5", ".250", ".123456", ".123456789"]), st.sampled_from("Tt"))
def test_event_ts_strings_are_accepted_by_the_year_written(dt, off, frac, sep):
    s = dt.strftime(f"%Y-%m-%d{sep}%H:%M:%S") + frac + off
    expected = datetime.fromisoformat(s[:-1] + "+00:00" if off in "Zz" else s).timestamp()
    if 2000 <= dt.year <= 2099:
        assert parse_event_ts(s) == expected
        assert re.search(EVENT_TS_PATTERN, s)
        if off in "Zz":
            assert EVENT_TS_MIN <= expected < EVENT_TS_MAX
    else:
        with pytest.raises(ValueError, match="out of range: years 2000 to 2099"):
            parse_event_ts(s)
        assert not re.search(EVENT_TS_PATTERN, s)


@settings(max_examples=300, deadline=None)
@given(st.floats(EVENT_TS_MIN - 1e6, EVENT_TS_MAX + 1e6) | st.integers(-(2**70), 2**70) | st.floats())
def test_event_ts_numbers_are_accepted_in_the_range(x):
    if EVENT_TS_MIN <= x < EVENT_TS_MAX:
        assert parse_event_ts(x) == float(x)
    else:
        with pytest.raises(ValueError, match="out of range: epoch seconds"):
            parse_event_ts(x)


@pytest.mark.parametrize("s, why", [
    ("2021-04-06T08:00:00", "has no time zone offset"),
    ("2021-04-06T08:00:00.250", "has no time zone offset"),
    ("2021-02-29T08:00:00Z", "no such date"),
    ("2100-02-29T08:00:00Z", "out of range"),
    ("2021-04-06T08:00:60Z", "no such date"),
    ("2021-04-06T08:00:00+24:00", "no such date"),
    ("2021-04-06T08:00Z", "not an RFC 3339 time"),
    ("20210406T080000Z", "not an RFC 3339 time"),
    ("2021-04-06T08:00:00.Z", "not an RFC 3339 time"),
    ("2021-04-06T08:00:00+0200", "not an RFC 3339 time"),
    ("\u0662021-04-06T08:00:00Z", "not an RFC 3339 time"),
    ("", "not an RFC 3339 time"),
])
def test_event_ts_strings_refused_say_why(s, why):
    with pytest.raises(ValueError, match=re.escape(why)):
        parse_event_ts(s)
    assert not re.search(EVENT_TS_PATTERN, s)


def test_the_bounds_are_the_first_instants_of_2000_and_2100():
    assert EVENT_TS_MIN == datetime(2000, 1, 1, tzinfo=UTC).timestamp()
    assert EVENT_TS_MAX == datetime(2100, 1, 1, tzinfo=UTC).timestamp()
    assert parse_event_ts("2000-01-01T00:00:00Z") == parse_event_ts(EVENT_TS_MIN) == EVENT_TS_MIN
    for bad in (True, None, [1], {"a": 1}):
        with pytest.raises(ValueError, match="ts must be"):
            parse_event_ts(bad)
