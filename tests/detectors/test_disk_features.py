"""DiskFailureDetector._features, unrolled per counter, equals the plain loop over the counters.

The reference below is the loop form (one pass over TRACKED with per-counter
branches); the detector's must give the same feature vector, float for
float, on drives whose counters appear, vanish from readings, rise and fall.
"""

from __future__ import annotations

import math
import random

from detectors.disk import (
    _C_188,
    _C_197,
    _ERR,
    _FAM,
    _INC,
    _LEVEL,
    _LEVEL_KEYS,
    _LRARE,
    _NF,
    _R5,
    _R188,
    _R197,
    _RECENT,
    _RUNC,
    _SPIKE,
    TRACKED,
    DiskFailureDetector,
    DriveState,
    _log2p,
)
from detectors.events import DiskHealthEvent

_K = len(TRACKED)


def ref_counter_features(det: DiskFailureDetector, ev: DiskHealthEvent, st: DriveState | None):
    """The loop form of the counter part of the features, and the indices it sets."""
    get = ev.smart.get
    x = [0.0] * _NF
    err = float(ev.io_errors or 0)
    if st is None or not st.n:
        level = 0.0
        for key in _LEVEL_KEYS:
            v = get(key)
            if v is not None:
                level += v
        x[_LEVEL] = _log2p(level)
        x[_ERR] = _log2p(err)
        return x, (_LEVEL, _ERR)
    lasts, firsts = st.last, st.first
    level = rise_unc = jump = 0.0
    incs = float(st.n_inc)
    vals: list[float | None] = [None] * _K
    for i in range(_K):
        last = lasts[i]
        v = get(TRACKED[i])
        vals[i] = v
        if v is None:
            if last != last:
                continue
            v = last
            vals[i] = v
        elif last != last:
            if i != 2:
                level += v
            continue
        elif v > last:
            incs += 1
            if i != 2:
                jump += v - last
        if i == 3:
            conf = st.confirmed[i]
            c = v if v < last else last
            rise = (c if c > conf else conf) - firsts[i]
            peak = st.peak[i]
            spike = (v if v > peak else peak) - firsts[i]
            if spike > 0.0:
                g = det._gate(ev.model, _C_197, st.inc[3], st.n, det.event_ref_rate)
                if g:
                    x[_SPIKE] = _log2p(spike) * g
        else:
            rise = v - firsts[i]
        if i != 2:
            level += v
        if rise > 0.0:
            if i == 0:
                x[_R5] = _log2p(rise)
            elif i == 3:
                x[_R197] = _log2p(rise)
            elif i == 2:  # weighed by the model's rate of 188 rises; those rises leave the count
                g = det._gate(ev.model, _C_188, st.inc[2], st.n, det.event_ref_rate)
                incs -= (1.0 - g) * (st.inc[2] + (1 if v > last else 0))
                x[_R188] = _log2p(rise) * g
            else:
                rise_unc += rise
    if rise_unc:
        x[_RUNC] = _log2p(rise_unc)
    if incs > 0.0:
        x[_INC] = incs if incs < 6.0 else 6.0
        if det.family_prior > 0.0:
            x[_FAM] = det._rarity(ev.model)
    if level:
        x[_LEVEL] = _log2p(level)
        x[_LRARE] = det._level_rare(ev.model, st, vals[0], vals[3], vals[1], vals[4])[0]
    recent = st.recent
    if recent:
        recent *= math.exp(-(ev.ts - st.last_ts) / (det.recent_days * 86400.0))
    if recent or jump:
        x[_RECENT] = _log2p(recent + jump)
    return x, (_R5, _R197, _RUNC, _R188, _INC, _LEVEL, _RECENT, _FAM, _SPIKE, _LRARE)


def test_unrolled_counter_features_equal_the_loop():
    rng = random.Random(3)
    det = DiskFailureDetector()
    states: dict[str, DriveState | None] = {}
    values = {f"d{i}": {k: 0.0 for k in TRACKED} for i in range(40)}
    t = 1_600_000_000.0
    compared = 0
    for _ in range(6000):
        name = rng.choice(list(values))
        vals = values[name]
        for k in TRACKED:
            r = rng.random()
            if r < 0.03:
                vals[k] += rng.choice([1.0, 8.0, 0.5, 300.0])
            elif r < 0.04:
                vals[k] = max(0.0, vals[k] - 8.0)  # 197 comes and goes
        smart = {k: v for k, v in vals.items() if rng.random() > 0.2}  # some readings lack some
        smart["9"] = (t - 1_500_000_000.0) / 3600.0
        t += rng.random() * 4000.0
        ev = DiskHealthEvent(t, "h", name, smart, model=rng.choice(["A", "B", None]))
        st = states.get(name)
        got = det._features(ev, st)
        want, idx = ref_counter_features(det, ev, st)
        for i in idx:
            assert got[i] == want[i], (i, got, want)
        compared += 1
        det.score_one(ev, st)
        states[name] = det.learn_one(ev, st)
    assert compared == 6000
