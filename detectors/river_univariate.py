"""tocsin's series scorer as a River anomaly detector.

:class:`UnivariateAnomalyDetector` wraps
:class:`detectors.univariate.UnivariateDetector` behind River's
``river.base.AnomalyDetector`` API (what ``river.anomaly`` detectors derive from) (``learn_one(x)`` /
``score_one(x)`` on a dict of features), so it goes wherever a River
detector goes: after a scaler in a ``river.compose.Pipeline``, inside
``river.anomaly.QuantileFilter`` or ``ThresholdFilter``.

It watches one feature of ``x`` (``on``; the only one when ``x`` has one),
optionally with the event time in epoch seconds from the ``time_key``
feature (the time-of-day and weekly statistics need it).  Scores are in
[0, 1), computed from what was learned before.

Example
-------
>>> import random
>>> from river import anomaly, compose, preprocessing
>>> rng = random.Random(42)
>>> model = compose.Pipeline(
...     preprocessing.StandardScaler(),
...     anomaly.QuantileFilter(UnivariateAnomalyDetector(), q=0.99),
... )
>>> flagged = []
>>> for i in range(600):
...     x = {"v": rng.gauss(0.0, 1.0) + (12.0 if i == 500 else 0.0)}
...     score = model.score_one(x)
...     if model["QuantileFilter"].classify(score):
...         flagged.append(i)
...     model.learn_one(x)
>>> 500 in flagged
True
"""

from __future__ import annotations

import math

from river.base import AnomalyDetector

from .univariate import UnivariateDetector

__all__ = ["UnivariateAnomalyDetector"]


class UnivariateAnomalyDetector(AnomalyDetector):
    """River anomaly detector on one numeric feature, scored by tocsin's univariate scorer.

    Parameters
    ----------
    on : str, optional
        Feature to watch; ``None`` takes the only feature of ``x`` (other
        than ``time_key``).
    time_key : str, optional
        Feature holding the event time (epoch seconds); ``None``: no times.
    params : dict, optional
        Constructor arguments of
        :class:`detectors.univariate.UnivariateDetector`.
    """

    def __init__(
        self, on: str | None = None, time_key: str | None = None, params: dict | None = None
    ) -> None:
        self.on = on
        self.time_key = time_key
        self.params = params
        self._det = UnivariateDetector(**(params or {}))

    def _read(self, x: dict) -> tuple[float, float | None]:
        t = None
        if self.time_key is not None and self.time_key in x:
            t = float(x[self.time_key])
        if self.on is not None:
            v = x[self.on]
        else:
            keys = [k for k in x if k != self.time_key]
            if len(keys) != 1:
                raise ValueError(f"x has {len(keys)} features: name the one to watch with on=")
            v = x[keys[0]]
        return float(v), (t if t is not None and math.isfinite(t) else None)

    def learn_one(self, x: dict) -> None:
        v, t = self._read(x)
        self._det.learn_one(v, t)

    def score_one(self, x: dict) -> float:
        v, t = self._read(x)
        return self._det.score_one(v, t)

    @classmethod
    def _unit_test_params(cls):
        yield {}
