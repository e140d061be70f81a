"""Per-key baselines: exponentially weighted mean and variance, plain or seasonal.

Both learn a value's log (latencies and rates are multiplicative) and score
the next one as a z-score against what they learned. State is a handful of
floats packed with ``struct``: tens to hundreds of bytes per key.
"""

from __future__ import annotations

import math
import struct
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from .calendar import is_holiday

__all__ = ["EWBaseline", "HoltBaseline", "SeasonalBaseline", "day_type"]


class EWBaseline:
    """Exponentially weighted mean and variance (West's incremental form).

    ``alpha`` is the weight of a new value once ``1/n`` drops below it, so the
    first values are averaged exactly.

    >>> b = EWBaseline(alpha=0.1)
    >>> for v in [10.0, 11.0, 9.0, 10.0] * 10:
    ...     b.learn(v)
    >>> round(b.mean, 1), b.n
    (10.0, 40)
    """

    __slots__ = ("alpha", "mean", "var", "n")
    _FMT = struct.Struct("<ddI")

    def __init__(self, alpha: float = 0.05) -> None:
        self.alpha = alpha
        self.mean = 0.0
        self.var = 0.0
        self.n = 0

    def learn(self, x: float, weight: float = 1.0) -> None:
        self.n += 1
        a = max(self.alpha, 1.0 / self.n) * weight
        d = x - self.mean
        if self.n > 30:
            # Huber-like: one wild value moves the baseline by a bounded step.
            lim = 4.0 * math.sqrt(self.var + 1e-9)
            d = max(-lim, min(lim, d))
        self.mean += a * d
        self.var = (1.0 - a) * (self.var + a * d * d)

    def z(self, x: float, floor: float = 0.0) -> float:
        return (x - self.mean) / math.sqrt(self.var + floor) if (self.var + floor) > 0 else 0.0

    def to_bytes(self) -> bytes:
        return self._FMT.pack(self.mean, self.var, self.n)

    @classmethod
    def from_bytes(cls, data: bytes, alpha: float = 0.05) -> EWBaseline:
        b = cls(alpha)
        b.mean, b.var, b.n = cls._FMT.unpack(data)
        return b


class HoltBaseline:
    """Level and trend (Holt's linear method) with the variance of its one-step errors.

    Follows a ramp (the school morning) so that only a break from it counts
    as a surprise; used where no seasonal profile has been learned yet.

    >>> b = HoltBaseline(alpha=0.2, beta=0.1)
    >>> for i in range(200):
    ...     b.learn(float(i))
    >>> round(b.predict(), 1)
    200.0
    """

    __slots__ = ("alpha", "beta", "level", "trend", "var", "n")
    _FMT = struct.Struct("<dddI")

    def __init__(self, alpha: float = 0.1, beta: float = 0.05) -> None:
        self.alpha = alpha
        self.beta = beta
        self.level = self.trend = self.var = 0.0
        self.n = 0

    @property
    def mean(self) -> float:
        return self.predict()

    def predict(self) -> float:
        return self.level + self.trend

    def learn(self, x: float, weight: float = 1.0) -> None:
        self.n += 1
        if self.n == 1:
            self.level = x
            return
        a = max(self.alpha, 1.0 / self.n) * weight
        err = x - self.predict()
        if self.n > 30:
            lim = 4.0 * math.sqrt(self.var + 1e-9)
            err = max(-lim, min(lim, err))
        self.level = self.predict() + a * err
        self.trend += self.beta * a * err
        self.var = (1.0 - a) * (self.var + a * err * err)

    def to_bytes(self) -> bytes:
        return self._FMT.pack(self.level, self.trend, self.var, self.n)

    @classmethod
    def from_bytes(cls, data: bytes, alpha: float = 0.1, beta: float = 0.05) -> HoltBaseline:
        b = cls(alpha, beta)
        b.level, b.trend, b.var, b.n = cls._FMT.unpack(data)
        return b


def day_type(wd: int) -> int:
    """0: Mon/Tue/Thu/Fri, 1: Wednesday (school afternoon off), 2: Saturday, 3: Sunday."""
    return {2: 1, 5: 2, 6: 3}.get(wd, 0)


_TZ_CACHE: dict[str, object] = {}
_SLOT_CACHE: dict[tuple, tuple[int, float]] = {}


def _local(ts: float, tz: str) -> datetime:
    if tz == "UTC":
        return datetime.fromtimestamp(ts, UTC)
    z = _TZ_CACHE.get(tz)
    if z is None:
        z = _TZ_CACHE[tz] = ZoneInfo(tz)
    return datetime.fromtimestamp(ts, z)  # type: ignore[arg-type]


class SeasonalBaseline:
    """Mean and variance per (day type, hour of day), interpolated within the hour.

    4 day types x 24 hours, each slot a float32 mean, a float16 variance and
    a uint16 learned weight packed in one bytearray: 768 bytes, also the
    serialised form (the variance of a log-rate needs no more than float16's
    0.05% precision: the detectors add a noise floor to it). A value at 08:40
    is compared with a blend of the 08:00 and 09:00 slots and teaches both in
    proportion, so the profile is smooth. ``expect(ts)[2]`` says how much the
    model has seen at that time of the week (the warm-up).

    ``expect`` and ``learn`` work on ``buf``, this profile's own buffer unless
    one is passed: a detector keeps one SeasonalBaseline for its parameters
    and each key keeps only its bytes.
    """

    __slots__ = ("alpha", "tz", "calendar", "holidays", "clip", "buf")
    SLOTS = 96
    _SLOT = struct.Struct("<feH")  # mean, variance, weight in 1/16ths
    SIZE = SLOTS * _SLOT.size

    def __init__(
        self,
        alpha: float = 0.005,
        tz: str = "UTC",
        calendar: str = "none",
        holidays: frozenset[date] = frozenset(),
        clip: float = 3.0,
    ) -> None:
        self.alpha = alpha
        self.tz = tz
        self.calendar = calendar
        self.holidays = holidays
        self.clip = clip
        self.buf = bytearray(self.SIZE)

    def _slots(self, ts: float) -> tuple[int, int, float]:
        # Local hour and day type are cached per UTC hour (zone offsets change
        # on hour boundaries), so the per-window cost is a dict lookup.
        key = (self.tz, self.calendar, self.holidays, int(ts // 3600))
        hit = _SLOT_CACHE.get(key)
        if hit is None:
            d = _local(ts, self.tz)
            dt = 3 if is_holiday(d.date(), self.calendar, self.holidays) else day_type(d.weekday())
            off = d.utcoffset()
            hit = (dt, off.total_seconds() if off is not None else 0.0)
            if len(_SLOT_CACHE) > 50_000:
                _SLOT_CACHE.clear()
            _SLOT_CACHE[key] = hit
        dt, offset = hit
        pos = ((ts + offset) % 86400.0) / 3600.0 - 0.5  # local hour of day; slot centres at :30
        h0 = math.floor(pos)
        frac = pos - h0
        # Wrap around midnight within the same day type (good enough at night).
        return dt * 24 + (h0 % 24), dt * 24 + ((h0 + 1) % 24), frac

    def expect(self, ts: float, buf: bytearray | None = None) -> tuple[float, float, int]:
        """(mean, variance, count) expected at ``ts``; count is the smaller of the two slots."""
        a, b, f = self._slots(ts)
        unpack = self._SLOT.unpack_from
        if buf is None:
            buf = self.buf
        return _mix(*unpack(buf, 8 * a), *unpack(buf, 8 * b), f)

    def learn(self, ts: float, x: float, weight: float = 1.0, buf: bytearray | None = None) -> None:
        """Fit the piecewise-linear profile: both knots move toward ``x`` in
        proportion to their share of the prediction, and learn its error."""
        if buf is None:
            buf = self.buf
        a, b, f = self._slots(ts)
        slot = self._SLOT
        ma, va, na16 = slot.unpack_from(buf, 8 * a)
        mb, vb, nb16 = slot.unpack_from(buf, 8 * b)
        m = _mix(ma, va, na16, mb, vb, nb16, f)[0]
        err = x - m if (na16 or nb16) else 0.0
        for s, w, ms, vs, n16 in ((a, 1 - f, ma, va, na16), (b, f, mb, vb, nb16)):
            w *= weight
            if w < 1.0 / 32:
                continue  # below the 1/16 resolution of the learned weight
            # The weight learned so far is kept in 1/16ths (fixed point), so
            # that the first values are averaged exactly whatever their weight.
            add = max(1, round(16 * w))
            r = max(self.alpha * w, add / (n16 + add))
            d = err if n16 else x - ms
            if n16 > 30 * 16 and self.clip:
                # One odd day (an unlisted holiday, an incident) must not
                # blow the slot's variance up: Huber-like clipping.
                lim = self.clip * math.sqrt(vs + 1e-6)
                d = max(-lim, min(lim, d))
            vs = min(_F16_MAX, (1.0 - r) * (vs + r * d * d))
            slot.pack_into(buf, 8 * s, ms + r * d, vs, min(65535, n16 + add))

    def to_bytes(self) -> bytes:
        return bytes(self.buf)

    @classmethod
    def from_bytes(cls, data: bytes, **params) -> SeasonalBaseline:
        if len(data) != cls.SIZE:
            raise ValueError(f"a seasonal profile is {cls.SIZE} bytes, not {len(data)}")
        b = cls(**params)
        b.buf[:] = data
        return b


_F16_MAX = 65504.0


def _mix(ma: float, va: float, na16: int, mb: float, vb: float, nb16: int, f: float) -> tuple[float, float, int]:
    """Blend two slots (mean, variance, weight in 1/16ths) at fraction ``f`` of the way from a to b."""
    na, nb = na16 >> 4, nb16 >> 4
    if na and nb:
        return (1 - f) * ma + f * mb, (1 - f) * va + f * vb, min(na, nb)
    if na:
        return ma, va, na // 2
    if nb:
        return mb, vb, nb // 2
    return 0.0, 0.0, 0
