"""DiskLearner: River classifier over the disk detector's features, labels delayed (seeded drives)."""

from __future__ import annotations

import random

from river import compose, linear_model, optim, preprocessing

from detectors.disk import DiskFailureDetector, DriveState
from detectors.disk_learn import DiskLearner
from detectors.events import DiskHealthEvent

DAY = 86400.0


def fleet(seed: int, n: int, days: int, failing_every: int):
    """Daily readings of ``n`` drives; every ``failing_every``-th climbs in SMART 5 and fails at a random day."""
    r = random.Random(seed)
    plans = {}
    for k in range(n):
        if k % failing_every == 0:
            end = r.randrange(15, days)
            plans[f"d{k}"] = (end - r.randrange(5, 12), end)
    for d in range(days):
        for k in range(n):
            disk = f"d{k}"
            start, end = plans.get(disk, (None, None))
            if end is not None and d > end:
                continue
            v5 = float(6 * max(0, d - start)) if start is not None and d >= start else 0.0
            yield DiskHealthEvent(ts=d * DAY, host="h", disk=disk, model="M",
                                  smart={"5": v5, "9": 1000.0 + 24 * d}, failure=(d == end) or None)


def test_labels_are_learned_only_once_known_and_the_model_learns_failures():
    lrn = DiskLearner(compose.Pipeline(preprocessing.StandardScaler(),
                                       linear_model.LogisticRegression(optimizer=optim.SGD(0.05))),
                      horizon_days=7.0)
    det = DiskFailureDetector()
    states: dict[str, DriveState] = {}
    for ev in fleet(1, 60, 60, 6):
        st = states.get(ev.disk)
        x = det.features_one(ev, st)
        before = lrn.n_positive + lrn.n_negative
        lrn.observe(ev.disk, ev.ts, x, bool(ev.failure))
        if not ev.failure and ev.ts < 7 * DAY:
            assert lrn.n_positive + lrn.n_negative == before  # no label is known within the horizon
        states[ev.disk] = det.learn_one(ev, st)
    assert lrn.n_positive > 0 and lrn.n_negative > lrn.n_positive
    # the same healthy drive, as it is, and as if its SMART 5 now climbed
    climbing = det.features_one(DiskHealthEvent(ts=61 * DAY, host="h", disk="d1", model="M",
                                                smart={"5": 60.0, "9": 2500.0}), states["d1"])
    flat = det.features_one(DiskHealthEvent(ts=61 * DAY, host="h", disk="d1", model="M",
                                            smart={"5": 0.0, "9": 2500.0}), states["d1"])
    assert lrn.predict_proba_one(climbing) > 0.5 > lrn.predict_proba_one(flat)


def test_no_label_no_opinion_and_pending_is_bounded():
    lrn = DiskLearner(linear_model.LogisticRegression(), horizon_days=30.0, max_pending=5)
    for i in range(20):
        lrn.observe("a", i * DAY, {"rise_5": 1.0}, failure=False)
    assert lrn.predict_proba_one({"rise_5": 1.0}) == 0.0  # no positive label yet
    assert len(lrn._pending["a"]) == 5
