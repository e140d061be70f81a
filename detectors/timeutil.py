"""Event time: RFC 3339 strings or epoch seconds in, float epoch seconds inside."""

from __future__ import annotations

import importlib
import os
import re
from datetime import UTC, datetime

__all__ = [
    "EVENT_TS_MAX",
    "EVENT_TS_MIN",
    "EVENT_TS_PATTERN",
    "parse_event_ts",
    "parse_ts",
    "format_ts",
    "fast_utc_many",
]

# Fast path for the usual wire form ``YYYY-MM-DDTHH:MM:SS[.fff|.ffffff]Z``:
# the minute prefix is parsed once (by datetime, cached) and the seconds and
# the fraction are added in integer microseconds, then divided by 10**6 like
# ``datetime.timestamp()`` does, so the float is the same to the last bit.
# Anything else goes to the full parser.
_MINUTE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d", re.ASCII)
_minutes: dict[str, int] = {}
_MAX_MINUTES = 1 << 16
# Seconds and milliseconds of the usual ``:SS.fffZ`` ending, validated by lookup.
_SECS = {f"{i:02d}": i for i in range(60)}
_MILLIS = {f"{i:03d}": i for i in range(1000)}


def _minute_epoch(prefix: str) -> int | None:
    """Epoch seconds of a ``YYYY-MM-DDTHH:MM`` prefix in UTC, None when it is not one."""
    if not _MINUTE.fullmatch(prefix):
        return None
    try:
        dt = datetime.fromisoformat(prefix + ":00+00:00")
    except ValueError:
        return None
    base = int(dt.timestamp())
    if len(_minutes) >= _MAX_MINUTES:
        _minutes.clear()
    _minutes[prefix] = base
    return base


def _fast_utc(s: str) -> float | None:
    """``s`` in the usual Z form as epoch seconds, or None (the caller uses the full parser)."""
    if len(s) == 24 and s[16] == ":" and s[19] == "." and s[23] in "Zz":
        base = _minutes.get(s[:16])
        sec = _SECS.get(s[17:19])
        ms = _MILLIS.get(s[20:23])
        if base is not None and sec is not None and ms is not None:
            # == (((base + sec) * 10**3 + ms) * 10**3) / 10**6: int division is correctly rounded
            return ((base + sec) * 1000 + ms) / 1000
    return _fast_utc_slow(s)


def _fast_utc_slow(s: str) -> float | None:
    n = len(s)
    if not (n == 24 or n == 20 or n == 27) or s[-1] not in "Zz" or s[16] != ":" or not s.isascii():
        return None
    base = _minutes.get(s[:16])
    if base is None:
        base = _minute_epoch(s[:16])
        if base is None:
            return None
    digits = s[17:19]
    if not digits.isdigit():
        return None
    sec = int(digits)
    if sec >= 60:
        return None
    if n == 20:
        us = 0
    else:
        frac = s[20:-1]
        if s[19] != "." or not frac.isdigit():
            return None
        us = int(frac) * 1000 if n == 24 else int(frac)
    return ((base + sec) * 1_000_000 + us) / 1_000_000


def parse_ts(value: object) -> float:
    """Return epoch seconds for an RFC 3339 string or a number.

    >>> parse_ts("2021-04-06T08:00:01.250Z")
    1617696001.25
    >>> parse_ts(1617696001)
    1617696001.0
    """
    if isinstance(value, bool):
        raise ValueError("ts must be an RFC 3339 string or epoch seconds, got a boolean")
    if isinstance(value, int | float):
        v = float(value)
        if not (0.0 <= v < 32503680000.0):  # 1970 .. 3000
            raise ValueError(f"ts {value!r} is out of range")
        return v
    if isinstance(value, str):
        fast = _fast_utc(value)
        if fast is not None:
            return fast
        s = value.strip()
        if s.endswith(("Z", "z")):
            s = s[:-1] + "+00:00"
        try:
            dt = datetime.fromisoformat(s)
        except ValueError:
            raise ValueError(f"ts {value!r} is not an RFC 3339 time") from None
        if dt.tzinfo is None:
            raise ValueError(f"ts {value!r} has no time zone offset")
        return dt.timestamp()
    raise ValueError(f"ts must be an RFC 3339 string or epoch seconds, got {type(value).__name__}")


# -- the time of an input event -------------------------------------------------
# An event time is either form, within the same years: 2000-01-01T00:00:00Z
# (inclusive) to 2100-01-01T00:00:00Z (exclusive). Earlier or later is a
# clock or a producer gone wrong (a year 1 or 2999 date, milliseconds sent as
# seconds), and one such event would move a partition's event-time watermark
# by centuries. A number is compared as the instant it is; a string must be
# RFC 3339 with a year 2000-2099 *as written*: that is what a JSON Schema
# pattern can state exactly (schemas/request-event.json is generated from
# EVENT_TS_PATTERN), and for the usual ``Z`` form both rules are the same.
#: First epoch second accepted as an event time (2000-01-01T00:00:00Z).
EVENT_TS_MIN = 946_684_800.0
#: First epoch second refused as an event time (2100-01-01T00:00:00Z).
EVENT_TS_MAX = 4_102_444_800.0
# The years 2000-2099 have a leap day every fourth year (2000 included).
_DATE = (
    "20[0-9][0-9]-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])"
    "|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)|02-(?:0[1-9]|1[0-9]|2[0-8]))"
    "|20(?:[02468][048]|[13579][26])-02-29"
)
_TIME = "[Tt](?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:[.][0-9]+)?(?:[Zz]|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"
#: A string event time: RFC 3339 (section 5.6), year 2000-2099, a real date,
#: a time zone offset required, no leap second (:60; Python has none).
#: The same text is the JSON Schema ``pattern`` (ECMA-262 and Python ``re`` read it alike).
EVENT_TS_PATTERN = f"^(?:{_DATE}){_TIME}$"
_EVENT_TS = re.compile(EVENT_TS_PATTERN)
# The shape of any RFC 3339 time, offset optional: to say why a string was refused.
_SHAPE = re.compile(r"([0-9]{4})-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(?:[.][0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})?")


def parse_event_ts(value: object) -> float:
    """Epoch seconds of an input event's ``ts``; ValueError, saying why, outside the rules above.

    >>> parse_event_ts("2021-04-06T10:00:01.250+02:00")
    1617696001.25
    >>> parse_event_ts(-1)
    Traceback (most recent call last):
    ...
    ValueError: ts -1 is out of range: epoch seconds from 946684800 (2000-01-01) to 4102444800 (2100-01-01)
    >>> parse_event_ts("0001-01-01T00:00:00Z")
    Traceback (most recent call last):
    ...
    ValueError: ts '0001-01-01T00:00:00Z' is out of range: years 2000 to 2099
    """
    if value.__class__ is str:
        s = value
        fast = _fast_utc(s)  # the usual Z form: the instant decides (the same as the year)
        if fast is not None:
            if EVENT_TS_MIN <= fast < EVENT_TS_MAX:
                return fast
            raise ValueError(f"ts {s!r} is out of range: years 2000 to 2099")
        if _EVENT_TS.fullmatch(s) is None:
            m = _SHAPE.fullmatch(s)
            if m is None:
                raise ValueError(f"ts {s!r} is not an RFC 3339 time")
            if m.group(2) is None:
                raise ValueError(f"ts {s!r} has no time zone offset")
            if not 2000 <= int(m.group(1)) <= 2099:
                raise ValueError(f"ts {s!r} is out of range: years 2000 to 2099")
            raise ValueError(f"ts {s!r} is not an RFC 3339 time (no such date, hour, minute or second)")
        return datetime.fromisoformat(s[:-1] + "+00:00" if s[-1] in "Zz" else s).timestamp()
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"ts must be an RFC 3339 string or epoch seconds, got {type(value).__name__}")
    if EVENT_TS_MIN <= value < EVENT_TS_MAX:  # (False for NaN)
        return float(value)
    raise ValueError(f"ts {value!r} is out of range: epoch seconds from 946684800 (2000-01-01) to 4102444800 (2100-01-01)")


def format_ts(ts: float) -> str:
    """RFC 3339 in UTC with a Z, milliseconds only when needed.

    >>> format_ts(1617696001.25)
    '2021-04-06T08:00:01.250Z'
    >>> format_ts(1617696000.0)
    '2021-04-06T08:00:00Z'
    """
    dt = datetime.fromtimestamp(ts, UTC)
    if dt.microsecond:
        return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


# -- many at once ---------------------------------------------------------------
# ``fast_utc_many`` is ``_fast_utc`` over a list, in numpy: the fixed-width form
# ``YYYY-MM-DDTHH:MM:SS.fffZ`` is checked character by character and the date
# turned into days since the epoch arithmetically (days_from_civil, H. Hinnant),
# then ``(whole milliseconds) / 1000`` as a correctly rounded float division:
# the same float as ``_fast_utc`` gives. A string not in that form or not a
# valid date is left as None for the scalar parser, which has the last word.
_DIGITS = [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18, 20, 21, 22]
_np = None
_native_mod: list = []  # [detectors._native or None], on first use


def native_module():
    """detectors._native (the C loops: add_rows, utc_many, row_times), or None: not built, or TOCSIN_NATIVE=0."""
    if not _native_mod:
        mod = None
        if os.environ.get("TOCSIN_NATIVE", "1") not in ("", "0"):
            try:
                mod = importlib.import_module("detectors._native")
            except ImportError:
                pass
        _native_mod.append(mod)
    return _native_mod[0]


def _numpy_tables():
    # numpy on first use: every command line imports this module, few convert times in bulk.
    global _np
    import numpy as np

    seps = np.array([4, 7, 10, 13, 16, 19]), np.array([45, 45, 84, 58, 58, 46], dtype=np.uint8)
    mdays = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int64)
    _np = np, seps, mdays
    return _np


def fast_utc_many(strs: list[str]) -> list[float | None]:
    """``[_fast_utc(s) for s in strs]`` (all str) for the usual form; None where the scalar parser must decide.

    In C (detectors/_native.c, the same checks and arithmetic) when the
    install built it; else in numpy.
    """
    native = native_module()
    if native is not None:
        return native.utc_many(strs)
    return _fast_utc_many_numpy(strs)


def _fast_utc_many_numpy(strs: list[str]) -> list[float | None]:
    np, (sep_at, sep), mdays = _np or _numpy_tables()
    n = len(strs)
    if not n:
        return []
    # Joined with NULs, which the form excludes: when every 25th byte is a NUL
    # and every other one a digit or separator, each string had 24 characters.
    buf = "\0".join(strs).encode()
    if len(buf) != 25 * n - 1:
        # Some string is not 24 ASCII characters: the others go on their own
        # (a non-ASCII one would leave the joined bytes misaligned again).
        out: list[float | None] = [None] * n
        idx = [i for i, s in enumerate(strs) if len(s) == 24 and s.isascii()]
        if len(idx) < n:
            for i, v in zip(idx, _fast_utc_many_numpy([strs[i] for i in idx]), strict=True):
                out[i] = v
        return out
    u = np.frombuffer(buf + b"\0", dtype=np.uint8).reshape(n, 25)
    d = u[:, _DIGITS] - np.uint8(48)  # wraps around below "0": one test for both ends
    ok = (d <= 9).all(axis=1) & (u[:, sep_at] == sep).all(axis=1) & ((u[:, 23] | 32) == 122) & (u[:, 24] == 0)
    d = d.astype(np.int64).T
    year = d[0] * 1000 + d[1] * 100 + d[2] * 10 + d[3]
    month, day, hour, minute, sec = (d[4:13:2] * 10 + d[5:14:2])
    ms = d[14] * 100 + d[15] * 10 + d[16]
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    okm = (month >= 1) & (month <= 12)
    dim = mdays[np.where(okm, month, 0)] + (leap & (month == 2))
    ok &= (year >= 1) & okm & (day >= 1) & (day <= dim) & (hour < 24) & (minute < 60) & (sec < 60)
    y = year - (month <= 2)
    era = y // 400
    yoe = y - era * 400
    doy = (153 * np.where(month > 2, month - 3, month + 9) + 2) // 5 + day - 1
    days = era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468
    millis = (days * 86400 + hour * 3600 + minute * 60 + sec) * 1000 + ms
    out = (millis / 1000).tolist()
    if not ok.all():
        for i in np.flatnonzero(~ok).tolist():
            out[i] = None
    return out
