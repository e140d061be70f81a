"""Tests of detectors.univariate on seeded synthetic streams."""

from __future__ import annotations

import math

import numpy as np
import pytest

from detectors.univariate import UnivariateDetector, score_series


def _noisy_daily(n: int, seed: int = 0, period: int = 96) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    i = np.arange(n)
    x = 10.0 + 3.0 * np.sin(2 * np.pi * i / period) + rng.normal(0.0, 0.5, n)
    t = 1.4e9 + 300.0 * i
    return x, t


def _run(det: UnivariateDetector, xs, ts=None) -> list[float]:
    ts = [None] * len(xs) if ts is None else ts
    return [
        det.score_learn_one(float(x), None if t is None else float(t))
        for x, t in zip(xs, ts, strict=True)
    ]


def test_scores_in_unit_interval_and_finite():
    x, t = _noisy_daily(1500, seed=1)
    x[700] += 40.0
    x[1000:] += 15.0
    s = _run(UnivariateDetector(), x, t)
    assert len(s) == len(x)
    assert all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in s)


def test_spike_scores_higher_than_normal_points():
    x, t = _noisy_daily(1500, seed=2)
    x[1200] += 12.0
    s = np.array(_run(UnivariateDetector(), x, t))
    normal = s[600:1190]
    assert s[1200] > np.quantile(normal, 0.999)
    assert s[1200] > normal.max()


def test_level_shift_scores_higher_than_normal_points():
    x, t = _noisy_daily(1500, seed=3)
    x[1100:] += 8.0
    s = np.array(_run(UnivariateDetector(), x, t))
    assert s[1100:1110].max() > s[600:1090].max()


def test_score_one_does_not_learn():
    x, _ = _noisy_daily(400, seed=4)
    det = UnivariateDetector()
    _run(det, x[:300])
    before = det.to_bytes()
    a = det.score_one(float(x[300]))
    b = det.score_one(float(x[300]))
    assert a == b
    assert det.to_bytes() == before


def test_no_look_ahead():
    x, t = _noisy_daily(1200, seed=5)
    x[900] -= 10.0
    full = score_series(x.tolist(), t.tolist())
    prefix = score_series(x[:950].tolist(), t[:950].tolist())
    assert prefix == full[:950]


def test_round_trip_gives_identical_scores():
    x, t = _noisy_daily(1600, seed=6)
    x[1400] += 9.0
    det = UnivariateDetector()
    _run(det, x[:1100], t[:1100])
    data = det.to_bytes()
    assert isinstance(data, bytes)
    clone = UnivariateDetector.from_bytes(data)
    assert clone.to_bytes() == data
    rest_a = _run(det, x[1100:], t[1100:])
    rest_b = _run(clone, x[1100:], t[1100:])
    assert rest_a == rest_b


def test_round_trip_rejects_garbage():
    with pytest.raises(ValueError):
        UnivariateDetector.from_bytes(b"not a detector")


def test_constructor_arguments_are_stored():
    det = UnivariateDetector(suppress=123, damp=0.25)
    assert det.suppress == 123
    assert det.damp == 0.25
    clone = UnivariateDetector.from_bytes(det.to_bytes())
    assert clone.suppress == 123 and clone.damp == 0.25


def test_creeping_evidence_is_one_alarm():
    """Within the echo horizon a new maximum must beat the last by ``rise``."""
    x, t = _noisy_daily(1500, seed=5)
    x[1200:1230] += np.linspace(4.0, 40.0, 30)  # a ramp: evidence creeps up point by point
    det = UnivariateDetector(rise=1.1)
    ev, out = [], []
    for v, e in zip(x, t, strict=True):
        c = det._compute(float(v), float(e))
        ev.append(c[-2])
        out.append(c[-1])
        det.learn_one(float(v), float(e))
    ev, out = np.array(ev), np.array(out)
    full = np.flatnonzero((out == ev) & (ev > 0.0))
    h = det._horizon(det._dt)  # one day of 5-minute points: 288
    assert h == 288
    for i in full[full >= 1200]:
        recent = ev[max(0, i - h) : i].max()
        assert ev[i] > 1.1 * recent


def test_scores_do_not_saturate():
    rng = np.random.default_rng(7)
    x = rng.standard_t(3, 4000) * 2.0 + 50.0
    x[rng.choice(np.arange(500, 4000), 20, replace=False)] += 60.0
    s = np.array(score_series(x.tolist()))
    assert np.count_nonzero(s >= 1.0) <= 1
    top = np.sort(s)[-20:]
    assert len(np.unique(top)) >= 15


def test_flat_and_constant_series_are_quiet():
    s = score_series([5.0] * 600)
    assert max(s[100:]) < 0.5
    assert all(0.0 <= v <= 1.0 for v in s)


def test_non_finite_input_is_ignored():
    det = UnivariateDetector()
    _run(det, np.linspace(0.0, 1.0, 50))
    assert det.score_learn_one(float("nan")) == 0.0
    assert 0.0 <= det.score_learn_one(0.5) <= 1.0


def _weekly_routine(days: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """5-minute samples: high during the day, a low night, small noise."""
    rng = np.random.default_rng(seed)
    n = 288 * days
    i = np.arange(n)
    hour = (i % 288) / 12.0
    x = np.where((hour >= 8) & (hour < 20), 10.0, 2.0) + rng.normal(0.0, 0.3, n)
    t = 1.4e9 - (1.4e9 % 604800.0) + 300.0 * i
    return x, t


def test_missing_night_drop_is_caught_by_the_weekly_lag():
    x, t = _weekly_routine(14, seed=8)
    night = slice(288 * 10 + 240, 288 * 11 + 96)  # night of day 10 stays high
    x[night] = 10.0 + np.random.default_rng(9).normal(0.0, 0.3, night.stop - night.start)
    s = np.array(_run(UnivariateDetector(), x, t))
    baseline = s[288 * 8 : 288 * 10 + 200].max()
    assert s[night.start : night.start + 60].max() > baseline


def test_weekly_lag_needs_timestamps_and_survives_round_trip():
    x, t = _weekly_routine(9, seed=10)
    det = UnivariateDetector()
    _run(det, x[: 288 * 8], t[: 288 * 8])
    clone = UnivariateDetector.from_bytes(det.to_bytes())
    rest = slice(288 * 8, None)
    assert _run(det, x[rest], t[rest]) == _run(clone, x[rest], t[rest])
    quiet = UnivariateDetector()
    _run(quiet, x[: 288 * 8])  # no timestamps: the weekly ring stays empty
    assert (quiet._wnum == -1).all()


def test_weekly_lag_is_averaged_over_the_week_window():
    """The weekly statistic is the mean signed difference over ``week_window`` seconds."""
    x, t = _weekly_routine(8, seed=14)
    det = UnivariateDetector()
    start = 288 * 7 + 120  # last week's points here are ordinary (no reference withheld)
    _run(det, x[:start], t[:start])
    d = x[start : start + 6] - x[start - 2016 : start - 2016 + 6]
    _run(det, x[start : start + 5], t[start : start + 5])
    eps = 1e-9 * (abs(det._ref) + 1.0)
    wk = det._stats(float(x[start + 5]), float(t[start + 5]))[3][4]
    # a 30-minute window holds the 6 points of the last 1800 s (5-minute samples)
    assert wk == pytest.approx(math.log(abs(d.mean()) + eps) - math.log(eps), rel=1e-5)
    # a point without a lag (gap) restarts the window; hourly samples average nothing
    hourly = UnivariateDetector()
    xs, ts = x[: start + 12 : 12], t[: start + 12 : 12]
    _run(hourly, xs[:-1], ts[:-1])
    got = hourly._stats(float(xs[-1]), float(ts[-1]))[3][4]
    lag = float(xs[-1]) - float(hourly._wval[hourly._week_slot(float(ts[-1]))[0]]) - hourly._ref
    assert got == pytest.approx(math.log(abs(lag) + eps) - math.log(eps), rel=1e-5)


def test_snapshot_stays_compact():
    x, t = _noisy_daily(3000, seed=11)
    det = UnivariateDetector()
    _run(det, x, t)
    assert len(det.to_bytes()) <= 100_000


def test_agreement_of_two_statistics_is_calibrated_and_restored():
    """The sum of the two strongest evidences has a calibrator of its own."""
    x, t = _noisy_daily(800, seed=12)
    det = UnivariateDetector()
    _run(det, x, t)
    agree = det._cal[-1]
    assert agree.n > 0 and agree.lo == agree.lo
    clone = UnivariateDetector.from_bytes(det.to_bytes())
    assert clone._cal[-1].n == agree.n
    assert np.array_equal(clone._cal[-1].counts, agree.counts)


def test_agreement_raises_evidence_when_two_views_agree():
    """Two statistics surprised at once give at least the single-statistic evidence."""
    x, t = _noisy_daily(1200, seed=13)
    det = UnivariateDetector()
    _run(det, x[:1100], t[:1100])
    stats = det._stats(float(x[1100]) + 6.0, float(t[1100]))[3]
    ev = [c.neg_log_p(v) if v == v else 0.0 for c, v in zip(det._cal[:-1], stats, strict=True)]
    top = sorted(ev)
    agree, s, _ = det._evidence(stats)
    assert agree == pytest.approx(5.0 * math.log1p(top[-1] + top[-2]))
    assert det._cal[-1].neg_log_p(agree) >= det._cal[-1].neg_log_p(5.0 * math.log1p(top[-1]))
    penalty = math.log(len(det._cal)) + det.length_penalty * math.log1p(det._n / 100.0)
    assert s >= top[-1] - penalty


def test_anomalous_point_is_no_reference_for_next_week():
    """A point flagged by the other statistics does not become next week's reference."""
    x, t = _weekly_routine(14, seed=15)
    spike = 288 * 5 + 150  # mid-day, after the warm-up
    x[spike] += 30.0
    echo = spike + 2016
    guarded = UnivariateDetector()
    _run(guarded, x[:echo], t[:echo])
    slot = guarded._week_slot(float(t[echo]))[0]
    assert math.isnan(float(guarded._wval[slot]))  # withheld: no reference at all
    assert math.isnan(guarded._stats(float(x[echo]), float(t[echo]))[3][4])
    plain = UnivariateDetector(week_guard=math.inf)
    _run(plain, x[:echo], t[:echo])
    wk = plain._stats(float(x[echo]), float(t[echo]))[3][4]
    assert plain._cal[4].neg_log_p(wk) > 3.0  # without the guard, last week's spike echoes
    # the points whose short vector held the spike are withheld too; the statistic
    # returns once a full 30-minute window (6 points) of ordinary differences is there
    after = echo + guarded.short_len
    _run(guarded, x[echo:after], t[echo:after])
    assert math.isnan(guarded._stats(float(x[after]), float(t[after]))[3][4])
    _run(guarded, x[after : after + 5], t[after : after + 5])
    assert math.isfinite(guarded._stats(float(x[after + 5]), float(t[after + 5]))[3][4])


def test_coarse_shape_is_nearest_neighbour_over_spaced_vectors():
    """The coarse vector holds ``long_blocks`` means of ``coarse * block`` points."""
    x, t = _noisy_daily(3000, seed=16)
    det = UnivariateDetector()
    L = det.long_blocks * det.block
    span = det.coarse * L
    assert math.isnan(det._stats(float(x[0]), float(t[0]))[3][5])
    _run(det, x[:2500], t[:2500])

    def coarse_vec(end: int) -> np.ndarray:  # the vector of the point at index `end`
        w = np.concatenate((np.full(span, x[0]), x[: end + 1]))[-span:] - x[0]
        return w.reshape(det.long_blocks, -1).mean(axis=1)  # (padded with the first value)

    stored = [p for p in range((det.coarse - 1) * L, 2500) if p % det.coarse_stride == 0]
    assert det._cm == len(stored)
    usable = stored[-det.coarse_memory :][:-1]  # the latest one overlaps most: excluded
    q = coarse_vec(2500)
    want = min(np.sqrt(np.mean((coarse_vec(p) - q) ** 2)) for p in usable)
    eps = 1e-9 * (abs(det._ref) + 1.0)
    got = det._stats(float(x[2500]), float(t[2500]))[3][5]
    assert got == pytest.approx(math.log(want + eps) - math.log(eps), rel=1e-4)


def test_short_shape_and_value_novelty_read_the_value_ring():
    """Short vectors are windows of the value ring; the value novelty is a 1-D nearest neighbour."""
    x, t = _noisy_daily(1600, seed=17)
    det = UnivariateDetector(memory=256, value_memory=512)
    _run(det, x[:1500], t[:1500])
    v = x[:1501] - x[0]
    eps = 1e-9 * (abs(det._ref) + 1.0)
    st = det._stats(float(x[1500]), float(t[1500]))[3]
    k = det.short_len
    q = v[-k:]
    pts = range(1500 - det.memory, 1500 - det.gap)
    want = min(np.sqrt(np.mean((v[p - k + 1 : p + 1] - q) ** 2)) for p in pts)
    assert st[0] == pytest.approx(math.log(want + eps) - math.log(eps), rel=1e-4)
    near = np.abs(v[1500 - det.value_memory : 1500] - v[1500]).min()
    assert st[6] == pytest.approx(math.log(near + eps) - math.log(eps), rel=1e-4)


def test_weekly_lag_waits_for_a_full_window_after_a_restart():
    """After points without a lag, the statistic needs ``week_window`` of differences again."""
    x, t = _weekly_routine(11, seed=18)
    hole = np.arange(288 * 3 + 120, 288 * 3 + 132)  # one hour missing in week 1
    keep = np.setdiff1d(np.arange(len(x)), hole)
    x, t = x[keep], t[keep]
    det = UnivariateDetector()
    back = 2016 + 288 * 3 + 132 - len(hole)  # first point of week 2 after the lagless hour
    _run(det, x[:back], t[:back])
    for i in range(back, back + 5):  # 1..5 differences in the 30-minute window
        assert math.isnan(det._stats(float(x[i]), float(t[i]))[3][4])
        det.learn_one(float(x[i]), float(t[i]))
    assert math.isfinite(det._stats(float(x[back + 5]), float(t[back + 5]))[3][4])


def test_echo_horizon_is_a_day_within_the_long_window_and_suppress():
    """The horizon is ``suppress_time`` at the mean sampling interval, clamped."""
    det = UnivariateDetector()
    L = det.long_blocks * det.block
    assert det._horizon(300.0) == 288  # 5-minute samples: one day
    assert det._horizon(60.0) == det.suppress  # 1-minute samples: capped
    assert det._horizon(3600.0) == L  # hourly: never shorter than the long window
    assert det._horizon(float("nan")) == det.suppress  # no timestamps
    assert UnivariateDetector(suppress_time=0.0)._horizon(3600.0) == det.suppress
    hourly = UnivariateDetector()
    ts = 1.4e9 + 3600.0 * np.arange(300)
    _run(hourly, np.sin(np.arange(300) / 5.0), ts)
    assert hourly._dt == pytest.approx(3600.0)
    clone = UnivariateDetector.from_bytes(hourly.to_bytes())
    assert clone._dt == hourly._dt and clone._tlast == hourly._tlast


@pytest.mark.parametrize("spike", [1e6, 1e12, 1e19, 9.9e19, -9.9e19])
def test_one_huge_spike_does_not_hold_the_score_up(spike):
    """No NaN, the spike stands out, and the 100 points after it stay at or below 0.5."""
    x, t = _noisy_daily(2400, seed=19, period=288)
    x[2000] = spike
    s = np.array(_run(UnivariateDetector(), x, t))
    assert np.isfinite(s).all() and ((s >= 0.0) & (s < 1.0)).all()
    assert s[2000] > 0.5 and s[2000] == s[1500:].max()
    assert s[2001:2101].max() <= 0.5


def test_soft_cap_is_continuous_and_increasing():
    from detectors.univariate import _SOFT_CAP, soft_cap

    xs = np.linspace(0.0, 5000.0, 20001)
    ys = np.array([soft_cap(float(v)) for v in xs])
    assert (np.diff(ys) > 0).all()
    assert soft_cap(_SOFT_CAP) == _SOFT_CAP and soft_cap(10.0) == 10.0
    assert abs(soft_cap(_SOFT_CAP + 1e-9) - _SOFT_CAP) < 1e-8
