"""Score one metric series with any of the detectors ``tocsin score`` offers.

``make_series_scorer(spec)`` returns an object with
``score_learn_one(x, t) -> float`` (a score in [0, 1], computed before the
point is learned) and ``nbytes() -> int`` (the size of its learned state):

``tocsin``
    :class:`detectors.univariate.UnivariateDetector`, the default.
``traffic``
    The worker's :class:`detectors.traffic.TrafficAnomalyDetector`: each
    value is the request count of a window that ends at its timestamp and
    lasts the interval since the previous one (rounded, negatives as 0: the
    detector models counts).  Its statistic is ``|z|`` of the log count.
``latency``
    The worker's :class:`detectors.latency.LatencySpikeDetector`: each value
    is a window's p50 and p95 (in ms) with enough requests to be scored and
    no errors.  Its statistic is the p95 ``z`` floored at 0 (the detector
    watches slowdowns only).
``river:<Class>[:<json params>]``
    Any class of ``river.anomaly`` (e.g. ``river:HalfSpaceTrees``,
    ``river:GaussianScorer:{"grace_period": 50}``).  Every River detector
    sees the same input: the value min-max scaled by the range seen *before*
    it (``{"x": scaled}``; supervised ones such as ``GaussianScorer`` get it
    as the target ``y``).

The foreign detectors' raw statistics go through
:class:`detectors.univariate.StatisticScorer`, the calibration, echo
suppression and [0, 1] mapping of tocsin's own scorer, so that a benchmark
compares what each detector sees rather than how its scale is mapped.

Example
-------
>>> s = make_series_scorer('river:GaussianScorer:{"grace_period": 5}')
>>> scores = [s.score_learn_one(float(i % 7), 60.0 * i) for i in range(50)]
>>> all(0.0 <= v < 1.0 for v in scores)
True
"""

from __future__ import annotations

import json
import math
import pickle  # noqa: S403 - measures the size of a River model, loads nothing
from typing import TYPE_CHECKING

from .errors import ConfigError
from .univariate import StatisticScorer, UnivariateDetector

if TYPE_CHECKING:
    from .latency import LatencyState

__all__ = ["SCORER_NAMES", "make_series_scorer"]

SCORER_NAMES = ("tocsin", "traffic", "latency", "river:<Class>[:<json params>]")


class _Tocsin:
    def __init__(self) -> None:
        self.det = UnivariateDetector()

    def score_learn_one(self, x: float, t: float | None) -> float:
        return self.det.score_learn_one(x, t)

    def nbytes(self) -> int:
        return len(self.det.to_bytes())


class _Traffic:
    """The worker's traffic detector on a series of window counts."""

    def __init__(self) -> None:
        from .features import WindowFeatures
        from .traffic import TrafficAnomalyDetector

        self._wf = WindowFeatures
        self.det = TrafficAnomalyDetector()
        self.state = self.det.new_state()
        self.post = StatisticScorer()
        self._tprev: float | None = None

    def score_learn_one(self, x: float, t: float | None) -> float:
        t = 0.0 if t is None else float(t)
        width = t - self._tprev if self._tprev is not None and t > self._tprev else 300.0
        self._tprev = t
        f = self._wf("series", t - width, t, int(round(max(x, 0.0))))
        v = self.det.score_one(f, self.state)
        self.state = self.det.learn_one(f, self.state, v)
        return self.post.score_learn_one(0.0 if v.warming_up else abs(v.z), t)

    def nbytes(self) -> int:
        return len(self.state.to_bytes()) + self.post.nbytes()


class _Latency:
    """The worker's latency detector on a series of window quantiles."""

    def __init__(self) -> None:
        from .latency import LatencySpikeDetector

        self.det = LatencySpikeDetector()
        self.state: LatencyState | None = None
        self.post = StatisticScorer()

    def score_learn_one(self, x: float, t: float | None) -> float:
        n = self.det.min_count
        ms = max(x, 0.0)  # log1p of a latency: the detector models values >= 0
        verdicts = self.det.score_one(n, ms, ms, 0.0, self.state)
        self.state = self.det.learn_one(n, ms, ms, 0.0, self.state, verdicts)
        z = 0.0 if verdicts[0].warming_up else max(verdicts[0].z, 0.0)
        return self.post.score_learn_one(z, t)

    def nbytes(self) -> int:
        return (len(self.state.to_bytes()) if self.state else 0) + self.post.nbytes()


class _River:
    """A ``river.anomaly`` detector on the min-max scaled value."""

    def __init__(self, model) -> None:
        from river.base import SupervisedAnomalyDetector

        self.model = model
        self.supervised = isinstance(model, SupervisedAnomalyDetector)
        self.post = StatisticScorer()
        self.lo = math.inf
        self.hi = -math.inf

    def score_learn_one(self, x: float, t: float | None) -> float:
        # scaled by the range seen before x (no look ahead); a new extreme leaves [0, 1]
        if self.hi > self.lo:
            u = (x - self.lo) / (self.hi - self.lo)
        else:
            u = 0.0 if x == self.lo or self.lo == math.inf else math.copysign(1.0, x - self.lo)
        self.lo, self.hi = min(self.lo, x), max(self.hi, x)
        if self.supervised:
            r = self.model.score_one({}, u)
            self.model.learn_one({}, u)
        else:
            r = self.model.score_one({"x": u})
            self.model.learn_one({"x": u})
        r = float(r)
        return self.post.score_learn_one(r if math.isfinite(r) else 0.0, t)

    def nbytes(self) -> int:
        return len(pickle.dumps(self.model)) + self.post.nbytes() + 16


def make_series_scorer(spec: str):
    """Build the series scorer that ``spec`` names (see the module docstring).

    Raises
    ------
    ConfigError
        An unknown name, a class River does not have, or parameters that are
        not a JSON object or that the class refuses.
    """
    if spec in ("tocsin", "default"):
        return _Tocsin()
    if spec == "traffic":
        return _Traffic()
    if spec == "latency":
        return _Latency()
    if spec.startswith("river:"):
        name, _, raw = spec[len("river:") :].partition(":")
        from river import anomaly
        from river.base import AnomalyDetector, SupervisedAnomalyDetector

        cls = getattr(anomaly, name, None)
        if not (
            isinstance(cls, type)
            and issubclass(cls, AnomalyDetector | SupervisedAnomalyDetector)
            and name in anomaly.__all__
        ):
            known = ", ".join(
                n for n in anomaly.__all__ if n not in ("QuantileFilter", "ThresholdFilter")
            )
            raise ConfigError(f"unknown River anomaly detector {name!r} (river.anomaly has: {known})")
        try:
            params = json.loads(raw) if raw else {}
        except json.JSONDecodeError as exc:
            raise ConfigError(f"parameters of {name} are not JSON: {exc.msg}") from exc
        if not isinstance(params, dict):
            raise ConfigError(f"parameters of {name} must be a JSON object, got {raw}")
        try:
            model = cls(**params)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"river.anomaly.{name}{raw and ' ' + raw}: {exc}") from exc
        return _River(model)
    raise ConfigError(f"unknown detector {spec!r} (available: {', '.join(SCORER_NAMES)})")
