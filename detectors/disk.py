"""DiskFailureDetector: online, per-drive failure signals from disk-health events.

Each drive keeps a small sketch (:class:`DriveState`, 281 bytes once
serialised) of what matters for an early warning:

- the SMART error counters that Backblaze found most telling, 5 (reallocated
  sectors), 187 (reported uncorrectable), 188 (command timeouts), 197
  (pending sectors) and 198 (offline uncorrectable): first value seen, last
  and peak value, how many times each rose and when it started to rise. A
  counter that *rises* weighs much more than a constant non-zero one: old
  healthy drives carry constant counts for years;
- SMART 9 (power-on hours) against the wall clock: a drive whose power-on
  hours stop advancing while readings keep coming has stopped spinning, a
  frequent last sign before it is replaced. Hours that advance, but by less
  than ``soft_stall_ratio`` of the wall clock (a drive often down or
  restarting), count too, in drive models whose healthy drives seldom do so;
- I/O latency (an EWMA baseline of the drive's own latency) and recent I/O
  errors, when the events carry them.

SMART 1 and other vendor-specific raw values are not used: their scale
differs between vendors and models. Counts are taken on a log scale, so a
family that counts in units of 8 sectors is not 8 times more alarming.

Two pieces of state are shared by all drives (:meth:`DiskFailureDetector.to_bytes`):

- per drive model, how often the counters of its *healthy* drives rise (a
  failed drive's readings are taken back out when its label arrives). A rise
  in a model whose healthy drives seldom rise weighs more: many Seagate 1.5 TB
  drives of 2013 creep up a few reallocated sectors a month and keep working,
  a Hitachi that starts reallocating is more often dying. Likewise, per model,
  how often healthy drives show a SMART 197 rise and a soft stall of their
  power-on hours: in a model where they are rare (under ``event_ref_rate``
  per reading), a soft stall is evidence on its own (so would be a single
  197 rise not confirmed on the next reading, ``spike_197``, but its prior
  weight is 0: one-off 197 jumps are common on some healthy models, and
  leaving it out helped the leave-one-model-out report). SMART 188 rises
  count only in a model whose healthy drives seldom show them (on some models
  command timeouts creep on every drive), and the model's share of healthy
  readings with SMART 5, 197 and 187 + 198 non-zero is kept (evidence text,
  and the ``level_rare`` feature, whose prior weight is 0: it did not help
  on the report-only parts of ``benchmarks/disk_smart.py``). 8 counts a
  model, at most 1,024 models;
- one logistic model over the features, whose prior weights encode the rules
  above. With ``learning_rate > 0`` it learns from the labels as they arrive
  (``failure=true`` on a drive's last reading: a positive example; a drive
  seen for ``negative_after_days`` days without failing: a negative one),
  pulled back toward the prior (L2). The intercept is never learned, so the
  operating point stays where ``threshold`` puts it. Off by default: on the
  Backblaze 2013 replay, learning from labels bought recall only at the
  price of false alarms, no better than lowering the threshold.

Counters that rose on one or two readings only, each by ``tick_max`` or
less, with no other sign, are not flagged (healthy drives tick once or twice
and stay flat); risen on one or two readings by more, the score is held at
``tick_score`` (under the 0.9 from which the engine pages: a warning at
most) until a third rise or another sign. Every flagged verdict's evidence
names the counters, their move, and what is normal for them in the model
(the rate of such rises among its healthy readings).

Examples
--------
A drive whose reallocated-sector count climbs is flagged, one with a constant
count is not:

>>> from detectors.events import DiskHealthEvent
>>> det = DiskFailureDetector()
>>> day = 86400.0
>>> good = bad = None
>>> for i in range(20):
...     g = DiskHealthEvent(ts=i * day, host="h1", disk="ok", smart={"5": 12.0, "9": 1000.0 + 24 * i})
...     b = DiskHealthEvent(ts=i * day, host="h1", disk="ko", smart={"5": float(max(0, 8 * (i - 10))), "9": 900.0 + 24 * i})
...     vg, vb = det.score_one(g, good), det.score_one(b, bad)
...     good, bad = det.learn_one(g, good), det.learn_one(b, bad)
>>> vg.flagged, vb.flagged, vb.signal
(False, True, 'smart_5_raw')
>>> vb.evidence[0].split("; ")
['SMART 5 (reallocated sectors) rose from 0 to 72 in 9 days', 'counter rises in 0% of 18 healthy readings of drives without a model']
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field

from .errors import DetectorError
from .events import DiskHealthEvent

__all__ = ["DiskFailureDetector", "DiskVerdict", "DriveState"]

#: SMART error counters tracked per drive, with a human name.
TRACKED: tuple[str, ...] = ("5", "187", "188", "197", "198")
_NAMES = {
    "5": "reallocated sectors",
    "187": "reported uncorrectable errors",
    "188": "command timeouts",
    "197": "pending sectors",
    "198": "offline uncorrectable sectors",
}
_K = len(TRACKED)
_NAN = float("nan")
_DAY = 86400.0
_LOG_CAP = 10.0  # log2 of 1,024: larger jumps add nothing (and 0xFFFF glitches stay bounded)

#: Feature names, in the order of the shared model's weights.
FEATURES: tuple[str, ...] = (
    "rise_5",  # log2(1 + rise of SMART 5)
    "rise_197",  # log2(1 + confirmed rise of SMART 197)
    "rise_187_198",  # log2(1 + rise of SMART 187 + 198)
    "rise_188",  # log2(1 + rise of SMART 188)
    "increases",  # number of readings where a tracked counter rose (capped)
    "level",  # log2(1 + current 5 + 197 + 187 + 198)
    "recent",  # log2(1 + rises of the tracked counters, decayed over recent_days)
    "stalls",  # readings where power-on hours did not advance (capped)
    "latency",  # log2(latency / the drive's usual latency), >= 0
    "errors",  # log2(1 + recent I/O errors)
    "family",  # log2(how much rarer counter rises are in the drive's model than overall), if rising
    "soft_stalls",  # readings where power-on hours advanced too slowly (capped), x the model's rarity of it
    "spike_197",  # log2(1 + peak rise of SMART 197, even if seen once), x the model's rarity of 197 rises
    "level_rare",  # log2(1 + a counter's value), x how rare a non-zero value is in the model's healthy drives
)
#: Prior weights (logit units per feature unit): the rules, before any label.
PRIOR_WEIGHTS: tuple[float, ...] = (
    1.3,
    0.9,
    0.9,
    0.45,
    0.3,
    0.13,
    0.7,
    7.0,
    2.0,
    1.4,
    1.0,
    7.0,
    0.0,
    0.0,
)
_NF = len(FEATURES)
_R5, _R197, _RUNC, _R188, _INC, _LEVEL, _RECENT, _STALL, _LAT, _ERR, _FAM, _SOFT, _SPIKE, _LRARE = (
    range(_NF)
)
# Per-model counts of healthy readings: readings, counter rises, SMART 197 rises,
# soft stalls, SMART 188 rises; then, for SMART 5, 197 and 187 + 198, a histogram
# of their non-zero values in log2 bins (1, 2-3, 4-7, ..., 1024 and more).
_C_N, _C_RISE, _C_197, _C_SOFT, _C_188 = range(5)
_C_H = 5
_NBIN = 11
_NC = _C_H + 3 * _NBIN
#: The levels compared with the model's healthy drives, in histogram order.
_NZ_KEYS: tuple[str, ...] = ("5", "197", "187+198")
_MAX_FAMILIES = 1024
_LEVEL_KEYS = ("5", "187", "197", "198")


class DiskStateError(DetectorError):
    """Serialised detector or drive state that cannot be read back."""


# --------------------------------------------------------------------------- per-drive sketch

# version, readings, stalls, io readings | first_ts, last_ts, poh, lat_mean, lat_var, err_recent
# then per tracked counter: first, last, peak, confirmed peak, rise start ts (f64) and increases (u16)
_DRIVE_HEAD = struct.Struct("<BIHHHI7d")
_DRIVE_ATTR = struct.Struct("<" + "d" * (5 * _K) + "H" * _K)
_DRIVE_VERSION = 2
_DRIVE_HEAD_V1 = struct.Struct("<BIHHI7d")  # version 1: no soft-stall count


class CounterTrack:
    """One tracked SMART counter of a drive: first, last and peak value, rises.

    Plain attributes, not lists indexed by counter: compiled (mypyc), the
    floats stay unboxed in the object, and each is read without an index.
    """

    __slots__ = ("first", "last", "peak", "confirmed", "rise_ts", "inc")

    def __init__(self) -> None:
        self.first = _NAN
        self.last = _NAN
        self.peak = _NAN
        self.confirmed = _NAN  # peak of values seen on two readings in a row
        self.rise_ts = _NAN  # last reading before the counter first rose
        self.inc = 0  # readings where it rose


class DriveState:
    """Per-drive sketch: SMART counters, power-on hours, I/O latency.

    ``tracks`` holds one :class:`CounterTrack` per counter of ``TRACKED``;
    ``first``, ``last``, ``peak``, ``confirmed``, ``rise_ts`` and ``inc``
    read them as lists (in ``TRACKED`` order). Serialises with
    :meth:`to_bytes` to a fixed 281 bytes (``struct``, no pickle). Unseen
    values are NaN.
    """

    __slots__ = (
        "n",
        "first_ts",
        "last_ts",
        "tracks",
        "n_inc",
        "recent",
        "rising",
        "poh",
        "stalls",
        "soft",
        "lat_n",
        "lat_mean",
        "lat_var",
        "err_recent",
    )

    def __init__(self) -> None:
        self.n = 0
        self.first_ts = _NAN
        self.last_ts = _NAN
        self.tracks: tuple[CounterTrack, ...] = tuple(CounterTrack() for _ in range(_K))
        self.n_inc = 0  # sum of the tracks' inc
        self.recent = 0.0  # rises of the tracked counters, decayed with the time constant
        self.rising = 0  # readings where a counter rose
        self.poh = _NAN
        self.stalls = 0
        self.soft = 0  # readings where power-on hours advanced, but too slowly
        self.lat_n = 0
        self.lat_mean = 0.0
        self.lat_var = 0.0
        self.err_recent = 0.0

    @property
    def first(self) -> list[float]:
        return [t.first for t in self.tracks]

    @property
    def last(self) -> list[float]:
        return [t.last for t in self.tracks]

    @property
    def peak(self) -> list[float]:
        return [t.peak for t in self.tracks]

    @property
    def confirmed(self) -> list[float]:
        return [t.confirmed for t in self.tracks]

    @property
    def rise_ts(self) -> list[float]:
        return [t.rise_ts for t in self.tracks]

    @property
    def inc(self) -> list[int]:
        return [t.inc for t in self.tracks]

    def to_bytes(self) -> bytes:
        """Serialise to a fixed-size byte string."""
        head = _DRIVE_HEAD.pack(
            _DRIVE_VERSION,
            self.n,
            min(self.stalls, 0xFFFF),
            min(self.rising, 0xFFFF),
            min(self.soft, 0xFFFF),
            self.lat_n,
            self.first_ts,
            self.last_ts,
            self.poh,
            self.lat_mean,
            self.lat_var,
            self.err_recent,
            self.recent,
        )
        inc = [min(t.inc, 0xFFFF) for t in self.tracks]
        return head + _DRIVE_ATTR.pack(
            *self.first, *self.last, *self.peak, *self.confirmed, *self.rise_ts, *inc
        )

    @classmethod
    def from_bytes(cls, b: bytes) -> DriveState:
        """Read back what :meth:`to_bytes` wrote (this version or version 1)."""
        if len(b) == _DRIVE_HEAD_V1.size + _DRIVE_ATTR.size and b[:1] == b"\x01":
            head = _DRIVE_HEAD_V1.unpack_from(b)  # checkpoints of the previous release
            b = (
                _DRIVE_HEAD.pack(_DRIVE_VERSION, *head[1:4], 0, *head[4:])
                + b[_DRIVE_HEAD_V1.size :]
            )
        if len(b) != _DRIVE_HEAD.size + _DRIVE_ATTR.size or b[0] != _DRIVE_VERSION:
            raise DiskStateError(f"not a version-{_DRIVE_VERSION} drive state ({len(b)} bytes)")
        s = cls()
        (
            _,
            s.n,
            s.stalls,
            s.rising,
            s.soft,
            s.lat_n,
            s.first_ts,
            s.last_ts,
            s.poh,
            s.lat_mean,
            s.lat_var,
            s.err_recent,
            s.recent,
        ) = _DRIVE_HEAD.unpack_from(b)
        v = _DRIVE_ATTR.unpack_from(b, _DRIVE_HEAD.size)
        for i, t in enumerate(s.tracks):
            t.first, t.last, t.peak = v[i], v[_K + i], v[2 * _K + i]
            t.confirmed, t.rise_ts, t.inc = v[3 * _K + i], v[4 * _K + i], v[5 * _K + i]
        s.n_inc = sum(t.inc for t in s.tracks)
        return s

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DriveState):
            return NotImplemented
        return self.to_bytes() == other.to_bytes()

    def __repr__(self) -> str:
        return f"DriveState(n={self.n}, last={self.last}, stalls={self.stalls}, lat_n={self.lat_n})"


@dataclass(slots=True)
class DiskVerdict:
    """The detector's opinion on one reading of one drive.

    ``score`` is in [0, 1] (higher: more likely failing); ``signal`` names the
    strongest contributor (``smart_5_raw``, ``smart_9_raw``, ``io_latency_ms``,
    ``io_errors``...) with its ``value`` and the drive's own ``expected``
    value; ``evidence`` holds short sentences, strongest first.
    """

    score: float
    flagged: bool
    signal: str
    value: float
    expected: float
    evidence: list[str] = field(default_factory=list)
    warming_up: bool = False


# --------------------------------------------------------------------------- the detector

_MODEL = struct.Struct("<BII" + "d" * _NF)
_MODEL_VERSION = 3
_U16 = struct.Struct("<H")
_FAMILY = struct.Struct("<B")
_COUNTS = struct.Struct(f"<{_NC}d")
_COUNTS_V2 = struct.Struct("<4d")
_MODEL_V2 = struct.Struct("<BII" + "d" * (_NF - 1))


def _dot(w: list[float], x: list[float]) -> float:
    """The weighted sum, as ``sum(map(mul, w, x))`` gives it (a native loop once compiled)."""
    z = 0.0
    for i in range(_NF):
        z += w[i] * x[i]
    return z


def _log2p(x: float) -> float:
    if x > 0.0:
        y = _log2(1.0 + x)
        return y if y < _LOG_CAP else _LOG_CAP  # min(_LOG_CAP, y)
    return 0.0


_log2 = math.log2


class DiskFailureDetector:
    """Online per-drive failure-signal detector with a shared, label-fed model.

    Parameters
    ----------
    threshold
        Flag a reading when its score reaches this (a probability-like value).
    bias
        Intercept of the shared logistic model (not learned): with the prior
        weights, about 6.5 "points" of evidence reach a score of 0.5.
    learning_rate
        SGD step of the shared model on each label; 0 (the default) keeps
        the prior weights.
    l2
        Pull of the learned weights back toward the prior, per step.
    negative_after_days
        A drive seen this long without failing gives one negative example
        (and one more every further period).
    warmup
        Readings of a drive (and I/O readings) before its own baselines count;
        until then the verdict says ``warming_up``.
    stall_ratio
        An interval of at least 12 h between two readings counts as a stall
        when power-on hours advance by less than this fraction of it.
    latency_alpha
        Weight of a new reading in the drive's latency baseline (EWMA).
    max_stalls
        Cap of the stall count used as a feature.
    recent_days
        Time constant of the decayed sum of recent counter rises: a counter
        that climbs fast weighs more than one that crept up over months.
    family_prior
        Readings of pseudo-count behind each drive model's rate of counter
        rises (learned from the drives not labelled failed); 0 ignores models.
        A rise in a model whose healthy drives seldom rise weighs more.
    soft_stall_ratio
        An interval of at least 12 h where power-on hours advance by less than
        this fraction of it (but more than ``stall_ratio``) is a soft stall; it
        counts only in drive models whose healthy drives seldom show it.
    event_ref_rate
        Rate per reading, among a model's healthy drives, at which a soft
        stall or a SMART 197 rise stops being evidence; at 1/8 of it or less
        it weighs fully (a log2 scale in between). Learned online per model
        from the drives not labelled failed (SMART 188 rises too).
    level_ref_rate
        Share of a model's healthy readings with a counter non-zero under
        which a non-zero value is evidence (``level_rare``), as
        ``event_ref_rate`` is for rises.
    tick_max
        Counters risen on one or two readings, each by this much or less
        and with no other sign, are not flagged; 0 turns it off.
    tick_score
        Ceiling of the score of counters risen on one or two readings by
        more than ``tick_max`` (a warning, not a page).

    Examples
    --------
    See the module docstring.
    """

    def __init__(
        self,
        threshold: float = 0.5,
        bias: float = -6.5,
        learning_rate: float = 0.0,
        l2: float = 0.01,
        negative_after_days: float = 30.0,
        warmup: int = 3,
        stall_ratio: float = 0.25,
        latency_alpha: float = 0.1,
        max_stalls: int = 3,
        recent_days: float = 7.0,
        family_prior: float = 200.0,
        soft_stall_ratio: float = 0.6,
        event_ref_rate: float = 0.001,
        level_ref_rate: float = 0.01,
        tick_max: float = 2.0,
        tick_score: float = 0.85,
    ) -> None:
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {threshold!r}")
        self.threshold = threshold
        self.bias = bias
        self.learning_rate = learning_rate
        self.l2 = l2
        self.negative_after_days = negative_after_days
        self.warmup = warmup
        self.stall_ratio = stall_ratio
        self.latency_alpha = latency_alpha
        self.max_stalls = max_stalls
        self.recent_days = recent_days
        self.family_prior = family_prior
        self.soft_stall_ratio = soft_stall_ratio
        self.event_ref_rate = event_ref_rate
        self.level_ref_rate = level_ref_rate
        self.tick_max = tick_max
        self.tick_score = tick_score
        self._weights = list(PRIOR_WEIGHTS)
        self._n_pos = 0
        self._n_neg = 0
        # per drive model: [readings after a drive's first, readings where a counter rose],
        # from drives not (yet) known to have failed; "" sums all models
        self._family: dict[str, list[float]] = {"": [0.0] * _NC}
        self._z_cut = math.log(threshold / (1.0 - threshold))
        if not 0.0 < tick_score < 1.0:
            raise ValueError(f"tick_score must be in (0, 1), got {tick_score!r}")
        self._z_tick = max(self._z_cut, math.log(tick_score / (1.0 - tick_score)))
        # evidence is written only for scores within about 20x of the threshold
        self._z_explain = self._z_cut - 3.0

    # ------------------------------------------------------------------ features

    def _features(self, ev: DiskHealthEvent, st: DriveState | None) -> list[float]:
        """Feature vector of the drive once this reading is included (state unchanged)."""
        get = ev.smart.get
        x = [0.0] * _NF
        err = float(ev.io_errors or 0)
        if st is None or not st.n:  # first reading: only the levels are known
            level = 0.0
            for v in map(get, _LEVEL_KEYS):
                if v is not None:
                    level += v
            x[_LEVEL] = _log2p(level)
            x[_ERR] = _log2p(err)
            return x
        # The five counters one after the other (a loop with per-counter
        # branches took a fifth longer). A counter never seen (NaN last)
        # counts only in the level, once reported; one not in this reading
        # keeps its last value. Level and jump add up in the order 5, 187,
        # 197, 198 (floats: the same sums as ever).
        v0, v1, v2, v3, v4 = map(get, TRACKED)
        c0, c1, c2, c3, c4 = st.tracks
        l0, l1, l2, l3, l4 = c0.last, c1.last, c2.last, c3.last, c4.last
        level = rise_unc = jump = 0.0
        incs = float(st.n_inc)
        if l0 == l0:  # 5: reallocated sectors
            if v0 is None:
                v0 = l0
            elif v0 > l0:
                incs += 1
                jump += v0 - l0
            level += v0
            rise = v0 - c0.first
            if rise > 0.0:
                x[_R5] = _log2p(rise)
        elif v0 is not None:
            level += v0
        if l1 == l1:  # 187: reported uncorrectable
            if v1 is None:
                v1 = l1
            elif v1 > l1:
                incs += 1
                jump += v1 - l1
            level += v1
            rise = v1 - c1.first
            if rise > 0.0:
                rise_unc += rise
        elif v1 is not None:
            level += v1
        if l2 == l2:  # 188: command timeouts, in neither the level nor the jump
            if v2 is None:
                v2 = l2
            elif v2 > l2:
                incs += 1
            rise = v2 - c2.first
            if rise > 0.0:
                # ... and weighed by how rare its rises are in the model: some creep on every drive
                g = 1.0
                if self.family_prior > 0.0:
                    inc188 = c2.inc + (1 if v2 > l2 else 0)
                    g = self._gate(ev.model, _C_188, c2.inc, st.n, self.event_ref_rate)
                    incs -= (1.0 - g) * inc188
                x[_R188] = _log2p(rise) * g
        if l3 == l3:  # 197: pending sectors come and go; a rise counts once seen on two readings
            if v3 is None:
                v3 = l3
            elif v3 > l3:
                incs += 1
                jump += v3 - l3
            conf = c3.confirmed
            c = v3 if v3 < l3 else l3
            f3 = c3.first
            rise = (c if c > conf else conf) - f3
            peak = c3.peak
            spike = (v3 if v3 > peak else peak) - f3
            if spike > 0.0:  # ... unless the drive's model seldom shows 197 rises at all
                g = self._gate(ev.model, _C_197, c3.inc, st.n, self.event_ref_rate)
                if g:
                    x[_SPIKE] = _log2p(spike) * g
            level += v3
            if rise > 0.0:
                x[_R197] = _log2p(rise)
        elif v3 is not None:
            level += v3
        if l4 == l4:  # 198: offline uncorrectable
            if v4 is None:
                v4 = l4
            elif v4 > l4:
                incs += 1
                jump += v4 - l4
            level += v4
            rise = v4 - c4.first
            if rise > 0.0:
                rise_unc += rise
        elif v4 is not None:
            level += v4
        if rise_unc:
            x[_RUNC] = _log2p(rise_unc)
        if incs > 0.0:
            x[_INC] = incs if incs < 6.0 else 6.0
            if self.family_prior > 0.0:
                x[_FAM] = self._rarity(ev.model)
        if level:
            x[_LEVEL] = _log2p(level)
            if self.family_prior > 0.0:
                x[_LRARE] = self._level_rare(ev.model, st, v0, v3, v1, v4)[0]
        dt = ev.ts - st.last_ts
        recent = st.recent
        if recent:
            recent *= math.exp(-dt / (self.recent_days * _DAY))
        if recent or jump:
            x[_RECENT] = _log2p(recent + jump)
        stalls = st.stalls
        soft = st.soft
        poh = get("9")
        if poh is not None and dt >= 43200.0 and 0.0 <= poh - st.poh:
            adv = (poh - st.poh) * 3600.0 / dt
            if adv < self.stall_ratio:
                stalls += 1
            elif adv < self.soft_stall_ratio:
                soft += 1
        if stalls:
            x[_STALL] = float(min(stalls, self.max_stalls))
        if soft:
            g = self._gate(ev.model, _C_SOFT, st.soft, st.n, self.event_ref_rate)
            if g:
                x[_SOFT] = float(min(soft, self.max_stalls)) * g
        lat = ev.io_latency_ms
        if lat is not None and st.lat_n >= self.warmup and lat > st.lat_mean > 0.0:
            x[_LAT] = min(5.0, math.log2(lat / st.lat_mean))
        err += st.err_recent * 0.5
        if err:
            x[_ERR] = _log2p(err)
        return x

    def _rarity(self, model: str | None) -> float:
        """log2 of how much rarer counter rises are among the model's healthy drives than overall."""
        tot = self._family[""]
        fam = self._family.get(model or "")
        if fam is None or tot[0] <= 0.0 or fam is tot:
            return 0.0
        g = (tot[1] + 1.0) / (tot[0] + 100.0)
        k = self.family_prior
        r = (fam[1] + k * g) / (fam[0] + k)
        v = _log2(g / r)
        v = v if v < 3.0 else 3.0  # max(-3.0, min(3.0, v))
        return v if v > -3.0 else -3.0

    def _level_rare(
        self,
        model: str | None,
        st: DriveState,
        v5: float | None,
        v197: float | None,
        v187: float | None,
        v198: float | None,
    ) -> tuple[float, int, float]:
        """The strongest counter level against its model: (feature, index in _NZ_KEYS, model rate).

        The feature is log2(1 + value) x how rare a value as high (its log2
        bin or above) is among the healthy readings of the model's other
        drives (:meth:`_gate` at ``level_ref_rate``); the rate is that share.
        """
        best, which, rate = 0.0, -1, _NAN
        tr = st.tracks
        tot = self._family[""]
        fam = self._family.get(model or "")
        for k in range(3):
            if k == 0:
                val, first = v5, tr[0].first
            elif k == 1:
                val, first = v197, tr[3].first
            else:
                val, first = _unc(v187, v198), _unc(tr[1].first, tr[4].first)
            if val is None or not val > 0.0:
                continue
            b = _bin(val)
            h = _C_H + k * _NBIN
            # the drive's own readings were in this bin or above when it started there
            own = float(st.n) if _bin(first) >= b else 0.0
            t_tail = _tail(tot, h, b)
            f_tail = _tail(fam, h, b) if fam is not None and fam is not tot else -1.0
            g = self._gate_counts(f_tail, fam, t_tail, tot, own, st.n, self.level_ref_rate)
            f = _log2p(val) * g
            if f > best:
                m = max(0.0, fam[_C_N] - st.n) if fam is not None else 0.0
                share = max(0.0, f_tail - own) / m if m > 0.0 and f_tail >= 0.0 else _NAN
                best, which, rate = f, k, share
        return best, which, rate

    def _normal(self, ev: DiskHealthEvent, st: DriveState | None, i: int) -> str:
        """What is normal for counter ``TRACKED[i]`` in the drive's model: its rate of rises in healthy readings."""
        if st is None or self.family_prior <= 0.0:
            return ""
        j = _C_197 if i == 3 else (_C_188 if i == 2 else _C_RISE)
        own = float(st.tracks[i].inc if j != _C_RISE else st.rising)
        n = st.n - 1  # the drive's readings counted in its model (all but its first)
        rate = self._rate(ev.model, j, own, n)
        if rate != rate:
            return ""
        what = "SMART 197 rises" if i == 3 else ("SMART 188 rises" if i == 2 else "counter rises")
        who = f"model {ev.model}" if ev.model else "drives without a model"
        m = max(0.0, self._family[ev.model or ""][_C_N] - n)
        return f"; {what} in {100.0 * rate:.2g}% of {m:.0f} healthy readings of {who}"

    def _rate(self, model: str | None, j: int, own: float, n: int) -> float:
        """Share of the healthy readings of the model's other drives with event ``j`` (NaN: no model counts)."""
        fam = self._family.get(model or "")
        if fam is None:
            return _NAN
        m = max(0.0, fam[_C_N] - n)
        return max(0.0, fam[j] - own) / m if m > 0.0 else _NAN

    def _gate(self, model: str | None, j: int, own: float, n: int, ref: float) -> float:
        """How rare event ``j`` is among the healthy readings of the model's other drives, in [0, 1].

        0: as common as ``ref`` per reading or more; 1: 8 times rarer or
        less. ``own`` and ``n`` are the drive's own count of the event and
        readings, taken out. The model's rate is pulled toward the rate
        over all models by ``family_prior`` pseudo-readings.
        """
        tot = self._family[""]
        fam = self._family.get(model or "")
        f_j = fam[j] if fam is not None and fam is not tot else -1.0
        return self._gate_counts(f_j, fam, tot[j], tot, own, n, ref)

    def _gate_counts(
        self,
        f_j: float,
        fam: list[float] | None,
        t_j: float,
        tot: list[float],
        own: float,
        n: int,
        ref: float,
    ) -> float:
        """:meth:`_gate` from the counts: the model's (``f_j`` < 0: none) and the total's."""
        g = (t_j + ref * 100.0) / (tot[_C_N] + 100.0)
        if f_j < 0.0 or fam is None:
            r = g
        else:
            k = self.family_prior
            r = (max(0.0, f_j - own) + k * g) / (max(0.0, fam[_C_N] - n) + k)
        if r >= ref:
            return 0.0
        return min(1.0, math.log2(ref / r) / 3.0) if r > 0.0 else 1.0

    def _ticks(self, ev: DiskHealthEvent, st: DriveState | None, x: list[float]) -> float:
        """The largest rise of a counter, when counters are the only evidence and rose on one or two readings; else -1.

        Healthy drives often tick once or twice and stay flat; failing ones
        keep climbing or show other signs.
        """
        w = self._weights
        other = w[_STALL] * x[_STALL] + w[_SOFT] * x[_SOFT] + w[_LAT] * x[_LAT] + w[_ERR] * x[_ERR]
        if st is None or other >= 1.0:  # I/O latency a little above its mean is no sign
            return -1.0
        rising = st.rising
        most = 0.0
        now = 0
        for i in (0, 1, 3, 4):
            t = st.tracks[i]
            v = ev.smart.get(TRACKED[i])
            if v is None or v != v:
                v = t.last
            if v != v or t.first != t.first:
                continue
            if v > t.last:
                now = 1
            top = v if v > t.peak else t.peak
            if top - t.first > most:
                most = top - t.first
        return most if 0 < rising + now <= 2 else -1.0

    def _z(self, x: list[float]) -> float:
        return self.bias + _dot(self._weights, x)

    # ------------------------------------------------------------------ verbs

    def score_one(self, event: DiskHealthEvent, state: DriveState | None) -> DiskVerdict:
        """Score one reading of a drive, before it is learned.

        Parameters
        ----------
        event
            The reading.
        state
            The drive's sketch so far (None for a drive not seen before).

        Returns
        -------
        DiskVerdict
        """
        x = self._features(event, state)
        z = self.bias + _dot(self._weights, x)
        if z >= self._z_cut:
            most = self._ticks(event, state, x)
            if 0.0 <= most <= self.tick_max:
                z = self._z_cut - 0.5  # one or two small ticks: not flagged
            elif most > self.tick_max and z > self._z_tick:
                z = self._z_tick  # one or two larger rises: a warning at most, not a page
        score = 1.0 / (1.0 + math.exp(-z)) if z > -700.0 else 0.0
        warming = (0 if state is None else state.n) + 1 < self.warmup
        if z < self._z_explain:  # far below the threshold: the cheap, common path
            v5 = event.smart.get("5")
            if state is None:
                return DiskVerdict(
                    score, False, "smart_5_raw", _NAN if v5 is None else v5, _NAN, [], warming
                )
            return DiskVerdict(
                score,
                False,
                "smart_5_raw",
                state.tracks[0].last if v5 is None else v5,
                state.tracks[0].first,
                [],
                warming,
            )
        return self._explain(event, state, x, z, score, warming)

    def features_one(self, event: DiskHealthEvent, state: DriveState | None) -> dict[str, float]:
        """The per-drive features behind :meth:`score_one`, by name (for a learned model beside the rules)."""
        return dict(zip(FEATURES, self._features(event, state), strict=True))

    def learn_one(self, event: DiskHealthEvent, state: DriveState | None) -> DriveState:
        """Update the drive's sketch with one reading; learn its label if it has one.

        Parameters
        ----------
        event
            The reading (``failure=True`` on a drive's last reading is a label).
        state
            The drive's sketch so far, or None; it is updated in place.

        Returns
        -------
        DriveState
            The updated (or new) sketch.
        """
        st = DriveState() if state is None else state
        if self.learning_rate > 0.0:
            if event.failure:
                self._learn_label(self._features(event, st), 1.0)
                self._n_pos += 1
            elif st.n and self.negative_after_days > 0.0:
                period = self.negative_after_days * _DAY
                if (event.ts - st.first_ts) // period > (st.last_ts - st.first_ts) // period:
                    self._learn_label(self._features(event, st), 0.0)
                    self._n_neg += 1
        ts = event.ts
        get = event.smart.get
        poh = get("9")
        soft = 0
        if st.n == 0:
            st.first_ts = ts
        elif poh is not None:
            dt = ts - st.last_ts
            if dt >= 43200.0 and 0.0 <= poh - st.poh:
                adv = (poh - st.poh) * 3600.0 / dt
                if adv < self.stall_ratio:
                    st.stalls += 1
                elif adv < self.soft_stall_ratio:
                    st.soft += 1
                    soft = 1
        if poh is not None:
            st.poh = poh
        if st.recent:
            st.recent *= math.exp(-(ts - st.last_ts) / (self.recent_days * _DAY))
        rose = rose197 = rose188 = 0
        tracks = st.tracks
        for i, v in enumerate(map(get, TRACKED)):
            if v is None:
                continue
            t = tracks[i]
            last = t.last
            if v == last and (i != 3 or t.confirmed >= v):  # unchanged: the common case
                continue
            if last != last:
                t.first = t.last = t.peak = t.confirmed = v
                continue
            if v > last:
                t.inc += 1
                st.n_inc += 1
                if i == 2:
                    rose188 = 1
                else:
                    st.recent += v - last
                    rose = 1
                    if i == 3:
                        rose197 = 1
                if t.rise_ts != t.rise_ts:
                    t.rise_ts = st.last_ts
                if v > t.peak:
                    t.peak = v
            if i == 3:
                c = v if v < last else last
                if c > t.confirmed:
                    t.confirmed = c
            t.last = v
        lat = event.io_latency_ms
        if lat is not None:
            if st.lat_n == 0:
                st.lat_mean = lat
            else:
                # A reading far above the baseline moves it slowly: a failing
                # drive must not teach the baseline its own slowness.
                a = self.latency_alpha if lat <= 2.0 * st.lat_mean else self.latency_alpha * 0.1
                d = lat - st.lat_mean
                st.lat_mean += a * d
                st.lat_var = (1.0 - a) * (st.lat_var + a * d * d)
            st.lat_n += 1
        if event.io_errors is not None or st.err_recent:
            st.err_recent = st.err_recent * 0.5 + (event.io_errors or 0)
        if st.n and self.family_prior > 0.0:
            self._count_family(event, st, rose, rose197, soft, rose188)
        st.rising += rose
        st.n += 1
        st.last_ts = ts
        return st

    def _count_family(
        self, event: DiskHealthEvent, st: DriveState, rose: int, rose197: int, soft: int, rose188: int
    ) -> None:
        """Count this reading in its drive model's rates (and in the total).

        The rates: counter rises, SMART 197 rises, soft stalls, SMART 188
        rises, and non-zero SMART 5, 197 and 187 + 198 (the counters' values
        once this reading is learned).
        """
        name = event.model or ""
        fam = self._family.get(name)
        if fam is None and len(self._family) < _MAX_FAMILIES:
            fam = self._family[name] = [0.0] * _NC
        tot = self._family[""]
        tr = st.tracks
        b5 = _bin(tr[0].last)
        b197 = _bin(tr[3].last)
        bunc = _bin(_unc(tr[1].last, tr[4].last))
        if not (rose or soft or rose188 or b5 or b197 or bunc or event.failure):  # the common case
            tot[0] += 1.0
            if fam is not None and fam is not tot:
                fam[0] += 1.0
            return
        for f in (tot,) if fam is None or fam is tot else (tot, fam):
            f[_C_N] += 1.0
            f[_C_RISE] += rose
            f[_C_197] += rose197
            f[_C_SOFT] += soft
            f[_C_188] += rose188
            if b5:
                f[_C_H + b5 - 1] += 1.0
            if b197:
                f[_C_H + _NBIN + b197 - 1] += 1.0
            if bunc:
                f[_C_H + 2 * _NBIN + bunc - 1] += 1.0
            if event.failure:  # a failed drive's history is not what healthy drives do
                n = float(st.n)
                f[_C_N] = max(0.0, f[_C_N] - n)
                f[_C_RISE] = max(0.0, f[_C_RISE] - st.rising - rose)
                f[_C_197] = max(0.0, f[_C_197] - tr[3].inc)  # it already counts this reading's rise
                f[_C_SOFT] = max(0.0, f[_C_SOFT] - st.soft)
                f[_C_188] = max(0.0, f[_C_188] - tr[2].inc)
                # its levels, as if they had been at today's all along (counters seldom fall)
                for h, b in ((_C_H, b5), (_C_H + _NBIN, b197), (_C_H + 2 * _NBIN, bunc)):
                    if b:
                        f[h + b - 1] = max(0.0, f[h + b - 1] - n)

    def _learn_label(self, x: list[float], y: float) -> None:
        z = self._z(x)
        p = 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z))))
        g = y - p
        lr, l2, w = self.learning_rate, self.l2, self._weights
        for i in range(_NF):
            w[i] += lr * (g * x[i] - l2 * (w[i] - PRIOR_WEIGHTS[i]))
            if w[i] < 0.0:  # evidence of failure never argues for health
                w[i] = 0.0

    # ------------------------------------------------------------------ evidence

    def _explain(
        self,
        ev: DiskHealthEvent,
        st: DriveState | None,
        x: list[float],
        z: float,
        score: float,
        warming: bool,
    ) -> DiskVerdict:
        w = self._weights
        # (contribution to the logit, signal, value, expected, sentence)
        parts: list[tuple[float, str, float, float, str]] = []
        extra = w[_INC] * x[_INC] + w[_RECENT] * x[_RECENT]  # shared by the rising counters
        for feat, idx in ((_R5, 0), (_R197, 3), (_R188, 2)):
            if x[feat] and not (idx == 3 and x[_SPIKE]):
                sig, cur, first, text = _rise_text(ev, st, idx)
                parts.append((w[feat] * x[feat] + extra, sig, cur, first, text + self._normal(ev, st, idx)))
        if x[_SPIKE]:
            sig, cur, first, text = _rise_text(ev, st, 3)
            text += self._normal(ev, st, 3)
            peak = max(cur, st.tracks[3].peak) if st is not None else cur
            if not x[_R197]:
                text = f"SMART 197 ({_NAMES['197']}) reached {peak:g} from {first:g} (now {cur:g})"
            parts.append(
                (
                    w[_SPIKE] * x[_SPIKE] + w[_R197] * x[_R197] + extra,
                    sig,
                    peak,
                    first,
                    text + ", rare in healthy drives of this model",
                )
            )
        if x[_RUNC]:
            for idx in (1, 4):
                sig, cur, first, text = _rise_text(ev, st, idx)
                if cur > first:
                    parts.append((w[_RUNC] * x[_RUNC] + extra, sig, cur, first, text + self._normal(ev, st, idx)))
        if x[_STALL]:
            poh = ev.smart.get("9", _NAN)
            last = st.poh if st is not None else _NAN
            k = int(x[_STALL])
            parts.append(
                (
                    w[_STALL] * x[_STALL],
                    "smart_9_raw",
                    poh,
                    last,
                    f"SMART 9 (power-on hours) stopped advancing on {k} reading{'s' if k > 1 else ''}"
                    f" (now {poh:g} h): the drive is not running",
                )
            )
        if x[_SOFT] and st is not None:
            poh = ev.smart.get("9", _NAN)
            hours = (ev.ts - st.last_ts) / 3600.0
            adv = poh - st.poh
            k = st.soft + (
                hours >= 12.0 and self.stall_ratio <= adv / hours < self.soft_stall_ratio
            )
            parts.append(
                (
                    w[_SOFT] * x[_SOFT],
                    "smart_9_raw",
                    poh,
                    st.poh,
                    f"SMART 9 (power-on hours) advanced too slowly on {k} reading{'s' if k > 1 else ''}"
                    f" (last: {adv:g} h in {hours:.0f} h), rare in healthy drives of this model",
                )
            )
        if x[_LAT] and st is not None:
            lat = ev.io_latency_ms or 0.0
            parts.append(
                (
                    w[_LAT] * x[_LAT],
                    "io_latency_ms",
                    lat,
                    st.lat_mean,
                    f"I/O latency {lat:.1f} ms against {st.lat_mean:.1f} ms usual ({lat / st.lat_mean:.1f}x)",
                )
            )
        if x[_ERR]:
            errs = 2.0 ** x[_ERR] - 1.0
            parts.append(
                (
                    w[_ERR] * x[_ERR],
                    "io_errors",
                    float(ev.io_errors or 0),
                    0.0,
                    f"{errs:.0f} recent I/O errors (decayed count)",
                )
            )
        if x[_LEVEL] and w[_LEVEL] * x[_LEVEL] >= 1.0:
            lvl = [(TRACKED[i], _cur(ev, st, i)) for i in (0, 3, 1, 4)]
            lvl = [(k, v) for k, v in lvl if v == v and v > 0]
            if lvl:
                name, v = max(lvl, key=lambda t: t[1])
                parts.append(
                    (
                        w[_LEVEL] * x[_LEVEL],
                        f"smart_{name}_raw",
                        v,
                        0.0,
                        f"SMART {name} ({_NAMES[name]}) at {v:g} (non-zero)",
                    )
                )
        if w[_LRARE] * x[_LRARE] >= 0.5 and st is not None:
            _, k, rate = self._level_rare(
                ev.model, st, _cur(ev, st, 0), _cur(ev, st, 3), _cur(ev, st, 1), _cur(ev, st, 4)
            )
            if k >= 0:
                name = _NZ_KEYS[k]
                v = _cur(ev, st, 0) if k == 0 else _cur(ev, st, 3)
                if k == 2:
                    v = max(0.0, _cur(ev, st, 1)) + max(0.0, _cur(ev, st, 4))
                who = f"model {ev.model}" if ev.model else "drives without a model"
                share = "no" if rate != rate else f"{100.0 * rate:.2g}% of the"
                parts.append(
                    (
                        w[_LRARE] * x[_LRARE],
                        f"smart_{name.split('+')[0]}_raw",
                        v,
                        0.0,
                        f"SMART {name} at {v:g}: as high in {share} healthy readings of {who}",
                    )
                )
        if not parts:
            if z >= self._z_cut:  # evidence of a kind with no sentence: name the feature
                i = max(range(_NF), key=lambda j: w[j] * x[j])
                parts.append((w[i] * x[i], "disk_failure_score", score, 0.0, f"{FEATURES[i]} at {x[i]:.2g}"))
            else:
                return DiskVerdict(
                    score, False, "smart_5_raw", _cur(ev, st, 0), _first(st, 0), [], warming
                )
        if len(parts) > 1:
            parts.sort(key=lambda p: -p[0])
        top = parts[0]
        return DiskVerdict(
            score, z >= self._z_cut, top[1], top[2], top[3], [p[4] for p in parts], warming
        )

    # ------------------------------------------------------------------ shared state

    def to_bytes(self) -> bytes:
        """Serialise the shared model, ``struct``, no pickle.

        The weights, the label counts and, per drive model, the readings and
        counter rises of its healthy drives (about 20 bytes a model).
        """
        out = [_MODEL.pack(_MODEL_VERSION, self._n_pos, self._n_neg, *self._weights)]
        out.append(_U16.pack(len(self._family)))
        for name, counts in self._family.items():
            raw = name.encode("utf-8")[:255]
            out.append(_FAMILY.pack(len(raw)) + raw + _COUNTS.pack(*counts))
        return b"".join(out)

    @classmethod
    def from_bytes(cls, b: bytes, **params: float) -> DiskFailureDetector:
        """Rebuild a detector from :meth:`to_bytes`; ``params`` are the constructor arguments."""
        try:
            if b[0] not in (2, _MODEL_VERSION):
                raise ValueError("version")
            old = b[0] == 2  # the previous release: no level_rare weight, 4 counts a model
            det = cls(**params)  # type: ignore[arg-type]
            head = _MODEL_V2 if old else _MODEL
            counts = _COUNTS_V2 if old else _COUNTS
            v = head.unpack_from(b)
            det._n_pos, det._n_neg = v[1], v[2]
            det._weights = list(v[3:]) + ([PRIOR_WEIGHTS[_LRARE]] if old else [])
            off = head.size
            (n,) = _U16.unpack_from(b, off)
            off += _U16.size
            family: dict[str, list[float]] = {}
            for _ in range(n):
                (k,) = _FAMILY.unpack_from(b, off)
                name = b[off + 1 : off + 1 + k].decode("utf-8", "replace")
                off += 1 + k
                family[name] = list(counts.unpack_from(b, off)) + [0.0] * (_NC - counts.size // 8)
                off += counts.size
        except (IndexError, ValueError, struct.error) as exc:
            raise DiskStateError(
                f"not a version-{_MODEL_VERSION} disk model ({len(b)} bytes): {exc}"
            ) from None
        if off != len(b):
            raise DiskStateError(f"disk model has {len(b) - off} trailing bytes")
        family.setdefault("", [0.0] * _NC)
        det._family = family
        return det

    @property
    def weights(self) -> dict[str, float]:
        """Current weights of the shared model, by feature name."""
        return dict(zip(FEATURES, self._weights, strict=True))

    def __repr__(self) -> str:
        return (
            f"DiskFailureDetector(threshold={self.threshold}, bias={self.bias}, "
            f"learning_rate={self.learning_rate}, labels={self._n_pos}+/{self._n_neg}-)"
        )


# --------------------------------------------------------------------------- helpers


def _bin(v: float) -> int:
    """Log2 bin of a counter value: 0 for none or zero, 1 for 1, 2 for 2-3, ... _NBIN for 1,024 and more."""
    if not v >= 1.0:  # NaN too
        return 0
    b = 1 + int(_log2(v))
    return b if b < _NBIN else _NBIN


def _unc(a: float | None, b: float | None) -> float:
    """SMART 187 + 198, unseen ones (None, NaN) as 0."""
    x = a if a is not None and a == a else 0.0
    y = b if b is not None and b == b else 0.0
    return x + y


def _tail(f: list[float], h: int, b: int) -> float:
    """Readings in bin ``b`` or above of the histogram at ``h``."""
    t = 0.0
    for i in range(h + b - 1, h + _NBIN):
        t += f[i]
    return t


def _cur(ev: DiskHealthEvent, st: DriveState | None, i: int) -> float:
    v = ev.smart.get(TRACKED[i])
    if v is None:
        return st.tracks[i].last if st is not None else _NAN
    return v


def _first(st: DriveState | None, i: int) -> float:
    return st.tracks[i].first if st is not None else _NAN


def _inc(st: DriveState | None, i: int, ev: DiskHealthEvent) -> float:
    if st is None:
        return 0.0
    v = ev.smart.get(TRACKED[i])
    t = st.tracks[i]
    return float(min(6, t.inc + (1 if v is not None and v > t.last else 0)))


_RISE_SIGNAL = tuple(f"smart_{k}_raw" for k in TRACKED)
_RISE_HEAD = tuple(f"SMART {k} ({_NAMES[k]}) rose from " for k in TRACKED)


def _rise_text(ev: DiskHealthEvent, st: DriveState | None, i: int) -> tuple[str, float, float, str]:
    cur = ev.smart.get(TRACKED[i])  # _cur(), _first(), inline
    if st is None:
        if cur is None:
            cur = _NAN
        first = start = peak = _NAN
    else:
        t = st.tracks[i]
        if cur is None:
            cur = t.last
        first, start, peak = t.first, t.rise_ts, t.peak
    if first != first:
        first = cur
    if start != start:
        start = st.last_ts if st is not None and st.n else ev.ts
    days = max(0.0, (ev.ts - start) / _DAY)
    span = (
        f"{days:.0f} day{'s' if round(days) != 1 else ''}" if days >= 1.0 else f"{days * 24:.0f} h"
    )
    text = f"{_RISE_HEAD[i]}{first:g} to {cur:g} in {span}"
    if i == 3 and peak == peak and peak > cur:
        text += f" (peak {peak:g})"
    return _RISE_SIGNAL[i], cur, first, text
