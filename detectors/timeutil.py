"""Event time: RFC 3339 strings or epoch seconds in, float epoch seconds inside."""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["parse_ts", "format_ts"]


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
