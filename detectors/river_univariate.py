"""tocsin's series scorer as a River anomaly detector.

:class:`UnivariateAnomalyDetector` wraps
:class:`detectors.univariate.UnivariateDetector` behind River's
``river.base.AnomalyDetector`` API (what ``river.anomaly`` detectors derive from) (``learn_one(x)`` /
``score_one(x)`` on a dict of features), so it goes wherever a River
detector goes: after a scaler in a ``river.compose.Pipeline``, inside
``river.anomaly.QuantileFilter`` or ``ThresholdFilter``.

It watches one feature of ``x`` (``on``; by default the only one of the
first observation learned; an observation without it scores 0 and is not
learned),
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
        self._key: str | None = None  # the feature watched when ``on`` is None

    def _read(self, x: dict) -> tuple[float, float | None]:
        """The watched value of ``x`` (NaN when ``x`` lacks it) and its time."""
        t = None
        if self.time_key is not None and self.time_key in x:
            t = float(x[self.time_key])
            t = t if math.isfinite(t) else None
        key = self.on if self.on is not None else self._key
        if key is None:
            keys = [k for k in x if k != self.time_key]
            if not keys:
                return math.nan, t
            if len(keys) != 1:
                raise ValueError(f"x has {len(keys)} features: name the one to watch with on=")
            key = keys[0]
        v = x.get(key)
        return (math.nan if v is None else float(v)), t

    def learn_one(self, x: dict) -> None:
        v, t = self._read(x)
        if self.on is None and self._key is None and v == v:
            # the only feature of the first observation is the one watched from then on
            self._key = next(k for k in x if k != self.time_key)
        self._det.learn_one(v, t)  # a missing value (NaN) is not learned

    def score_one(self, x: dict) -> float:
        v, t = self._read(x)
        return self._det.score_one(v, t)  # a missing value scores 0

    @classmethod
    def _unit_test_params(cls):
        yield {}
