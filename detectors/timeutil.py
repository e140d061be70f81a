"""Event time: RFC 3339 strings or epoch seconds in, float epoch seconds inside."""

from __future__ import annotations

import importlib
import os
import re
from datetime import UTC, datetime

__all__ = ["parse_ts", "format_ts", "fast_utc_many"]

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
        out: list[float | None] = [None] * n
        idx = [i for i, s in enumerate(strs) if len(s) == 24]
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
