"""TrafficAnomalyDetector: request rate per service against its weekly shape."""

from __future__ import annotations

import math

from .baseline import HoltBaseline, SeasonalBaseline
from .features import WindowFeatures
from .model import Verdict, z_score_to_unit

__all__ = ["TrafficAnomalyDetector", "TrafficState"]


class TrafficState:
    """Per-service model: a seasonal profile and a short-memory fallback, in one 796-byte buffer.

    The buffer is both the state in memory and its serialised form: the
    seasonal profile's 768 bytes (see :class:`SeasonalBaseline`), then the
    fallback's level, trend, variance and count (see :class:`HoltBaseline`).
    The detector reads and writes it; about 900 bytes per service in memory.
    """

    __slots__ = ("buf",)
    _HOLT = SeasonalBaseline.SIZE
    SIZE = _HOLT + HoltBaseline._FMT.size

    def __init__(self, buf: bytearray | None = None) -> None:
        self.buf = buf if buf is not None else bytearray(self.SIZE)

    def recent(self, alpha: float) -> HoltBaseline:
        return HoltBaseline.from_bytes(self.buf[self._HOLT:], alpha)

    def to_bytes(self) -> bytes:
        return bytes(self.buf)

    @classmethod
    def from_bytes(cls, data: bytes, det: TrafficAnomalyDetector | None = None) -> TrafficState:
        if len(data) != cls.SIZE:
            raise ValueError(f"a traffic state is {cls.SIZE} bytes, not {len(data)}")
        return cls(bytearray(data))


class TrafficAnomalyDetector:
    """Flags request rates far from what this service usually has at this time of week.

    The rate's log is compared with a seasonal profile (day type x hour,
    see :class:`SeasonalBaseline`): an 08:00 school-morning peak is expected
    and does not alert, three times that level does. Until the profile has
    seen ``warmup`` windows at this time of the week, a short-memory baseline
    (level and trend, so it follows a ramp) stands in, with stricter
    thresholds (``fallback_z``, ``fallback_ratio``).
    Both directions are flagged (a collapse of traffic is news too) but only
    with at least ``min_count`` requests expected or seen.

    Parameters
    ----------
    threshold_z
        |z| of log(rate) needed to flag.
    min_ratio
        The rate must also be this many times the expected one (or 1/that).
    seasonal_alpha, recent_alpha
        Learning rates of the seasonal slots (per window: 0.005 with 1-minute
        windows remembers about 3 days of each hour) and of the fallback.
    warmup
        Windows a seasonal slot must have seen before it is trusted.
    timezone
        Time zone of the weekly shape (school hours are local).
    holiday_calendar, holidays
        Public holidays (a calendar name, ``FR``, and extra dates) are
        learned and scored as Sundays.
    learn_z
        Windows with |z| at least this are learned with 5% weight.
    noise_floor
        Variance added to the learned one (relative noise never below this).
    min_count
        Minimum requests per window (seen or expected) to flag at all.
    """

    name = "traffic"
    signal = "request_rate"

    def __init__(
        self,
        threshold_z: float = 5.0,
        min_ratio: float = 2.0,
        seasonal_alpha: float = 0.005,
        recent_alpha: float = 0.1,
        warmup: int = 45,
        fallback_z: float = 8.0,
        fallback_ratio: float = 3.0,
        fallback_warmup: int = 30,
        timezone: str = "UTC",
        noise_floor: float = 0.01,
        min_count: int = 30,
        holiday_calendar: str = "none",
        holidays: frozenset = frozenset(),
        learn_z: float = 4.0,
    ) -> None:
        self.threshold_z = threshold_z
        self.min_ratio = min_ratio
        self.seasonal_alpha = seasonal_alpha
        self.recent_alpha = recent_alpha
        self.warmup = warmup
        self.fallback_z = fallback_z
        self.fallback_ratio = fallback_ratio
        self.fallback_warmup = fallback_warmup
        self.timezone = timezone
        self.noise_floor = noise_floor
        self.min_count = min_count
        self.holiday_calendar = holiday_calendar
        self.holidays = holidays
        self.learn_z = learn_z
        # Parameters of the seasonal profile; each service's state has only its bytes.
        self._profile = SeasonalBaseline(**self._seasonal_params())

    def _seasonal_params(self) -> dict:
        return {"alpha": self.seasonal_alpha, "tz": self.timezone,
                "calendar": self.holiday_calendar, "holidays": frozenset(self.holidays)}

    def new_state(self) -> TrafficState:
        return TrafficState()

    def score_one(self, f: WindowFeatures, state: TrafficState | None) -> Verdict:
        """Score one window's rate before learning it."""
        dur = f.end - f.start
        x = math.log1p(f.count)
        mean, var, n = (0.0, 0.0, 0) if state is None else self._profile.expect(f.start + dur / 2, state.buf)
        seasonal = n >= self.warmup
        if seasonal:
            zt, rt = self.threshold_z, self.min_ratio
        else:
            rec = state.recent(self.recent_alpha) if state is not None else None
            if rec is None or rec.n < self.fallback_warmup:
                return Verdict(self.signal, f.count / dur, 0.0, 0.0, 0.0, 0.0, False, warming_up=True)
            mean, var = rec.predict(), rec.var
            zt, rt = self.fallback_z, self.fallback_ratio
        expected = math.expm1(mean)
        # Poisson noise of a count c is 1/c in log terms; never trust less than noise_floor.
        sd = math.sqrt(var + self.noise_floor + 1.0 / (expected + 1.0))
        z = (x - mean) / sd
        ratio = (f.count + 1.0) / (expected + 1.0)
        flagged = (
            abs(z) >= zt
            and (ratio >= rt or ratio <= 1.0 / rt)
            and max(f.count, expected) >= self.min_count
        )
        return Verdict(
            self.signal,
            f.count / dur,
            expected / dur,
            max(0.0, math.expm1(mean - zt * sd)) / dur,
            math.expm1(mean + zt * sd) / dur,
            z_score_to_unit(z * 5.0 / zt),
            flagged,
            warming_up=False,
            z=z,
        )

    def learn_one(self, f: WindowFeatures, state: TrafficState | None, verdict: Verdict | None = None) -> TrafficState:
        """Learn one window; flagged or suspicious ones with a small weight so incidents do not become normal."""
        if state is None:
            state = self.new_state()
        w = 0.05 if verdict is not None and (verdict.flagged or abs(verdict.z) >= self.learn_z) else 1.0
        x = math.log1p(f.count)
        self._profile.learn(f.start + (f.end - f.start) / 2, x, w, state.buf)
        rec = state.recent(self.recent_alpha)
        rec.learn(x, w)
        state.buf[TrafficState._HOLT:] = rec.to_bytes()
        return state
