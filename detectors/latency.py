"""LatencySpikeDetector: windowed p95 latency and 5xx ratio per service and per host."""

from __future__ import annotations

import math

from .baseline import EWBaseline
from .model import Verdict, z_score_to_unit

__all__ = ["LatencySpikeDetector", "LatencyState"]


class LatencyState:
    """Per-key model: EW mean/variance of log p50, log p95 and the 5xx ratio (60 bytes)."""

    __slots__ = ("p50", "p95", "errors")

    def __init__(self, p50: EWBaseline, p95: EWBaseline, errors: EWBaseline) -> None:
        self.p50 = p50
        self.p95 = p95
        self.errors = errors

    def to_bytes(self) -> bytes:
        return self.p50.to_bytes() + self.p95.to_bytes() + self.errors.to_bytes()

    @classmethod
    def from_bytes(cls, data: bytes | bytearray, det: LatencySpikeDetector) -> LatencyState:
        k = len(data) // 3
        return cls(*(EWBaseline.from_bytes(data[i * k : (i + 1) * k], det.alpha) for i in range(3)))


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
    threshold_z, min_ratio, min_ratio_p50, min_error_ratio
        Sensitivity (see above; ``min_ratio_p50`` is the median's ratio).
    alpha
        Learning rate of the baselines (0.02: about 50 windows of memory).
    warmup
        Windows learned before anything is flagged.
    min_count
        Minimum requests in a window for its p95 to mean something.
    noise_floor
        Variance floor of the log quantiles.
    learn_z
        Windows with a z-score at least this high are learned with 5% weight.
    """

    name = "latency"

    def __init__(
        self,
        threshold_z: float = 5.0,
        min_ratio: float = 1.8,
        min_ratio_p50: float = 1.5,
        min_error_ratio: float = 0.05,
        alpha: float = 0.02,
        warmup: int = 30,
        min_count: int = 20,
        noise_floor: float = 0.01,
        learn_z: float = 3.0,
    ) -> None:
        self.threshold_z = threshold_z
        self.min_ratio = min_ratio
        self.min_ratio_p50 = min_ratio_p50
        self.min_error_ratio = min_error_ratio
        self.alpha = alpha
        self.warmup = warmup
        self.min_count = min_count
        self.noise_floor = noise_floor
        self.learn_z = learn_z

    def new_state(self) -> LatencyState:
        return LatencyState(EWBaseline(self.alpha), EWBaseline(self.alpha), EWBaseline(self.alpha))

    def _quantile(self, signal: str, value: float, b: EWBaseline, min_ratio: float) -> Verdict:
        zt = self.threshold_z
        sd = math.sqrt(b.var + self.noise_floor)
        z = (math.log1p(value) - b.mean) / sd
        expected = math.expm1(b.mean)
        return Verdict(
            signal,
            value,
            expected,
            max(0.0, math.expm1(b.mean - zt * sd)),
            math.expm1(b.mean + zt * sd),
            z_score_to_unit(max(z, 0.0) * 5.0 / zt),
            z >= zt and (value + 1.0) >= min_ratio * (expected + 1.0),
            z=z,
        )

    def score_one(
        self, count: int, p50_ms: float, p95_ms: float, error_ratio: float, state: LatencyState | None
    ) -> list[Verdict]:
        """Verdicts for the three signals of one window (empty when too few requests).

        The median moves when every request slows down (a failing drive, a
        saturated pool) and hardly varies otherwise; the p95 catches slowdowns
        of a part of the traffic; neither moves for a few slow requests.
        """
        if count < self.min_count:
            return []
        if state is None or state.p95.n < self.warmup:
            return [Verdict("latency_p95_ms", p95_ms, 0.0, 0.0, 0.0, 0.0, False, warming_up=True)]
        zt = self.threshold_z
        p95 = self._quantile("latency_p95_ms", p95_ms, state.p95, self.min_ratio)
        p50 = self._quantile("latency_p50_ms", p50_ms, state.p50, self.min_ratio_p50)
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
        return [p95, p50, err]

    def learn_one(
        self, count: int, p50_ms: float, p95_ms: float, error_ratio: float, state: LatencyState | None,
        verdicts: list[Verdict] | None = None,
    ) -> LatencyState | None:
        """Learn one window; suspicious ones (any z >= ``learn_z``) with a small weight,
        so that a slowdown does not become the new normal while it builds up."""
        if count < self.min_count:
            return state
        if state is None:
            state = self.new_state()
        w = 0.05 if verdicts and any(v.z >= self.learn_z for v in verdicts) else 1.0
        state.p50.learn(math.log1p(p50_ms), w)
        state.p95.learn(math.log1p(p95_ms), w)
        state.errors.learn(error_ratio, w)
        return state
