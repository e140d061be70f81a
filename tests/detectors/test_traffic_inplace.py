"""The traffic detector's in-place updates equal the plain object-based computation.

``SeasonalBaseline`` and ``TrafficAnomalyDetector`` read and write their
buffers in place, with min()/max() unrolled into comparisons; the reference
below is the straightforward form (one ``struct`` call per slot, a
``HoltBaseline`` object per window). Both must give the same floats, bit for
bit: the states go to changelogs and the verdicts to alerts.
"""

import math
import struct

import numpy as np

from detectors.baseline import HoltBaseline, SeasonalBaseline
from detectors.features import WindowFeatures
from detectors.model import Verdict, z_score_to_unit
from detectors.traffic import TrafficAnomalyDetector, TrafficState

DAY = 86400.0
MONDAY = 1617573600.0  # Monday 5 April 2021 00:00 in Paris
_SLOT = struct.Struct("<feH")


def ref_mix(ma, va, na16, mb, vb, nb16, f):
    na, nb = na16 >> 4, nb16 >> 4
    if na and nb:
        return (1 - f) * ma + f * mb, (1 - f) * va + f * vb, min(na, nb)
    if na:
        return ma, va, na // 2
    if nb:
        return mb, vb, nb // 2
    return 0.0, 0.0, 0


def ref_expect(p: SeasonalBaseline, ts, buf):
    a, b, f = p._slots(ts)
    return ref_mix(*_SLOT.unpack_from(buf, a), *_SLOT.unpack_from(buf, b), f)


def ref_learn(p: SeasonalBaseline, ts, x, weight, buf):
    a, b, f = p._slots(ts)
    ma, va, na16 = _SLOT.unpack_from(buf, a)
    mb, vb, nb16 = _SLOT.unpack_from(buf, b)
    m = ref_mix(ma, va, na16, mb, vb, nb16, f)[0]
    err = x - m if (na16 or nb16) else 0.0
    for s, w, ms, vs, n16 in ((a, 1 - f, ma, va, na16), (b, f, mb, vb, nb16)):
        w *= weight
        if w < 1.0 / 32:
            continue
        add = max(1, round(16 * w))
        r = max(p.alpha * w, add / (n16 + add))
        d = err if n16 else x - ms
        if n16 > 30 * 16 and p.clip:
            lim = p.clip * math.sqrt(vs + 1e-6)
            d = max(-lim, min(lim, d))
        vs = min(65504.0, (1.0 - r) * (vs + r * d * d))
        _SLOT.pack_into(buf, s, ms + r * d, vs, min(65535, n16 + add))


def ref_score(det: TrafficAnomalyDetector, f, buf):
    dur = f.end - f.start
    x = math.log1p(f.count)
    mean, var, n = (
        (0.0, 0.0, 0) if buf is None else ref_expect(det._profile, f.start + dur / 2, buf)
    )
    if n >= det.warmup:
        zt, rt = det.threshold_z, det.min_ratio
    else:
        rec = HoltBaseline.from_bytes(buf[TrafficState._HOLT :], det.recent_alpha) if buf else None
        if rec is None or rec.n < det.fallback_warmup:
            return Verdict(det.signal, f.count / dur, 0.0, 0.0, 0.0, 0.0, False, warming_up=True)
        mean, var = rec.predict(), rec.var
        zt, rt = det.fallback_z, det.fallback_ratio
    expected = math.expm1(mean)
    sd = math.sqrt(var + det.noise_floor + 1.0 / (expected + 1.0))
    z = (x - mean) / sd
    ratio = (f.count + 1.0) / (expected + 1.0)
    flagged = (
        abs(z) >= zt
        and (ratio >= rt or ratio <= 1.0 / rt)
        and max(f.count, expected) >= det.min_count
    )
    return Verdict(
        det.signal,
        f.count / dur,
        expected / dur,
        max(0.0, math.expm1(mean - zt * sd)) / dur,
        math.expm1(mean + zt * sd) / dur,
        z_score_to_unit(z * 5.0 / zt),
        flagged,
        warming_up=False,
        z=z,
    )


def ref_learn_one(det: TrafficAnomalyDetector, f, buf, verdict):
    w = 0.05 if verdict is not None and (verdict.flagged or abs(verdict.z) >= det.learn_z) else 1.0
    x = math.log1p(f.count)
    ref_learn(det._profile, f.start + (f.end - f.start) / 2, x, w, buf)
    rec = HoltBaseline.from_bytes(buf[TrafficState._HOLT :], det.recent_alpha)
    rec.learn(x, w)
    buf[TrafficState._HOLT :] = rec.to_bytes()


def test_traffic_in_place_equals_reference():
    det = TrafficAnomalyDetector(
        timezone="Europe/Paris", holiday_calendar="FR", warmup=10, fallback_warmup=20
    )
    rng = np.random.default_rng(7)
    state, ref = None, None
    flagged = seasonal = 0
    for m in range(6 * 1440):
        t = MONDAY + 60 * m
        h = ((t - MONDAY) % DAY) / 3600.0
        lam = 20 + 300 * math.exp(-((h - 8.5) ** 2) / 1.5)
        if rng.random() < 0.01:
            lam *= rng.choice([0.0, 0.1, 6.0, 40.0])  # drops and surges: clipped, learned at 5%
        dur = 60.0 if m % 7 else 300.0
        f = WindowFeatures("ent", t, t + dur, int(rng.poisson(lam)))
        v = det.score_one(f, state)
        assert v == ref_score(det, f, ref), m
        flagged += v.flagged
        seasonal += not v.warming_up and v.upper > 0
        state = det.learn_one(f, state, v if m % 11 else None)
        if ref is None:
            ref = bytearray(TrafficState.SIZE)
        ref_learn_one(det, f, ref, v if m % 11 else None)
        assert state.buf == ref, m
    assert flagged and seasonal


def test_seasonal_profile_in_place_equals_reference():
    rng = np.random.default_rng(11)
    p = SeasonalBaseline(alpha=0.05, tz="America/New_York")
    ref = bytearray(SeasonalBaseline.SIZE)
    for i in range(30_000):
        t = MONDAY + 37.0 * i  # any time of day, the midnight wrap included
        x = float(rng.normal(2.0, 1.0)) if i % 97 else 40.0
        w = float(rng.choice([1.0, 0.5, 0.05, 0.02]))
        if i % 3:  # expect() first, as the detector does, or learn() alone
            assert p.expect(t) == ref_expect(p, t, ref)
        p.learn(t, x, w)
        ref_learn(p, t, x, w, ref)
        assert p.buf == ref, i
