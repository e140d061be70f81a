"""tocsin's scorer inside River pipelines, and River / worker detectors behind tocsin's mapping."""

from __future__ import annotations

import math

import numpy as np
import pytest
from river import anomaly, compose, preprocessing
from river.base import AnomalyDetector

from detectors.river_adapter import make_series_scorer
from detectors.river_univariate import UnivariateAnomalyDetector
from detectors.univariate import StatisticScorer, UnivariateDetector


def _stream(n=800, seed=0, spike_at=650):
    rng = np.random.default_rng(seed)
    x = 5.0 + np.sin(np.arange(n) * 2 * np.pi / 96) + rng.normal(0.0, 0.2, n)
    x[spike_at] += 6.0
    t = 1.4e9 + 300.0 * np.arange(n)
    return x, t


def test_is_a_river_anomaly_detector_in_a_pipeline_with_a_quantile_filter():
    x, t = _stream()
    model = compose.Pipeline(
        preprocessing.StandardScaler(),
        anomaly.QuantileFilter(UnivariateAnomalyDetector(), q=0.995),
    )
    assert isinstance(model["QuantileFilter"].anomaly_detector, AnomalyDetector)
    flagged, scores = [], []
    for i, v in enumerate(x):
        s = model.score_one({"v": float(v)})
        scores.append(s)
        if model["QuantileFilter"].classify(s):
            flagged.append(i)
        model.learn_one({"v": float(v)})
    assert 650 in flagged
    # past the quantile's warm-up, few points but the spike cross it
    assert len([i for i in flagged if i >= 200]) <= 0.02 * len(x)
    assert all(0.0 <= s < 1.0 for s in scores)


def test_same_scores_as_the_plain_detector_with_the_time_feature():
    x, t = _stream(n=500, seed=1, spike_at=400)
    wrapped = UnivariateAnomalyDetector(on="v", time_key="t")
    plain = UnivariateDetector()
    for v, e in zip(x, t, strict=True):
        row = {"v": float(v), "t": float(e), "other": 1.0}
        a = wrapped.score_one(row)
        wrapped.learn_one(row)
        assert a == plain.score_learn_one(float(v), float(e))
    clone = wrapped.clone()  # River's clone: same parameters, fresh state
    assert clone.on == "v" and clone.time_key == "t" and clone._det._n == 0


def test_several_features_need_on():
    det = UnivariateAnomalyDetector()
    with pytest.raises(ValueError, match="on="):
        det.score_one({"a": 1.0, "b": 2.0})


@pytest.mark.parametrize(
    "spec", ["traffic", "latency", "river:GaussianScorer", "river:PredictiveAnomalyDetection"]
)
def test_foreign_detectors_score_the_spike_highest(spec):
    x, t = _stream(n=900, seed=2, spike_at=800)
    s = make_series_scorer(spec)
    scores = [s.score_learn_one(float(v) * 20.0, float(e)) for v, e in zip(x, t, strict=True)]
    assert all(0.0 <= v < 1.0 and math.isfinite(v) for v in scores)
    assert scores[800] == max(scores[400:])
    assert s.nbytes() > 0


def test_statistic_scorer_is_monotone_in_the_statistic():
    rng = np.random.default_rng(3)
    a, b = StatisticScorer(), StatisticScorer()
    for r in rng.exponential(1.0, 500):
        a.score_learn_one(float(r))
        b.score_learn_one(float(r))
    assert a.score_learn_one(2.0) < b.score_learn_one(8.0)
    c = StatisticScorer()
    assert c.score_learn_one(float("nan")) == 0.0  # no statistic yet: no evidence


def _river_checks():
    from river.checks import common

    names = [
        "check_clone_is_idempotent", "check_clone_same_class", "check_clone_with_new_params_applies",
        "check_get_params_matches_signature", "check_init_default_params_are_not_mutable",
        "check_init_has_default_params_for_tests", "check_pickling_supports_roundtrip",
        "check_repr", "check_repr_roundtrips_clone", "check_doc", "check_tags",
        "check_learn_one", "check_predict_one_pure", "check_predict_one_before_any_learn",
        "check_shuffle_features_no_impact", "check_emerging_features", "check_disappearing_features",
        "check_radically_disappearing_features", "check_clone_is_independent",
        "check_bounded_memory_growth", "check_no_state_aliasing_with_input", "check_pickling",
    ]
    return [getattr(common, n) for n in names]


@pytest.mark.parametrize("check", _river_checks(), ids=lambda c: c.__name__)
def test_passes_rivers_own_estimator_checks(check):
    """River's estimator checks (those that need neither scikit-learn nor pandas)."""
    import inspect
    import random

    rng = random.Random(1)
    data = [({"v": rng.gauss(0.0, 1.0)}, None) for _ in range(300)]
    if list(inspect.signature(check).parameters) == ["model"]:
        check(UnivariateAnomalyDetector())
    else:
        check(UnivariateAnomalyDetector(), data)


def test_missing_feature_scores_zero_and_is_not_learned():
    det = UnivariateAnomalyDetector()
    for i in range(50):
        det.learn_one({"v": float(i % 5)})
    n = det._det._n
    assert det.score_one({}) == 0.0 and det.score_one({"w": 3.0}) == 0.0
    det.learn_one({"w": 3.0})
    assert det._det._n == n
