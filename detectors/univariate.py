"""Online univariate anomaly scorer behind ``tocsin score``.

The detector computes a few *novelty* statistics on every new point, turns
each into a calibrated tail probability against that statistic's own whole
history, and reports the strongest evidence through a post-processing step
that keeps the first alarm of an episode and damps its echoes.

Pipeline for one observation ``x`` at time ``t`` (scored before it is learned):

1. **Shape novelty** (in the spirit of KNN-CAD / ARTime): the recent values
   are summarised as a *short* vector (the last ``short_len`` raw values) and
   a *long* vector (``long_blocks`` means of ``block`` points).  Each one is
   compared with a ring-buffer memory of the last ``memory`` vectors; the
   RMS distance to the nearest neighbour (the ``gap`` most recent, overlapping
   vectors excluded) is the novelty.
   **Coarse shape novelty** (the same at a 4x coarser scale): the long
   vectors of the points ``L``, ``2L`` and ``3L`` earlier (``L`` =
   ``long_blocks * block``), joined to the current one, give ``long_blocks``
   means of ``coarse * block`` points (512 points with the defaults).  One
   such vector is kept every ``coarse_stride`` points in a memory of
   ``coarse_memory`` (8192 points of history in 4 KB); the nearest neighbour
   (the latest, most overlapping vector excluded) gives the novelty of a slow
   pattern that the 128-point vectors cannot see whole.
   **Value novelty** (the same at scale 1): the distance from ``x`` to the
   nearest of the last ``value_memory`` values (8192, a float32 ring that
   also provides the short vectors as sliding windows).  A value never seen
   in that history (a level between the usual ones, a spike higher than all
   earlier spikes) stands out even when its shape repeats an earlier one.
2. **Contextual novelty** (in the spirit of CAD OSE's contexts): the same
   nearest-neighbour search on the long vector, with the time-of-day
   distance (``context`` times the running mean absolute deviation) added,
   so a pattern that is normal at 3 pm but not at 3 am stands out.  Skipped
   without timestamps.
3. **Jump novelty**: the absolute one-step change.
   **Weekly-lag novelty**: the absolute value of the mean, over the last
   ``week_window`` seconds (30 minutes), of the signed differences with the
   values seen one week earlier (a ring of 5-minute time slots covering a
   week, each with the week it was written in, so gaps and any sampling rate
   up to one point per slot work).  It catches a day that breaks a
   daily/weekly routine without any unusual shape (e.g. a missing nightly
   drop).  Averaging over a fixed *time* span keeps one noisy sample of last
   week from raising an alarm on dense series (5-minute counts), while an
   hourly series still compares single points; a point without a lag
   restarts the window, and the statistic waits until the window is full
   again (as many points as ``week_window`` over the current sampling
   interval): means over fewer points are noisier than the calibrated
   history and raised alarms at the start of the second week.  Skipped without timestamps and during the first
   week.  **Guard**: a point whose evidence from the other statistics
   (after the multiplicity terms of step 5) exceeds ``week_guard`` nats is
   no reference for next week: its slot keeps last week's value, or holds
   no reference (skipped, the window not restarted) if there was none.
   Otherwise every anomaly raised a second alarm a week later, when the
   normal value is compared with it.
4. **Calibration** (conformal, with a peaks-over-threshold tail): each
   statistic is log-transformed and ranked in a fixed-size histogram of its
   whole history.  Inside the sample the tail probability is the empirical
   exceedance rate; beyond the ``tail`` highest values an exponential tail
   fitted to them extrapolates, so the evidence keeps growing (no ties at
   the top).  This makes evidence comparable across series of any scale,
   which matters because NAB picks a single threshold for the corpus.
5. **Evidence** ``e = max_c(-log p_c)`` in nats.  **Agreement**: the sum of
   the two largest single-statistic evidences is calibrated the same way
   against the history of that sum (two views surprised at once is rarer
   than either alone, whatever their correlation), and ``-log p_agree``
   competes with ``e``, and
   ``S = max(e, -log p_agree) - log(8) - a log(1 + n/100)``
   (8 calibrated statistics).  There is no separately calibrated moving
   average of the evidence (HTM's anomaly likelihood): the coarse shape and
   the weekly window already average over time (``benchmarks/README.md``
   says what it was measured against).
   The last term (``length_penalty`` ``a``) accounts for the number of
   points watched so far: a long series offers many chances for a
   p-value of 1/n, while NAB charges false positives per alarm, not per
   point.  It also lets the short history of a young series count more.
6. **Echo suppression**: ``S`` is reported unchanged only if it exceeds
   ``rise`` times the largest evidence of the previous ``h`` points,
   otherwise it is multiplied by ``damp``.  Whatever threshold is used
   downstream, the first crossing of an episode is kept and its repetitions
   are damped.  The horizon ``h`` is ``suppress_time`` (one day) at the
   running mean sampling interval, at least the long window (128 points,
   which an event takes to leave it) and at most ``suppress`` points: an
   hourly series no longer damps a new incident 6 days after the last one
   (300 points), a 5-minute series keeps about the same horizon (288).  The margin (``rise`` = 1.1) makes an episode whose evidence
   creeps up point after point one alarm rather than a run of alarms: each
   new maximum must beat the last by 10% to be reported again.
7. The score is ``S / (S + half_score)``: strictly increasing, in [0, 1),
   never saturating.

Cost: the CPU of a point is dominated by the nearest-neighbour scans (1024
short windows of the value ring, the 1024 x 8 float32 long vectors, the 8192
values); the snapshot (``to_bytes``) is a struct header and the raw numpy
arrays, no pickle (the time-of-day phases are float16, the weekly ring's
week numbers int8 mod 128).  ``benchmarks/nab.py`` measures both; its figures, and
the history of the variants kept and rejected, are in ``benchmarks/README.md``.

Evidence past 30 nats grows logarithmically (:func:`soft_cap`, which says why).

Example
-------
>>> det = UnivariateDetector()
>>> scores = [det.score_learn_one(float(v)) for v in range(100)]
>>> all(0.0 <= s <= 1.0 for s in scores)
True
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Sequence

import numpy as np

__all__ = ["StatisticScorer", "UnivariateDetector", "score_series"]

_MAGIC = b"TUVA"


# Evidence (nats) past which it grows only logarithmically.  -log p = 30 is
# p = 1e-13: a history of n points calibrates up to log(n + 1) nats (14 for a
# million points) and the fitted exponential tail extrapolates beyond; past
# 30 nats that extrapolation runs far beyond its data and says little more
# than "extreme".  It also bounds the echoes: the evidence of any statistic
# is at most about 1400 nats (a log-distance of 67 nats over a tail scale of
# at least half a bin), so a damped echo reports at most 0.2 * (30 + log 1400)
# = 7.5 nats, a score of 0.43: one huge spike does not hold the score above 0.5
# while it passes through the shape windows.  NAB's thresholds sit near
# 3 nats, far below, where nothing changes.
_SOFT_CAP = 30.0


def soft_cap(e: float) -> float:
    """Evidence ``e`` (nats), unchanged up to ``_SOFT_CAP`` and logarithmic beyond."""
    return e if e <= _SOFT_CAP else _SOFT_CAP + math.log1p(e - _SOFT_CAP)


class _Calibrator:
    """Conformal tail probability of a log-statistic against all its history.

    The history is a fixed histogram (``bins`` bins of ``width`` nats,
    anchored on the first value), so the state is constant in size.  Inside
    the sample the exceedance rate is interpolated within a bin; above the
    ``tail`` highest values an exponential tail fitted to them extrapolates
    (peaks over threshold), so the evidence keeps growing without ties.
    """

    __slots__ = ("bins", "width", "tail", "counts", "lo", "n")

    def __init__(self, bins: int, width: float, tail: int) -> None:
        self.bins = bins
        self.width = width
        self.tail = tail
        self.counts = np.zeros(bins, dtype=np.float32)
        self.lo = math.nan  # anchored on the first non-degenerate value
        self.n = 0

    def _pos(self, v: float) -> tuple[int, float]:
        pos = (v - self.lo) / self.width
        if pos < 0.0:
            return 0, 0.0
        if pos >= self.bins:
            return self.bins - 1, 1.0
        i = int(pos)
        return i, pos - i

    def neg_log_p(self, v: float) -> float:
        n = self.n
        if n == 0:
            return 0.0
        i, frac = self._pos(v)
        c = self.counts
        k = float(c[i + 1 :].sum()) + float(c[i]) * (1.0 - frac)
        if k >= self.tail or n <= 2 * self.tail:
            return -math.log((k + 1.0) / (n + 1.0))
        # threshold u holding `tail` values above it, and their mean excess
        rev = np.cumsum(c[::-1], dtype=np.float64)
        j = int(np.searchsorted(rev, self.tail))  # bins counted from the top
        b = self.bins - 1 - j
        prev = float(rev[j - 1]) if j else 0.0
        need = self.tail - prev
        top_edge = self.lo + (b + 1) * self.width
        u = top_edge - self.width * need / max(float(c[b]), 1e-9)
        if j:
            centers = self.lo + (np.arange(b + 1, self.bins) + 0.5) * self.width
            excess = float((c[b + 1 :] * (centers - u)).sum())
        else:
            excess = 0.0
        excess += need * (top_edge - u) / 2.0
        beta = max(excess / self.tail, self.width / 2.0)
        return -math.log(self.tail / (n + 1.0)) + max(v - u, 0.0) / beta

    def add(self, v: float) -> None:
        if self.lo != self.lo:
            if v < 1.0:  # degenerate (zero distance): wait for a real value to anchor on
                return
            self.lo = v - self.width * self.bins / 2.0
        i, _ = self._pos(v)
        self.counts[i] += 1.0
        self.n += 1


class UnivariateDetector:
    """Online anomaly scorer for one numeric series.

    Parameters
    ----------
    short_len : int
        Number of raw values in the short shape vector.
    long_blocks : int
        Number of block means in the long shape vector.
    block : int
        Block length (points) of the long shape vector.
    memory : int
        Number of past shape vectors kept for nearest-neighbour search.
    gap : int
        The most recent ``gap`` vectors are excluded from the search (they
        overlap the current one).
    bins : int
        Histogram bins per calibrated statistic.
    bin_width : float
        Histogram bin width in nats of the log-statistic.
    tail : int
        Number of top historical values fitting the exponential tail.
    suppress : int
        Longest echo-suppression horizon in points.
    damp : float
        Factor applied to evidence that does not beat the recent maximum.
    rise : float
        Margin (ratio) by which evidence must beat the recent maximum to be
        reported undamped.
    half_score : float
        Evidence (nats) mapped to a score of 0.5.
    context : float
        Weight of the time-of-day distance in the contextual shape component
        (0 disables it; it is also skipped when no timestamp is given).
    scale_len : int
        Horizon (points) of the running mean absolute deviation that scales
        the time-of-day distance.
    week_slot : float
        Width (seconds) of a time slot of the weekly-lag ring.
    week_window : float
        The weekly-lag statistic is the mean of the signed differences with
        last week over this many seconds (at most ``_WD`` points).
    length_penalty : float
        Nats of evidence subtracted per unit of ``log(1 + n/100)``, ``n``
        being the number of points learned.
    coarse : int
        Scale factor of the coarse shape vector: ``long_blocks`` means of
        ``coarse * block`` points (1 disables it; needs
        ``(coarse - 1) * long_blocks * block < memory``).
    coarse_memory : int
        Number of coarse vectors kept.
    coarse_stride : int
        Points between two stored coarse vectors.
    week_guard : float
        A point whose evidence without the weekly lag exceeds this (nats) is
        not stored as next week's reference (``inf`` disables the guard).
    value_memory : int
        Number of past values searched by the value novelty (the value ring
        holds at least ``memory + short_len``).
    suppress_time : float
        Echo-suppression horizon in seconds (converted to points with the
        running mean sampling interval, clamped to ``[long_blocks * block,
        suppress]``; 0, or no timestamps, gives ``suppress`` points).

    Notes
    -----
    Where the defaults come from.  *Taken from the series*: the scale (every
    distance is relative to ``1e-9 * (|first value| + 1)`` and every
    statistic is calibrated by its own rank in its own history, so no
    parameter is in the series' units), the sampling interval (echo horizon
    in time, the number of points the weekly window needs), the time of day
    and week (context and weekly lag; skipped without timestamps).
    *Fixed by what they are*: ``bins``, ``bin_width``, ``tail`` (a 32-nat
    range at 0.1-nat resolution, 20 values to fit a tail: resolution, not
    sensitivity); ``half_score`` (a monotone display mapping: no threshold
    ranking depends on it); ``gap`` = ``short_len`` (the vectors that overlap
    the current one); ``week_slot`` (the 5-minute grain of the series it
    serves; a coarser series fills one slot per point); ``memory``,
    ``value_memory``, ``coarse_memory`` (memory and CPU budget).
    *Chosen on the 31 NAB dev series* (checked since by leaving one category
    out, ``benchmarks/nab.py``; see ``benchmarks/README.md``): ``short_len``,
    ``long_blocks``, ``block``, ``coarse``, ``coarse_stride``,
    ``context``, ``week_window``, ``week_guard``, ``length_penalty``,
    ``damp``, ``rise``, ``suppress``, ``suppress_time``.  Those are the knobs
    a series unlike the dev ones can find wrong.
    """

    def __init__(
        self,
        short_len: int = 8,
        long_blocks: int = 8,
        block: int = 16,
        memory: int = 1024,
        gap: int = 8,
        bins: int = 320,
        bin_width: float = 0.1,
        tail: int = 20,
        suppress: int = 300,
        damp: float = 0.2,
        half_score: float = 10.0,
        context: float = 1.0,
        scale_len: int = 1000,
        week_slot: float = 300.0,
        week_window: float = 1800.0,
        length_penalty: float = 0.6,
        rise: float = 1.1,
        coarse: int = 4,
        coarse_memory: int = 128,
        coarse_stride: int = 64,
        week_guard: float = 2.0,
        value_memory: int = 8192,
        suppress_time: float = 86400.0,
    ) -> None:
        self.short_len = short_len
        self.long_blocks = long_blocks
        self.block = block
        self.memory = memory
        self.gap = gap
        self.bins = bins
        self.bin_width = bin_width
        self.tail = tail
        self.suppress = suppress
        self.damp = damp
        self.half_score = half_score
        self.context = context
        self.scale_len = scale_len
        self.week_slot = week_slot
        self.week_window = week_window
        self.length_penalty = length_penalty
        self.rise = rise
        self.coarse = coarse
        self.coarse_memory = coarse_memory
        self.coarse_stride = coarse_stride
        self.week_guard = week_guard
        self.value_memory = value_memory
        self.suppress_time = suppress_time
        self._init_state()

    # ------------------------------------------------------------------ state
    # short shape, long shape, jump, daily context, weekly lag, coarse shape, value,
    # agreement
    _N_CAL = 8
    _WEEK = 604800.0
    _WD = 64  # recent weekly-lag differences kept for the ``week_window`` mean

    def _init_state(self) -> None:
        self._hlen = max(self.short_len, self.long_blocks * self.block) + 1
        self._hist = np.zeros(self._hlen, dtype=np.float64)
        self._n = 0
        self._ref = 0.0  # first value, subtracted before float32 storage
        self._mean = 0.0  # slow EW mean / mean absolute deviation (context scale)
        self._mad = 0.0
        # past values (relative to the first one), by point index
        self._val = np.zeros(max(self.value_memory, self.memory + self.short_len), dtype=np.float32)
        # one row per past point: long vector; (cos, sin) of time of day
        self._mem = np.zeros((self.memory, self.long_blocks), dtype=np.float32)
        self._ph = np.zeros((self.memory, 2), dtype=np.float16)
        self._m = 0
        # coarse vectors (``long_blocks`` means of ``coarse * block`` points), one every
        # ``coarse_stride`` points
        self._cmem = np.zeros((self.coarse_memory, self.long_blocks), dtype=np.float32)
        self._cm = 0
        self._cal = [_Calibrator(self.bins, self.bin_width, self.tail) for _ in range(self._N_CAL)]
        # value seen one week earlier, by time slot (with the week it was written in)
        n_slots = max(1, int(round(self._WEEK / self.week_slot)))
        self._wval = np.zeros(n_slots, dtype=np.float32)
        self._wnum = np.full(n_slots, -1, dtype=np.int8)  # week number mod 128
        # recent signed differences with last week (time, difference), by point index
        self._wdt = np.full(self._WD, -np.inf, dtype=np.float64)
        self._wdv = np.zeros(self._WD, dtype=np.float64)
        self._ev = np.zeros(self.suppress, dtype=np.float32)
        self._tlast = -math.inf  # time of the last point learned with a timestamp
        self._dt = math.nan  # running mean sampling interval (seconds)
        self._cache: tuple | None = None

    # -------------------------------------------------------------- features
    def _window(self, x: float) -> np.ndarray:
        """The last ``_hlen`` values including ``x`` (oldest first)."""
        n, h = self._n, self._hlen
        if n < h:
            return np.concatenate((self._hist[:n], (x,)))
        i = n % h  # slot of the oldest value
        return np.concatenate((self._hist[i + 1 :], self._hist[:i], (x,)))

    def _stats(self, x: float, t: float | None) -> tuple:
        ref = self._ref if self._n else x
        w = self._window(x) - ref
        n = len(w)
        sl = min(self.short_len, n)
        fs = np.full(self.short_len, w[-sl], dtype=np.float64)
        fs[-sl:] = w[-sl:]
        L = self.long_blocks * self.block
        wl = w[-L:] if n >= L else np.concatenate((np.full(L - n, w[0]), w))
        fl = wl.reshape(self.long_blocks, self.block).mean(axis=1)
        if t is None:
            ph = np.full(2, np.nan)
        else:
            a = 2.0 * math.pi * (float(t) % 86400.0) / 86400.0
            ph = np.array((math.cos(a), math.sin(a)))
        nan = float("nan")
        ds = dl = dc = dcs = dv = nan
        V = len(self._val)
        avail = min(self._m, self.memory) - self.gap
        if avail > 0:
            # short vectors of the last `memory` points but the `gap` latest: sliding
            # windows over the value ring (values before the first point are 0, the
            # first value relative to itself, as in the padded current vector)
            start = self._m - min(self._m, self.memory) - self.short_len + 1
            cnt = self._m - self.gap - start
            lo = start % V
            if lo + cnt <= V:
                vals = self._val[lo : lo + cnt]
            else:
                vals = np.concatenate((self._val[lo:], self._val[: lo + cnt - V]))
            q = fs.astype(np.float32)
            es = np.zeros(avail, dtype=np.float32)
            for k in range(self.short_len):
                d = vals[k : k + avail] - q[k]
                d *= d
                es += d
            ds = math.sqrt(float(es.min()) / self.short_len)
            full = self._m > self.memory
            mem = self._mem if full else self._mem[:avail]
            d2 = mem - fl.astype(np.float32)
            el = (d2 * d2).sum(axis=1)
            if full:
                # ring full: exclude the slots holding the last `gap` vectors
                i = self._m % self.memory
                el[np.arange(i - self.gap, i) % self.memory] = np.inf
            dl = math.sqrt(float(el.min()) / self.long_blocks)
            if t is not None and self.context > 0.0:
                lam = (self.context * self._mad) ** 2
                dp = (self._ph if full else self._ph[:avail]).astype(np.float32) - ph
                ec = el / self.long_blocks + lam * (dp * dp).sum(axis=1)
                dc = math.sqrt(float(np.nanmin(ec)))
        if self._m > 0:
            # value novelty: distance to the nearest of the last `value_memory` values
            dv = float(np.abs(self._val[: min(self._m, V)] - np.float32(w[-1])).min())
        # coarse shape: the long vectors of the points L, 2L, ... earlier, joined to the
        # current one, give `long_blocks` means of `coarse * block` points
        fc = None
        c = self.coarse
        if c > 1 and (c - 1) * L < self.memory and self._m >= (c - 1) * L:
            rows = [(self._m - j * L) % self.memory for j in range(c - 1, 0, -1)]
            fine = np.concatenate((self._mem[rows].ravel(), fl))
            fc = fine.reshape(self.long_blocks, c).mean(axis=1)
            if self._cm >= 2:
                cm = self._cmem[: min(self._cm, self.coarse_memory)]
                d2c = cm - fc.astype(np.float32)
                ec2 = (d2c * d2c).sum(axis=1)
                ec2[(self._cm - 1) % self.coarse_memory] = np.inf  # the latest overlaps most
                dcs = math.sqrt(float(ec2.min()) / self.long_blocks)
        jump = abs(w[-1] - w[-2]) if n >= 2 else nan
        wk = wd = nan
        if t is not None:
            slot, week = self._week_slot(float(t))
            if self._wnum[slot] == (week - 1) % 128:
                lag = float(self._wval[slot])
                if lag != lag:  # last week's point was anomalous: no reference, no restart
                    wd = math.inf
                else:
                    wd = w[-1] - lag
                    keep = self._wdt > float(t) - self.week_window
                    k = int(keep.sum()) + 1
                    # only a full window (as many points as the current sampling
                    # interval puts in it) is compared: a mean over fewer points is
                    # noisier and would not match the calibrated history
                    dt = float(t) - self._tlast
                    need = int(self.week_window / dt) if dt > 0 else 1
                    if k >= min(max(need, 1), self._WD):
                        wk = abs((float(self._wdv[keep].sum()) + wd) / k)
        raw = (ds, dl, jump, dc, wk, dcs, dv)
        eps = 1e-9 * (abs(ref) + 1.0)  # resolution floor relative to the series level
        # a distance that overflowed float32 (values near 1e19 and beyond) counts as
        # the largest float64 one: still finite evidence, never a NaN score
        stats = tuple(math.log(min(v, 1e300) + eps) - math.log(eps) if v == v else nan for v in raw)
        return fs, fl, ph, stats, (wd, fc)

    def _horizon(self, dt: float) -> int:
        """Echo horizon (points): ``suppress_time`` at the mean sampling interval
        ``dt``, at least the long window and at most ``suppress``."""
        if not (dt > 0.0 and self.suppress_time > 0.0):
            return self.suppress
        L = self.long_blocks * self.block
        return max(min(L, self.suppress), min(self.suppress, int(self.suppress_time / dt)))

    def _week_slot(self, t: float) -> tuple[int, int]:
        week = math.floor(t / self._WEEK)
        slot = int((t - week * self._WEEK) / self.week_slot) % len(self._wval)
        return slot, week

    def _evidence(self, stats: tuple) -> tuple[float, float, float]:
        ev = [
            cal.neg_log_p(v) if v == v else 0.0
            for cal, v in zip(self._cal[:-1], stats, strict=True)
        ]
        # multiplicity: the number of statistics, and the length watched so far
        pen = math.log(len(self._cal)) + self.length_penalty * math.log1p(self._n / 100.0)
        # evidence without the weekly lag (decides whether the point may serve as
        # next week's reference)
        other = max(ev[0], ev[1], ev[2], ev[3], ev[5], ev[6]) - pen
        # agreement: the two strongest single-statistic evidences summed, calibrated
        # against the history of that sum (two views surprised at once)
        top = sorted(ev)
        agree = 5.0 * math.log1p(top[-1] + top[-2])
        e = max(top[-1], self._cal[-1].neg_log_p(agree))
        return agree, soft_cap(max(e - pen, 0.0)), other

    # ------------------------------------------------------------------- API
    def _compute(self, x: float, t: float | None) -> tuple:
        key = (self._n, x, t)
        if self._cache is not None and self._cache[0] == key:
            return self._cache
        with np.errstate(over="ignore", invalid="ignore"):  # see the stats' log above
            fs, fl, ph, stats, (wd, fc) = self._stats(x, t)
        agree, ev, other = self._evidence(stats)
        dt = self._dt
        if t is not None and self._tlast > -math.inf:
            d = float(t) - self._tlast
            dt = d if dt != dt else dt + (d - dt) / min(self._n, 100)
        h = self._horizon(dt)
        if self._n:
            k = min(self._n, h)
            recent = float(self._ev[(self._n - 1 - np.arange(k)) % self.suppress].max())
        else:
            recent = 0.0
        out = ev if ev > self.rise * recent else ev * self.damp
        self._cache = (key, fs, fl, ph, fc, stats + (agree,), wd, other, dt, ev, out)
        return self._cache

    def score_one(self, x: float, t: float | None = None) -> float:
        """Score ``x`` against the model without learning it.

        Parameters
        ----------
        x : float
            The observation.
        t : float, optional
            Event time in epoch seconds (enables the time-of-day context).

        Returns
        -------
        float
            Anomaly score in [0, 1); higher is more anomalous.
        """
        x = float(x)
        if not math.isfinite(x):
            return 0.0
        out = self._compute(x, t)[-1]
        return out / (out + self.half_score)

    def learn_one(self, x: float, t: float | None = None) -> None:
        """Update the model with ``x``.

        Parameters
        ----------
        x : float
            The observation.
        t : float, optional
            Event time in epoch seconds.
        """
        x = float(x)
        if not math.isfinite(x):
            return
        _, fs, fl, ph, fc, stats, wd, other, dt, ev, _ = self._compute(x, t)
        self._cache = None
        for cal, v in zip(self._cal, stats, strict=True):
            if v == v:
                cal.add(v)
        if self._n == 0:
            self._ref = x
        a = 1.0 / min(self._n + 1, self.scale_len)
        self._mean += a * (x - self._mean)
        self._mad += a * (abs(x - self._mean) - self._mad)
        self._ev[self._n % self.suppress] = ev
        self._hist[self._n % self._hlen] = x
        if t is not None:
            self._dt = dt
            self._tlast = float(t)
            slot, week = self._week_slot(float(t))
            # an anomalous point is no reference for next week: last week's value is
            # kept (or, without one, the slot holds no reference and is skipped)
            if other <= self.week_guard:
                self._wval[slot] = x - self._ref
            elif wd != wd:
                self._wval[slot] = np.nan
            self._wnum[slot] = week % 128
            if wd != wd:  # no lag here (gap or first week): the running window restarts
                self._wdt[:] = -np.inf
            elif wd != math.inf:  # (inf: last week's point was anomalous, skipped)
                self._wdt[self._n % self._WD] = float(t)
                self._wdv[self._n % self._WD] = wd
        self._n += 1
        j = self._m % self.memory
        self._val[self._m % len(self._val)] = x - self._ref
        self._mem[j] = fl
        self._ph[j] = ph
        if fc is not None and self._m % self.coarse_stride == 0:
            self._cmem[self._cm % self.coarse_memory] = fc
            self._cm += 1
        self._m += 1

    # ---------------------------------------------------------- persistence
    _PARAMS = (
        "short_len",
        "long_blocks",
        "block",
        "memory",
        "gap",
        "bins",
        "bin_width",
        "tail",
        "suppress",
        "damp",
        "half_score",
        "context",
        "scale_len",
        "week_slot",
        "week_window",
        "length_penalty",
        "rise",
        "coarse",
        "coarse_memory",
        "coarse_stride",
        "week_guard",
        "value_memory",
        "suppress_time",
    )

    def _arrays(self) -> list[np.ndarray]:
        arrays: list[np.ndarray] = [self._hist, self._val, self._mem, self._ph, self._cmem, self._ev]
        arrays += [self._wval, self._wnum, self._wdt, self._wdv]
        return arrays + [c.counts for c in self._cal]

    def _scalars(self) -> list[float]:
        return [
            float(self._n),
            float(self._m),
            float(self._cm),
            self._tlast,
            self._dt,
            self._ref,
            self._mean,
            self._mad,
        ] + [v for c in self._cal for v in (float(c.n), c.lo)]

    def to_bytes(self) -> bytes:
        """Serialise parameters and learned state (``struct`` + numpy, no pickle).

        Returns
        -------
        bytes
            A compact binary snapshot; see :meth:`from_bytes`.
        """
        params = [float(getattr(self, k)) for k in self._PARAMS]
        scal = self._scalars()
        head = _MAGIC + struct.pack(
            f"<HH{len(params)}d{len(scal)}d", len(params), len(scal), *params, *scal
        )
        return head + b"".join(np.ascontiguousarray(a).tobytes() for a in self._arrays())

    @classmethod
    def from_bytes(cls, data: bytes, **params) -> UnivariateDetector:
        """Rebuild a detector from :meth:`to_bytes` output.

        Parameters
        ----------
        data : bytes
            A snapshot from :meth:`to_bytes`.
        **params
            Constructor arguments overriding the stored ones; only those that
            do not change the state layout (``suppress`` excepted) may differ.

        Returns
        -------
        UnivariateDetector
            A detector that continues exactly where the snapshot stopped.

        Raises
        ------
        ValueError
            If ``data`` is not a valid snapshot.
        """
        try:
            if data[:4] != _MAGIC:
                raise ValueError("not a UnivariateDetector snapshot")
            n_par, n_sc = struct.unpack_from("<HH", data, 4)
            if n_par != len(cls._PARAMS):
                raise ValueError("incompatible snapshot version")
            vals = struct.unpack_from(f"<{n_par}d{n_sc}d", data, 8)
            defaults = cls()
            stored = {}
            for k, v in zip(cls._PARAMS, vals[:n_par], strict=True):
                stored[k] = int(v) if isinstance(getattr(defaults, k), int) else v
            stored.update(params)
            det = cls(**stored)
            if n_sc != len(det._scalars()):
                raise ValueError("incompatible snapshot version")
            sc = vals[n_par:]
            det._n, det._m, det._cm = int(sc[0]), int(sc[1]), int(sc[2])
            det._tlast, det._dt, det._ref, det._mean, det._mad = sc[3:8]
            for i, c in enumerate(det._cal):
                c.n, c.lo = int(sc[8 + 2 * i]), float(sc[9 + 2 * i])
            off = 8 + 8 * (n_par + n_sc)
            for a in det._arrays():
                nb = a.nbytes
                if off + nb > len(data):
                    raise ValueError("truncated snapshot")
                a[...] = np.frombuffer(data, dtype=a.dtype, count=a.size, offset=off).reshape(
                    a.shape
                )
                off += nb
            if off != len(data):
                raise ValueError("snapshot size mismatch (layout parameters differ?)")
            return det
        except struct.error as exc:
            raise ValueError(f"invalid snapshot: {exc}") from exc

    def score_learn_one(self, x: float, t: float | None = None) -> float:
        """Score ``x``, then learn it.

        Parameters
        ----------
        x : float
            The observation.
        t : float, optional
            Event time in epoch seconds.

        Returns
        -------
        float
            The score ``score_one`` returned before learning.
        """
        s = self.score_one(x, t)
        self.learn_one(x, t)
        return s


class StatisticScorer:
    """Steps 4-7 of :class:`UnivariateDetector` for one foreign statistic.

    Turns any online anomaly statistic (a River detector's raw score, the
    z-score of tocsin's traffic or latency detector) into a score in [0, 1]
    the way :class:`UnivariateDetector` turns its own statistics into one:
    the statistic ``r`` (floored at 0) becomes ``log1p(r / 1e-9)`` (monotone,
    so the ranks are those of ``r``), is calibrated against all its history
    (conformal rank with an exponential tail), less the length penalty; the
    echo suppression and ``S / (S + half_score)`` follow with the same
    constants.  So NAB compares the statistics, not their post-processing.

    Parameters are those of :class:`UnivariateDetector` of the same name.
    """

    def __init__(
        self,
        bins: int = 320,
        bin_width: float = 0.1,
        tail: int = 20,
        suppress: int = 300,
        damp: float = 0.2,
        rise: float = 1.1,
        half_score: float = 10.0,
        length_penalty: float = 0.6,
        suppress_time: float = 86400.0,
        long_window: int = 128,
    ) -> None:
        self.bins = bins
        self.bin_width = bin_width
        self.tail = tail
        self.suppress = suppress
        self.damp = damp
        self.rise = rise
        self.half_score = half_score
        self.length_penalty = length_penalty
        self.suppress_time = suppress_time
        self.long_window = long_window
        self._cal = _Calibrator(bins, bin_width, tail)
        self._ev = np.zeros(suppress, dtype=np.float32)
        self._n = 0
        self._tlast = -math.inf
        self._dt = math.nan

    @staticmethod
    def _stat(r: float) -> float:
        return math.log1p(max(r, 0.0) / 1e-9) if r == r else math.nan

    def _horizon(self, dt: float) -> int:
        if not (dt > 0.0 and self.suppress_time > 0.0):
            return self.suppress
        floor = min(self.long_window, self.suppress)
        return max(floor, min(self.suppress, int(self.suppress_time / dt)))

    def score_learn_one(self, r: float, t: float | None = None) -> float:
        """Map the raw statistic ``r`` of the current point to [0, 1), then learn it."""
        v = self._stat(float(r))
        ev = 0.0
        if v == v and math.isfinite(v):
            pen = self.length_penalty * math.log1p(self._n / 100.0)
            ev = soft_cap(max(self._cal.neg_log_p(v) - pen, 0.0))
            self._cal.add(v)
        dt = self._dt
        if t is not None and self._tlast > -math.inf:
            d = float(t) - self._tlast
            dt = d if dt != dt else dt + (d - dt) / min(max(self._n, 1), 100)
        h = self._horizon(dt)
        k = min(self._n, h)
        recent = float(self._ev[(self._n - 1 - np.arange(k)) % self.suppress].max()) if k else 0.0
        out = ev if ev > self.rise * recent else ev * self.damp
        self._ev[self._n % self.suppress] = ev
        self._n += 1
        if t is not None:
            self._dt, self._tlast = dt, float(t)
        return out / (out + self.half_score)

    def nbytes(self) -> int:
        """Size of the learned state (histogram, echo ring, counters)."""
        return int(self._cal.counts.nbytes + self._ev.nbytes + 5 * 8)


def score_series(values: Iterable[float], timestamps: Sequence[float] | None = None) -> list[float]:
    """Score a whole series online (each point before it is learned).

    Parameters
    ----------
    values : iterable of float
        The series.
    timestamps : sequence of float, optional
        Epoch seconds, one per value.

    Returns
    -------
    list of float
        One score in [0, 1] per value.
    """
    det = UnivariateDetector()
    vals = list(values)
    ts = list(timestamps) if timestamps is not None else [None] * len(vals)
    return [det.score_learn_one(v, t) for v, t in zip(vals, ts, strict=True)]
