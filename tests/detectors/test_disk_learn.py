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


def test_one_negative_in_k_is_learned_and_all_are_counted():
    from river import dummy

    def run(every: int) -> tuple[float, DiskLearner]:
        lrn = DiskLearner(dummy.PriorClassifier(), horizon_days=1.0, negative_every=every)
        for k in range(10):  # 10 drives, each 10 healthy readings 2 days apart, then one that fails
            for i in range(10):
                lrn.observe(f"d{k}", (100 * k + 2 * i) * DAY, {"x": 0.0}, failure=False)
            lrn.observe(f"f{k}", 100 * k * DAY, {"x": 1.0}, failure=True)
        return lrn.predict_proba_one({"x": 0.0}), lrn

    p_all, all_ = run(1)
    p_some, some = run(10)
    # each drive's last reading still waits for its label: 9 negatives a drive are known
    assert all_.n_negative == some.n_negative == 90 and all_.n_positive == some.n_positive == 10
    assert abs(p_all - 10 / 100) < 1e-9  # the prior saw every label
    assert abs(p_some - 10 / 19) < 1e-9  # ... or one negative in ten (the 1st, 11th, ... 81st)
