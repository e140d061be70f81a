"""DiskLearner: a River online classifier over per-drive features, fed by delayed failure labels.

Not compiled (River objects are dynamic). The rules of
:class:`detectors.disk.DiskFailureDetector` explain an alert; this is the
learned part beside them: it estimates the probability that a drive fails
within ``horizon_days`` of a reading, from the detector's per-drive features
(:meth:`DiskFailureDetector.features_one`).

Failure records are delayed labels. Each reading waits in a per-drive queue
until its label is known: positive when the drive's failure record arrives
within ``horizon_days`` after the reading, negative once ``horizon_days`` have
passed without one. Only then does the classifier learn it, so a reading is
always scored before its label could be known (progressive validation with a
delay, as ``river.evaluate.progressive_val_score`` does with ``delay``).
State: the classifier plus, per drive, the readings of the last
``horizon_days`` (bounded by ``max_pending`` per drive).

Examples
--------
>>> from river import linear_model
>>> lrn = DiskLearner(linear_model.LogisticRegression(), horizon_days=2.0)
>>> day = 86400.0
>>> for i in range(6):
...     lrn.observe("a", i * day, {"rise_5": 0.0}, failure=False)
...     lrn.observe("b", i * day, {"rise_5": float(i)}, failure=i == 5)
>>> lrn.n_positive, lrn.n_negative
(3, 6)
>>> lrn.predict_proba_one({"rise_5": 5.0}) > lrn.predict_proba_one({"rise_5": 0.0})
True
"""

from __future__ import annotations

from collections import deque
from typing import Any

__all__ = ["DiskLearner"]

_DAY = 86400.0


class DiskLearner:
    """Delayed-label wrapper of a River binary classifier (``learn_one`` / ``predict_proba_one``).

    Parameters
    ----------
    model
        A River classifier, e.g. ``forest.ARFClassifier`` or a
        ``StandardScaler | LogisticRegression`` pipeline.
    horizon_days
        A reading is positive when its drive fails within this many days.
    max_pending
        Readings kept per drive while their label is unknown (oldest dropped).
    negative_every
        Learn one negative label in this many (the others are counted, not
        learned): healthy readings outnumber failing ones a hundredfold, and
        a forest learns the rare class better from a balanced stream
        (StreamDFP downsamples negatives the same way).
    """

    def __init__(
        self, model: Any, horizon_days: float = 14.0, max_pending: int = 64, negative_every: int = 1
    ) -> None:
        if negative_every < 1:
            raise ValueError(f"negative_every must be >= 1, got {negative_every!r}")
        self.model = model
        self.horizon_days = horizon_days
        self.max_pending = max_pending
        self.negative_every = negative_every
        self._pending: dict[str, deque[tuple[float, dict[str, float]]]] = {}
        self.n_positive = 0
        self.n_negative = 0

    def predict_proba_one(self, x: dict[str, float]) -> float:
        """P(failure within the horizon) for these features (0 before any label)."""
        if not (self.n_positive and self.n_negative):
            return 0.0
        return float(self.model.predict_proba_one(x).get(True, 0.0))

    def observe(self, disk: str, ts: float, x: dict[str, float], failure: bool) -> None:
        """Queue a reading; learn the labels that this reading makes known."""
        q = self._pending.setdefault(disk, deque(maxlen=self.max_pending))
        horizon = self.horizon_days * _DAY
        while q and ts - q[0][0] > horizon:  # the horizon passed without a failure
            self._learn(q.popleft()[1], False)
        if failure:
            for _, old in q:
                self._learn(old, True)
            self._learn(x, True)
            del self._pending[disk]
        else:
            q.append((ts, x))

    def _learn(self, x: dict[str, float], y: bool) -> None:
        if y:
            self.model.learn_one(x, y)
            self.n_positive += 1
        else:
            if self.n_negative % self.negative_every == 0:
                self.model.learn_one(x, y)
            self.n_negative += 1
