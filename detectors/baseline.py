"""Per-key baselines: exponentially weighted mean and variance, plain or seasonal.

Both learn a value's log (latencies and rates are multiplicative) and score
the next one as a z-score against what they learned. State is a handful of
floats packed with ``struct``: tens to hundreds of bytes per key.
"""

from __future__ import annotations

import math
import struct
from datetime import UTC, date, datetime
from typing import ClassVar
from zoneinfo import ZoneInfo

from .calendar import PUBLIC_HOLIDAY, SCHOOL_HOLIDAY, day_kind

__all__ = ["DAY_TYPES", "EWBaseline", "HoltBaseline", "SeasonalBaseline", "day_type", "holt_step", "upgrade_profile"]


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
    _FMT: ClassVar[struct.Struct] = struct.Struct("<ddI")

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
    def from_bytes(cls, data: bytes | bytearray, alpha: float = 0.05) -> EWBaseline:
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
    _FMT: ClassVar[struct.Struct] = struct.Struct("<dddI")

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
        self.level, self.trend, self.var, self.n = holt_step(
            self.level, self.trend, self.var, self.n, x, weight, self.alpha, self.beta)

    def to_bytes(self) -> bytes:
        return self._FMT.pack(self.level, self.trend, self.var, self.n)

    @classmethod
    def from_bytes(cls, data: bytes | bytearray, alpha: float = 0.1, beta: float = 0.05) -> HoltBaseline:
        b = cls(alpha, beta)
        b.level, b.trend, b.var, b.n = cls._FMT.unpack(data)
        return b


def holt_step(level: float, trend: float, var: float, n: int, x: float, weight: float,
              alpha: float, beta: float) -> tuple[float, float, float, int]:
    """One step of :class:`HoltBaseline` on its four numbers (the traffic detector's fallback runs it in place).

    The rate is ``max(alpha, 1/n) * weight``; after 30 points the error is
    clipped to 4 standard deviations (comparisons written to give what
    min()/max() gave, NaN included).
    """
    n += 1
    if n == 1:
        return x, trend, var, n
    a = 1.0 / n
    a = (a if a > alpha else alpha) * weight
    pred = level + trend
    err = x - pred
    if n > 30:
        lim = 4.0 * math.sqrt(var + 1e-9)
        if not err < lim:
            err = lim
        if not err > -lim:
            err = -lim
    return pred + a * err, trend + beta * a * err, (1.0 - a) * (var + a * err * err), n


#: Day types of the seasonal profile (see :func:`day_type`).
DAY_TYPES = 5


def day_type(wd: int, kind: int = 0) -> int:
    """The day type of a weekday ``wd`` (Monday 0) of a :func:`~detectors.calendar.day_kind` ``kind``.

    0: Mon/Tue/Thu/Fri, 1: Wednesday (school afternoon off), 2: Saturday,
    3: Sunday or public holiday, 4: Monday to Friday in school holidays.

    >>> [day_type(wd) for wd in range(7)], day_type(2, SCHOOL_HOLIDAY), day_type(5, SCHOOL_HOLIDAY)
    ([0, 0, 1, 0, 0, 2, 3], 4, 2)
    """
    if kind == PUBLIC_HOLIDAY or wd == 6:
        return 3
    if wd == 5:
        return 2
    if kind == SCHOOL_HOLIDAY:
        return 4
    return 1 if wd == 2 else 0


_TZ_CACHE: dict[str, object] = {}
# (time zone, calendar, holidays) -> UTC hour -> (day type x 192, UTC offset in seconds)
_SLOT_CACHE: dict[tuple, dict[int, tuple[int, float]]] = {}


def _local(ts: float, tz: str) -> datetime:
    if tz == "UTC":
        return datetime.fromtimestamp(ts, UTC)
    z = _TZ_CACHE.get(tz)
    if z is None:
        z = _TZ_CACHE[tz] = ZoneInfo(tz)
    return datetime.fromtimestamp(ts, z)  # type: ignore[arg-type]


class SeasonalBaseline:
    """Mean and variance per (day type, hour of day), interpolated within the hour.

    5 day types (:func:`day_type`: school holidays are one) x 24 hours, each
    slot a float32 mean, a float16 variance and a uint16 learned weight
    packed in one bytearray: 960 bytes, also the serialised form (the variance of a log-rate needs no more than float16's
    0.05% precision: the detectors add a noise floor to it). A value at 08:40
    is compared with a blend of the 08:00 and 09:00 slots and teaches both in
    proportion, so the profile is smooth. ``expect(ts)[2]`` says how much the
    model has seen at that time of the week (the warm-up).

    ``expect`` and ``learn`` work on ``buf``, this profile's own buffer unless
    one is passed: a detector keeps one SeasonalBaseline for its parameters
    and each key keeps only its bytes. They read and write the slots in place
    (one ``struct`` call for the two neighbouring slots), and the slots of
    the last ``ts`` are remembered, so a window's ``learn`` after its
    ``expect`` finds them at once: ``tz``, ``calendar`` and ``holidays`` are
    fixed at construction.
    """

    __slots__ = ("alpha", "tz", "calendar", "holidays", "clip", "buf", "_hours", "_last")
    SLOTS: ClassVar[int] = DAY_TYPES * 24
    _SLOT: ClassVar[struct.Struct] = struct.Struct("<feH")  # mean, variance, weight in 1/16ths
    _PAIR: ClassVar[struct.Struct] = struct.Struct("<feHfeH")  # two neighbouring slots
    SIZE: ClassVar[int] = SLOTS * _SLOT.size
    #: Size of a profile saved before school holidays had their day type (4 day types).
    SIZE_4_DAY_TYPES: ClassVar[int] = 4 * 24 * _SLOT.size

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
        self._hours = _SLOT_CACHE.setdefault((tz, calendar, holidays), {})
        self._last: tuple = (None, None)  # (ts, its _slots)

    def _slots(self, ts: float) -> tuple[int, int, float]:
        """Byte offsets of the slots before and after ``ts`` and the fraction of the way to the second."""
        last = self._last
        if last[0] == ts:
            return last[1]
        # Local hour and day type are cached per UTC hour (zone offsets change
        # on hour boundaries), shared by the profiles of the same zone and
        # calendar, so the per-window cost is a dict lookup.
        hour = int(ts // 3600)
        hit = self._hours.get(hour)
        if hit is None:
            d = _local(ts, self.tz)
            dt = day_type(d.weekday(), day_kind(d.date(), self.calendar, self.holidays))
            off = d.utcoffset()
            hit = (8 * 24 * dt, off.total_seconds() if off is not None else 0.0)
            if len(self._hours) > 50_000:
                self._hours.clear()
            self._hours[hour] = hit
        day, offset = hit  # the day type's first byte
        pos = ((ts + offset) % 86400.0) / 3600.0 - 0.5  # local hour of day; slot centres at :30
        h0 = _floor(pos)  # -1 to 23
        out = day + _BEFORE[h0], day + _AFTER[h0], pos - h0
        self._last = (ts, out)
        return out

    def expect(self, ts: float, buf: bytearray | None = None) -> tuple[float, float, int]:
        """(mean, variance, count) expected at ``ts``; count is the smaller of the two slots."""
        oa, ob, f = self._slots(ts)
        ma, va, na16, mb, vb, nb16 = _read_slots(self.buf if buf is None else buf, oa, ob)
        return _mix(ma, va, na16, mb, vb, nb16, f)

    def learn(self, ts: float, x: float, weight: float = 1.0, buf: bytearray | None = None) -> None:
        """Fit the piecewise-linear profile: both knots move toward ``x`` in
        proportion to their share of the prediction, and learn its error."""
        if buf is None:
            buf = self.buf
        oa, ob, f = self._slots(ts)  # usually cached: the expect() of the same window, just before
        ma, va, na16, mb, vb, nb16 = _read_slots(buf, oa, ob)
        # The blended mean (_mix's), and its error; comparisons below are
        # written to give what min(), max() gave, NaN included.
        if na16 >= 16:
            m = (1 - f) * ma + f * mb if nb16 >= 16 else ma
        elif nb16 >= 16:
            m = mb
        else:
            m = 0.0
        err = x - m if (na16 or nb16) else 0.0
        pack = _SLOT.pack_into
        alpha, clip = self.alpha, self.clip
        # Slot a, then slot b (the same steps, unrolled).
        w = (1 - f) * weight
        if not w < 1.0 / 32:  # below the 1/16 resolution of the learned weight
            # The weight learned so far is kept in 1/16ths (fixed point), so
            # that the first values are averaged exactly whatever their weight.
            add = round(16 * w) or 1
            r = add / (na16 + add)
            aw = alpha * w
            if not r > aw:
                r = aw
            d = err if na16 else x - ma
            if na16 > 30 * 16 and clip:
                # One odd day (an unlisted holiday, an incident) must not
                # blow the slot's variance up: Huber-like clipping.
                lim = clip * _sqrt(va + 1e-6)
                if not d < lim:
                    d = lim
                if not d > -lim:
                    d = -lim
            v = (1.0 - r) * (va + r * d * d)
            n = na16 + add
            pack(buf, oa, ma + r * d, v if v < _F16_MAX else _F16_MAX, n if n < 65535 else 65535)
        w = f * weight
        if not w < 1.0 / 32:
            add = round(16 * w) or 1
            r = add / (nb16 + add)
            aw = alpha * w
            if not r > aw:
                r = aw
            d = err if nb16 else x - mb
            if nb16 > 30 * 16 and clip:
                lim = clip * _sqrt(vb + 1e-6)
                if not d < lim:
                    d = lim
                if not d > -lim:
                    d = -lim
            v = (1.0 - r) * (vb + r * d * d)
            n = nb16 + add
            pack(buf, ob, mb + r * d, v if v < _F16_MAX else _F16_MAX, n if n < 65535 else 65535)

    def to_bytes(self) -> bytes:
        return bytes(self.buf)

    @classmethod
    def from_bytes(cls, data: bytes | bytearray, **params) -> SeasonalBaseline:
        """A profile from its bytes; a profile of 4 day types gets an unlearned school-holiday type."""
        if len(data) == cls.SIZE_4_DAY_TYPES:
            data = upgrade_profile(data)
        if len(data) != cls.SIZE:
            raise ValueError(f"a seasonal profile is {cls.SIZE} bytes, not {len(data)}")
        b = cls(**params)
        b.buf[:] = data
        return b


def upgrade_profile(data: bytes | bytearray) -> bytes:
    """Bytes that begin with a 4-day-type profile, with the school-holiday day type added (unlearned).

    The new day type is the last block, so the learned slots keep their
    offsets; whatever follows the profile in ``data`` (a traffic state's
    fallback) follows it still, 192 bytes further.
    """
    old = SeasonalBaseline.SIZE_4_DAY_TYPES
    if len(data) < old:
        raise ValueError(f"a 4-day-type seasonal profile is {old} bytes, not {len(data)}")
    return bytes(data[:old]) + bytes(SeasonalBaseline.SIZE - old) + bytes(data[old:])


_F16_MAX = 65504.0
_SLOT = SeasonalBaseline._SLOT
_PAIR = SeasonalBaseline._PAIR
_floor = math.floor
_sqrt = math.sqrt
# Byte offsets in a day type of the slots before and after local hour h0 + 0.5,
# indexed by h0 from -1 to 23: they wrap around midnight within the same day
# type (good enough at night).
_BEFORE = tuple(8 * (h % 24) for h in range(24))
_AFTER = tuple(8 * ((h + 1) % 24) for h in range(24))


def _read_slots(buf: bytearray, oa: int, ob: int) -> tuple[float, float, int, float, float, int]:
    """(mean, variance, weight in 1/16ths) of the slots at byte offsets ``oa`` and ``ob``, in one tuple."""
    if ob == oa + 8:
        return _PAIR.unpack_from(buf, oa)
    return _SLOT.unpack_from(buf, oa) + _SLOT.unpack_from(buf, ob)


def _mix(
    ma: float, va: float, na16: int, mb: float, vb: float, nb16: int, f: float
) -> tuple[float, float, int]:
    """Blend two slots (mean, variance, weight in 1/16ths) at fraction ``f`` of the way from a to b."""
    na, nb = na16 >> 4, nb16 >> 4
    if na and nb:
        return (1 - f) * ma + f * mb, (1 - f) * va + f * vb, min(na, nb)
    if na:
        return ma, va, na // 2
    if nb:
        return mb, vb, nb // 2
    return 0.0, 0.0, 0
