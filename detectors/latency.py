"""LatencySpikeDetector: windowed p95 latency and 5xx ratio per service and per host."""

from __future__ import annotations

import math

from .baseline import EWBaseline
from .model import Verdict, z_score_to_unit

__all__ = ["LatencySpikeDetector", "LatencyState"]


class LatencyState:
    """Per-key model: EW mean/variance of log p95 and of the 5xx ratio (48 bytes)."""

    __slots__ = ("p95", "errors")

    def __init__(self, p95: EWBaseline, errors: EWBaseline) -> None:
        self.p95 = p95
        self.errors = errors

    def to_bytes(self) -> bytes:
        return self.p95.to_bytes() + self.errors.to_bytes()

    @classmethod
    def from_bytes(cls, data: bytes, det: LatencySpikeDetector) -> LatencyState:
        k = len(data) // 2
        return cls(EWBaseline.from_bytes(data[:k], det.alpha), EWBaseline.from_bytes(data[k:], det.alpha))


class LatencySpikeDetector:
    """Flags windows whose p95 latency or 5xx ratio jumps above the key's usual.

    Works on window quantiles, not single requests, so one slow request in a
    heavy tail moves nothing; windows with fewer than ``min_count`` requests
    are neither scored nor learned. The p95 must be ``threshold_z`` standard
    deviations (in log space) above the learned level *and* ``min_ratio``
    times it; the 5xx ratio must exceed the usual by ``min_error_ratio`` and
    by ``threshold_z`` binomial standard deviations.

    Parameters
    ----------
    threshold_z, min_ratio, min_error_ratio
        Sensitivity (see above).
    alpha
        Learning rate of the baselines (0.02: about 50 windows of memory).
    warmup
        Windows learned before anything is flagged.
    min_count
        Minimum requests in a window for its p95 to mean something.
    noise_floor
        Variance floor of log p95.
    """

    name = "latency"

    def __init__(
        self,
        threshold_z: float = 5.0,
        min_ratio: float = 1.8,
        min_error_ratio: float = 0.05,
        alpha: float = 0.02,
        warmup: int = 30,
        min_count: int = 20,
        noise_floor: float = 0.01,
    ) -> None:
        self.threshold_z = threshold_z
        self.min_ratio = min_ratio
        self.min_error_ratio = min_error_ratio
        self.alpha = alpha
        self.warmup = warmup
        self.min_count = min_count
        self.noise_floor = noise_floor

    def new_state(self) -> LatencyState:
        return LatencyState(EWBaseline(self.alpha), EWBaseline(self.alpha))

    def score_one(self, count: int, p95_ms: float, error_ratio: float, state: LatencyState | None) -> list[Verdict]:
        """Verdicts for the two signals of one window (empty when too few requests)."""
        if count < self.min_count:
            return []
        if state is None or state.p95.n < self.warmup:
            return [Verdict("latency_p95_ms", p95_ms, 0.0, 0.0, 0.0, 0.0, False, warming_up=True)]
        zt = self.threshold_z
        b = state.p95
        sd = math.sqrt(b.var + self.noise_floor)
        x = math.log1p(p95_ms)
        z = (x - b.mean) / sd
        expected = math.expm1(b.mean)
        lat = Verdict(
            "latency_p95_ms",
            p95_ms,
            expected,
            max(0.0, math.expm1(b.mean - zt * sd)),
            math.expm1(b.mean + zt * sd),
            z_score_to_unit(max(z, 0.0) * 5.0 / zt),
            z >= zt and (p95_ms + 1.0) >= self.min_ratio * (expected + 1.0),
            z=z,
        )
        e = state.errors
        p = min(max(e.mean, 0.001), 0.999)
        esd = math.sqrt(p * (1 - p) / count + e.var)
        ez = (error_ratio - e.mean) / esd
        err = Verdict(
            "error_ratio_5xx",
            error_ratio,
            e.mean,
            max(0.0, e.mean - zt * esd),
            min(1.0, e.mean + max(zt * esd, self.min_error_ratio)),
            z_score_to_unit(max(ez, 0.0) * 5.0 / zt),
            ez >= zt and error_ratio - e.mean >= self.min_error_ratio,
            z=ez,
        )
        return [lat, err]

    def learn_one(
        self, count: int, p95_ms: float, error_ratio: float, state: LatencyState | None, flagged: bool = False
    ) -> LatencyState | None:
        """Learn one window (flagged ones with a small weight)."""
        if count < self.min_count:
            return state
        if state is None:
            state = self.new_state()
        w = 0.05 if flagged else 1.0
        state.p95.learn(math.log1p(p95_ms), w)
        state.errors.learn(error_ratio, w)
        return state
