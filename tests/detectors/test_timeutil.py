"""Event times in bulk: fast_utc_many (C and numpy) against the scalar parsers."""

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import detectors.features
from detectors.timeutil import _fast_utc, _fast_utc_many_numpy, fast_utc_many, parse_ts

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
    """Each result None or the scalar parsers' float; C and numpy agree (numpy gives up on a list with non-ASCII)."""
    numpy = _fast_utc_many_numpy(strs)
    results = [numpy, fast_utc_many(strs)]
    if NATIVE is not None:
        c = NATIVE.utc_many(strs)
        results.append(c)
        if all(s.isascii() for s in strs):
            assert c == numpy
        else:
            assert all(v == c[i] for i, v in enumerate(numpy) if v is not None)
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
