"""Traffic and latency detectors on seeded synthetic streams."""

import math

import numpy as np

from detectors.baseline import SeasonalBaseline
from detectors.features import WindowFeatures
from detectors.latency import LatencySpikeDetector, LatencyState
from detectors.traffic import TrafficAnomalyDetector, TrafficState

DAY = 86400.0
MONDAY = 1617573600.0  # 2021-04-04T22:00Z = Monday 5 April 00:00 in Paris


def school_rate(ts: float) -> float:
    """Requests per minute of a school portal: morning peak, lunch dip, quiet nights."""
    h = ((ts - MONDAY) % DAY) / 3600.0
    return 20 + 300 * math.exp(-((h - 8.5) ** 2) / 1.5) + 150 * math.exp(-((h - 14.5) ** 2) / 4)


def run_days(det, days, surge=None, rng=None, state=None, start=MONDAY):
    rng = rng or np.random.default_rng(1)
    flagged = []
    for m in range(int(days * 1440)):
        t = start + 60 * m
        lam = school_rate(t) * (surge(t) if surge else 1.0)
        f = WindowFeatures("ent", t, t + 60, int(rng.poisson(lam)))
        v = det.score_one(f, state)
        state = det.learn_one(f, state, v)
        if v.flagged:
            flagged.append((t, v))
    return state, flagged


def test_expected_daily_peaks_do_not_alert_and_a_surge_does():
    det = TrafficAnomalyDetector(timezone="Europe/Paris", holiday_calendar="none")
    # Monday, Tuesday and Wednesday (its own day type) are learned.
    state, _ = run_days(det, 3)
    saved = state.to_bytes()
    # An ordinary Thursday, 08:30 peak included, raises nothing.
    thursday = MONDAY + 3 * DAY
    _, normal = run_days(det, 1, rng=np.random.default_rng(3), state=TrafficState.from_bytes(saved, det),
                         start=thursday)
    assert normal == []
    # The same Thursday with 4x the usual at 08:00-09:00 Paris time is caught at once.
    def in_surge(t):
        return 8 * 3600 <= (t - MONDAY) % DAY < 9 * 3600

    _, hits = run_days(det, 1, surge=lambda t: 4.0 if in_surge(t) else 1.0,
                       rng=np.random.default_rng(3), state=TrafficState.from_bytes(saved, det), start=thursday)
    assert hits, "a 4x morning surge must be flagged"
    first = min(t for t, _ in hits)
    assert 8 * 3600 <= (first - MONDAY) % DAY <= 8 * 3600 + 180
    assert all(in_surge(t) for t, _ in hits)


def test_warm_up_flags_nothing_and_says_so():
    det = TrafficAnomalyDetector()
    f = WindowFeatures("ent", MONDAY, MONDAY + 60, 100000)
    v = det.score_one(f, None)
    assert v.warming_up and not v.flagged


def test_state_round_trip_and_size():
    det = TrafficAnomalyDetector(timezone="Europe/Paris")
    state, _ = run_days(det, 1)
    data = state.to_bytes()
    assert len(data) < 1024
    again = TrafficState.from_bytes(data, det)
    f = WindowFeatures("ent", MONDAY + DAY + 8 * 3600, MONDAY + DAY + 8 * 3600 + 60, 900)
    assert det.score_one(f, again).z == det.score_one(f, state).z


def test_seasonal_baseline_interpolates_between_hours():
    b = SeasonalBaseline(alpha=0.05, tz="Europe/Paris")
    for day in range(3):
        for m in range(1440):
            t = MONDAY + day * DAY + 60 * m
            b.learn(t, 1.0 if ((t - MONDAY) % DAY) < 12 * 3600 else 3.0)
    m_morning, _, n = b.expect(MONDAY + 3 * DAY + 6 * 3600)  # Thursday, same day type
    m_evening, _, _ = b.expect(MONDAY + 3 * DAY + 18 * 3600)
    assert n > 0 and abs(m_morning - 1.0) < 0.2 and abs(m_evening - 3.0) < 0.2


def lat_stream(det, n, rng, slow=1.0, tail=False, state=None):
    flags = []
    for _ in range(n):
        lat = rng.lognormal(math.log(120), 0.4, size=60) * slow
        if tail:
            lat[:2] = 9000.0  # two single very slow requests
        p50, p95 = float(np.percentile(lat, 50)), float(np.percentile(lat, 95))
        vs = det.score_one(60, p50, p95, 0.0, state)
        state = det.learn_one(60, p50, p95, 0.0, state, vs)
        flags.append(any(v.flagged for v in vs))
    return state, flags


def test_latency_ignores_single_slow_requests_and_catches_a_real_slowdown():
    det = LatencySpikeDetector()
    rng = np.random.default_rng(5)
    state, flags = lat_stream(det, 200, rng)
    assert sum(flags) <= 1
    _, tail_flags = lat_stream(det, 30, rng, tail=True, state=LatencyState.from_bytes(state.to_bytes(), det))
    assert not any(tail_flags)
    _, slow_flags = lat_stream(det, 5, rng, slow=3.0, state=state)
    assert all(slow_flags)


def test_latency_error_ratio_flags_a_5xx_burst():
    det = LatencySpikeDetector()
    state = None
    for _ in range(60):
        vs = det.score_one(100, 100, 250, 0.002, state)
        state = det.learn_one(100, 100, 250, 0.002, state, vs)
    vs = det.score_one(100, 100, 250, 0.3, state)
    err = [v for v in vs if v.signal == "error_ratio_5xx"][0]
    assert err.flagged and 0 <= err.score <= 1
    assert len(state.to_bytes()) < 1024
