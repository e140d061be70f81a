"""Replay Backblaze SMART data through DiskFailureDetector: tuning parts and report-only parts.

Usage::

    .venv/bin/python benchmarks/disk_smart.py [--data DIR] [--river] [--scale 100000]

Reads ``DIR`` (default ``../shared/datasets/smart`` next to the repository)
and skips with a message, exit status 0, when the data is absent. Each row
becomes a :class:`DiskHealthEvent`; ``failure`` is set on a failed drive's
last row only (the label arrives with the last reading).

A failed drive is *caught* when a reading strictly before its failure row is
flagged; a healthy drive is *alerted* when any of its readings in the part's
time range is flagged; the *lead* is the failure time minus the first flag.

Parts (the detector always replays the whole stream online, once, in event
order; only the counting is split):

- dev 2013 sample, **time split**: the threshold is tuned on failures before
  ``SPLIT_DATE`` and the healthy drives' flags before it; reported on the
  failures from that date on and the healthy drives' flags from then on;
- dev 2013 sample, **leave one model out**: for each model with at least 10
  failed drives, the threshold is tuned on the drives of the other models and
  reported on that model's drives (the reports are pooled);
- the **TOSHIBA** sample, a second fleet (one 2019 model, replayed drive by
  drive in a seeded shuffled order): report-only, at the time-split threshold.

Each part is printed with and without SMART 9 (power-on hours), beside the
simple rules of issue 19 counted on the same readings. The tuning rule: the
highest threshold-grid point's catch rate with at most ``--max-healthy`` of
the healthy drives alerted. ``--river`` adds River online classifiers over
the detector's per-drive features, scored before learning, with labels
revealed ``HORIZON_DAYS`` after each reading (delayed labels).
"""

from __future__ import annotations

import argparse
import csv
import math
import random
import statistics
import sys
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from detectors import compiled_modules  # noqa: E402
from detectors.configfile import parse_scalar  # noqa: E402
from detectors.disk import FEATURES, DiskFailureDetector, DriveState  # noqa: E402
from detectors.events import DiskHealthEvent  # noqa: E402

DEV = "bb2013_failed120_healthy1000.csv"
TOSHIBA = "TOSHIBA_MQ01ABF050_last_10_day_all_q_raw.csv"
SEED = 20240601
SPLIT_DATE = "2013-04-28"
DAY = 86400.0
GRID = tuple(round(0.05 * k, 2) for k in range(2, 20)) + (0.97, 0.99, 0.995, 0.999)
COUNTERS = ("5", "187", "188", "197", "198")


# --------------------------------------------------------------------------- data


def load(path: Path, order: str) -> tuple[list[DiskHealthEvent], set[str]]:
    """Events in replay order and the serials of the failed drives."""
    by_drive: dict[str, list[tuple[str, dict[str, str]]]] = {}
    with path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            by_drive.setdefault(row["serial_number"], []).append((row["date"], row))
    failed = {s for s, rows in by_drive.items() if any(r["failure"] == "1" for _, r in rows)}
    events: list[tuple[float, str, DiskHealthEvent]] = []
    serials = sorted(by_drive)
    if order == "shuffled":
        random.Random(SEED).shuffle(serials)
    for rank, serial in enumerate(serials):
        rows = sorted(by_drive[serial], key=lambda t: t[0])
        for j, (date, row) in enumerate(rows):
            ts = datetime.fromisoformat(date).replace(tzinfo=UTC).timestamp()
            smart = {
                k[6:-4]: float(v)
                for k, v in row.items()
                if k.startswith("smart_") and k.endswith("_raw") and v != ""
            }
            last = j == len(rows) - 1
            ev = DiskHealthEvent(
                ts=ts,
                host=f"bb-{serial[:4]}",
                disk=serial,
                smart=smart,
                model=row.get("model") or None,
                failure=True if (last and serial in failed) else None,
            )
            events.append((ts if order == "date" else float(rank), serial, ev))
    events.sort(key=lambda t: (t[0], t[1]) if order == "date" else t[0])  # stable within a drive
    return [e for _, _, e in events], failed


def without_poh(events: list[DiskHealthEvent]) -> list[DiskHealthEvent]:
    """The same readings with SMART 9 (power-on hours) left out."""
    out = []
    for ev in events:
        smart = {k: v for k, v in ev.smart.items() if k != "9"}
        out.append(
            DiskHealthEvent(ts=ev.ts, host=ev.host, disk=ev.disk, smart=smart, model=ev.model, failure=ev.failure)
        )
    return out


# --------------------------------------------------------------------------- replay and counting


def replay(events: list[DiskHealthEvent], det: DiskFailureDetector) -> tuple[list[float], dict[str, DriveState]]:
    """Score every reading before it is learned; the drives' states at the end."""
    states: dict[str, DriveState] = {}
    scores = [0.0] * len(events)
    score_one, learn_one = det.score_one, det.learn_one
    for k, ev in enumerate(events):
        st = states.get(ev.disk)
        scores[k] = score_one(ev, st).score
        if st is None:
            states[ev.disk] = learn_one(ev, None)
        else:
            learn_one(ev, st)
    return scores, states


class Part:
    """Which drives a part counts, and which time ranges for failures and healthy flags."""

    def __init__(self, name: str, drives: set[str], lo: float = -1e300, hi: float = 1e300) -> None:
        self.name, self.drives, self.lo, self.hi = name, drives, lo, hi


class Outcome:
    """Counts of one part at one threshold."""

    def __init__(self) -> None:
        self.caught = self.failed = self.alerted = self.healthy = 0
        self.leads: list[float] = []
        self.by_model: Counter[str] = Counter()
        self.healthy_by_model: Counter[str] = Counter()

    def add(self, o: Outcome) -> None:
        self.caught += o.caught
        self.failed += o.failed
        self.alerted += o.alerted
        self.healthy += o.healthy
        self.leads += o.leads
        self.by_model += o.by_model
        self.healthy_by_model += o.healthy_by_model

    @property
    def rate(self) -> float:
        return self.caught / self.failed if self.failed else float("nan")

    @property
    def false_rate(self) -> float:
        return self.alerted / self.healthy if self.healthy else float("nan")

    def line(self) -> str:
        lead = statistics.median(self.leads) if self.leads else float("nan")
        return (
            f"caught {100 * self.rate:5.1f}% ({self.caught}/{self.failed}), healthy alerted "
            f"{100 * self.false_rate:4.1f}% ({self.alerted}/{self.healthy}), median lead {lead:4.1f} d"
        )


def flag_times(events: list[DiskHealthEvent], flags: Iterable[bool]) -> dict[str, list[float]]:
    """Per drive, the times of its flagged readings (never the failure row itself)."""
    out: dict[str, list[float]] = {}
    for ev, f in zip(events, flags, strict=True):
        if f and not ev.failure:
            out.setdefault(ev.disk, []).append(ev.ts)
    return out


def count(
    part: Part,
    flags: dict[str, list[float]],
    failed: set[str],
    fail_ts: dict[str, float],
    model: dict[str, str],
    seen: dict[str, tuple[float, float]],
) -> Outcome:
    o = Outcome()
    for d in part.drives:
        ts = flags.get(d, ())
        if d in failed:
            ft = fail_ts[d]
            if not part.lo <= ft < part.hi:
                continue
            o.failed += 1
            before = [t for t in ts if t < ft]
            if before:
                o.caught += 1
                o.leads.append((ft - before[0]) / DAY)
        else:
            first, last = seen[d]
            if last < part.lo or first >= part.hi:
                continue
            o.healthy += 1
            o.healthy_by_model[model[d]] += 1
            if any(part.lo <= t < part.hi for t in ts):
                o.alerted += 1
                o.by_model[model[d]] += 1
    return o


class Fleet:
    """One sample's readings, labels and, per threshold, the detector's flags."""

    def __init__(self, events: list[DiskHealthEvent], failed: set[str]) -> None:
        self.events, self.failed = events, failed
        self.fail_ts = {ev.disk: ev.ts for ev in events if ev.failure}
        self.model = {ev.disk: ev.model or "" for ev in events}
        self.seen: dict[str, tuple[float, float]] = {}
        for ev in events:
            f, _ = self.seen.get(ev.disk, (ev.ts, ev.ts))
            self.seen[ev.disk] = (f, ev.ts)
        self.drives = set(self.model)

    def outcome(self, part: Part, flags: dict[str, list[float]]) -> Outcome:
        return count(part, flags, self.failed, self.fail_ts, self.model, self.seen)


def tune(fleet: Fleet, scores: list[float], part: Part, max_healthy: float) -> float:
    """The grid threshold that catches most of ``part`` with at most ``max_healthy`` alerted (ties: the higher)."""
    best, best_t = -1.0, GRID[-1]
    for t in GRID:
        o = fleet.outcome(part, flag_times(fleet.events, (s >= t for s in scores)))
        if o.false_rate <= max_healthy and o.rate >= best:
            best, best_t = o.rate, t
    return best_t


def tune_exact(fleet: Fleet, scores: list[float], part: Part, max_healthy: float) -> float:
    """The lowest threshold with at most ``max_healthy`` of ``part``'s healthy drives alerted.

    For a learned probability, whose healthy scores may all sit above the
    grid's points: the threshold just above the highest score of the
    healthy drive that would push the share over the limit.
    """
    top: dict[str, float] = {}
    for ev, s in zip(fleet.events, scores, strict=True):
        d = ev.disk
        if d in part.drives and d not in fleet.failed and part.lo <= ev.ts < part.hi and s > top.get(d, -1.0):
            top[d] = s
    healthy = sorted(top.values(), reverse=True)
    k = int(max_healthy * len(healthy))
    if k >= len(healthy):
        return 0.0
    return math.nextafter(healthy[k], math.inf)


# --------------------------------------------------------------------------- simple rules


def rule_flags(events: list[DiskHealthEvent]) -> dict[str, list[bool]]:
    """The issue's rules on every reading: a non-zero counter, their sum > 8 or > 16, a counter above its first value."""
    first: dict[str, dict[str, float]] = {}
    out: dict[str, list[bool]] = {"any of 5/187/188/197/198 > 0": [], "sum > 8": [], "sum > 16": [], "rising": []}
    for ev in events:
        vals = {k: ev.smart[k] for k in COUNTERS if k in ev.smart}
        f = first.setdefault(ev.disk, dict(vals))
        for k, v in vals.items():
            f.setdefault(k, v)
        s = sum(vals.values())
        out["any of 5/187/188/197/198 > 0"].append(s > 0)
        out["sum > 8"].append(s > 8)
        out["sum > 16"].append(s > 16)
        out["rising"].append(any(v > f[k] for k, v in vals.items()))
    return out


# --------------------------------------------------------------------------- River (delayed labels)


def river_scores(
    events: list[DiskHealthEvent],
    make_model: Callable[[], object],
    horizon_days: float,
    negative_every: int = 1,
    params: dict[str, bool | int | float] | None = None,
) -> list[float]:
    """P(failure within ``horizon_days``) per reading from a River classifier, scored before learning.

    The label of a reading (1: the drive failed within the horizon after it)
    is revealed at the failure record or ``horizon_days`` after the reading,
    whichever comes first: the same idea as ``river.evaluate.progressive_val_score``
    with a delay, written out because the delay depends on the drive.
    """
    from detectors.disk_learn import DiskLearner

    learner = DiskLearner(make_model(), horizon_days=horizon_days, negative_every=negative_every)
    det = DiskFailureDetector(**(params or {}))
    states: dict[str, DriveState] = {}
    out = [0.0] * len(events)
    for k, ev in enumerate(events):
        st = states.get(ev.disk)
        x = det.features_one(ev, st)
        out[k] = learner.predict_proba_one(x)
        learner.observe(ev.disk, ev.ts, x, bool(ev.failure))
        states[ev.disk] = det.learn_one(ev, st)
    return out


# --------------------------------------------------------------------------- cost at scale


def scale_cost(
    events: list[DiskHealthEvent], drives: int, days: int, det: DiskFailureDetector
) -> tuple[float, float, int]:
    """us per reading (score_one + learn_one), in-memory bytes per drive, serialised bytes per drive.

    ``drives`` drives are copies of the sample's (serial suffixed), replayed
    ``days`` days, day by day.
    """
    by: dict[str, list[DiskHealthEvent]] = {}
    for ev in events:
        by.setdefault(ev.disk, []).append(ev)
    base = [v for v in by.values() if len(v) >= days]
    series = []
    for i in range(drives):
        src = base[i % len(base)]
        serial = f"{src[0].disk}-{i}"
        series.append(
            [
                DiskHealthEvent(ts=e.ts, host=e.host, disk=serial, smart=e.smart, model=e.model)
                for e in src[:days]
            ]
        )
    stream = [s[d] for d in range(days) for s in series]
    tracemalloc.start()
    m0 = tracemalloc.get_traced_memory()[0]
    states: dict[str, DriveState] = {}
    for ev in stream[:drives]:
        states[ev.disk] = det.learn_one(ev, None)
    mem = (tracemalloc.get_traced_memory()[0] - m0) / drives
    tracemalloc.stop()
    score_one, learn_one = det.score_one, det.learn_one
    t0 = time.process_time()
    for ev in stream[drives:]:
        st = states[ev.disk]
        score_one(ev, st)
        learn_one(ev, st)
    us = (time.process_time() - t0) / max(1, len(stream) - drives) * 1e6
    return us, mem, max(len(s.to_bytes()) for s in states.values())


# --------------------------------------------------------------------------- report


def evaluate(name: str, fleet: Fleet, scores: list[float], rules: dict[str, list[bool]], parts, max_healthy, fixed=None):
    """Tune on each tuning part (or take ``fixed``), print it and its report-only part; return the pooled report."""
    pooled = Outcome()
    pooled_rules: dict[str, Outcome] = {r: Outcome() for r in rules}
    for tune_part, report_part in parts:
        t = tune(fleet, scores, tune_part, max_healthy) if fixed is None else fixed
        flags = flag_times(fleet.events, (s >= t for s in scores))
        o_t, o_r = fleet.outcome(tune_part, flags), fleet.outcome(report_part, flags)
        pooled.add(o_r)
        if fixed is None:
            print(f"    tune   {tune_part.name:34s} threshold {t:.3g}: {o_t.line()}")
        print(f"    report {report_part.name:34s} threshold {t:.3g}: {o_r.line()}")
        for r, f in rules.items():
            pooled_rules[r].add(fleet.outcome(report_part, flag_times(fleet.events, f)))
    if len(parts) > 1:
        print(f"    REPORT pooled {name:28s}: {pooled.line()}")
    for r, o in pooled_rules.items():
        print(f"      rule {r:29s}: {o.line()}")
    return pooled


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parent.parent.parent / "shared/datasets/smart")
    ap.add_argument("--max-healthy", type=float, default=0.01, help="tuning rule: at most this share of healthy drives alerted")
    ap.add_argument("--river", action="store_true", help="also evaluate River classifiers with delayed labels")
    ap.add_argument("--horizon", type=float, default=14.0, help="River label horizon, days")
    ap.add_argument("--scale", type=int, default=100_000, help="drives in the cost measurement (0: skip)")
    ap.add_argument("--cost-only", action="store_true", help="only the cost measurement")
    ap.add_argument("--params", default="", help="detector parameters, k=v,k=v (for trying changes; e.g. stall_days=3)")
    ap.add_argument("--weights", default="", help="prior weights by feature name, k=v,k=v (for trying changes)")
    args = ap.parse_args(argv)
    if not (args.data / DEV).is_file():
        print(f"disk_smart: no SMART data under {args.data}; skipped")
        return 0
    params = {k: parse_scalar(v) for k, v in (p.split("=") for p in args.params.split(",") if p)}
    weights = {k: float(v) for k, v in (p.split("=") for p in args.weights.split(",") if p)}

    def make() -> DiskFailureDetector:
        det = DiskFailureDetector(**params)
        for k, v in weights.items():  # trying a prior weight: the shipped ones are PRIOR_WEIGHTS
            det._weights[FEATURES.index(k)] = v
        return det

    dev_events, dev_failed = load(args.data / DEV, "date")
    tosh = load(args.data / TOSHIBA, "shuffled") if (args.data / TOSHIBA).is_file() else None
    split = datetime.fromisoformat(SPLIT_DATE).replace(tzinfo=UTC).timestamp()
    default_t = DiskFailureDetector(**params).threshold
    print(f"disk_smart: params {params or 'defaults'}, weights {weights or 'prior'}, threshold grid {GRID[0]}..{GRID[-1]}, tuning rule <= {args.max_healthy:.1%} healthy alerted")
    for variant in () if args.cost_only else ("with SMART 9", "without SMART 9"):
        print(f"\n== {variant}")
        ev = dev_events if variant == "with SMART 9" else without_poh(dev_events)
        fleet = Fleet(ev, dev_failed)
        t0 = time.process_time()
        scores, states = replay(ev, make())
        us = (time.process_time() - t0) / len(ev) * 1e6
        rules = rule_flags(ev)
        allp = Part("all", fleet.drives)
        o = fleet.outcome(allp, flag_times(ev, (s >= default_t for s in scores)))
        print(f"  dev 2013, whole sample at the shipped threshold {default_t:.2f}: {o.line()}  ({us:.1f} us/reading)")
        big = [m for m, n in Counter(fleet.model[d] for d in fleet.drives - dev_failed).items() if n >= 50]
        print("    healthy alerted by model (>= 50 healthy): " + ", ".join(
            f"{m} {o.by_model[m]}/{o.healthy_by_model[m]}" for m in sorted(big)))
        print("  dev 2013, time split (tune before / report from " + SPLIT_DATE + "):")
        evaluate(
            "time", fleet, scores, rules,
            [(Part(f"failures before {SPLIT_DATE}", fleet.drives, hi=split), Part(f"failures from {SPLIT_DATE}", fleet.drives, lo=split))],
            args.max_healthy,
        )
        t_time = tune(fleet, scores, Part("", fleet.drives, hi=split), args.max_healthy)
        print("  dev 2013, leave one model out (models with >= 10 failed drives):")
        fm = Counter(fleet.model[d] for d in dev_failed)
        parts = []
        for m, n in fm.most_common():
            if n < 10:
                continue
            mine = {d for d in fleet.drives if fleet.model[d] == m}
            parts.append((Part(f"all but {m}", fleet.drives - mine), Part(f"{m}", mine)))
        evaluate("leave one model out", fleet, scores, rules, parts, args.max_healthy)
        if tosh is not None:
            tev = tosh[0] if variant == "with SMART 9" else without_poh(tosh[0])
            tf = Fleet(tev, tosh[1])
            tscores, _ = replay(tev, make())
            print(f"  TOSHIBA MQ01ABF050 2019 (second fleet, report-only, last 10 days per drive), threshold {t_time:.3g} from the time split:")
            evaluate("toshiba", tf, tscores, rule_flags(tev), [(Part("", set()), Part("TOSHIBA", tf.drives))], args.max_healthy, t_time)
            o = tf.outcome(Part("", tf.drives), flag_times(tev, (s >= default_t for s in tscores)))
            print(f"    at the shipped threshold {default_t:.2f}: {o.line()}")
        if args.river:
            print(
                f"  River, delayed labels (revealed at the failure or {args.horizon:g} d after each reading), time split;"
                f" threshold: the lowest with <= {args.max_healthy:.1%} of the tuning part's healthy drives alerted:"
            )
            for label, make_model, every in river_models():
                rs = river_scores(ev, make_model, args.horizon, every, params)
                t = tune_exact(fleet, rs, Part("", fleet.drives, hi=split), args.max_healthy)
                o = fleet.outcome(Part("", fleet.drives, lo=split), flag_times(ev, (s >= t for s in rs)))
                print(f"    {label:40s} threshold {t:.3g}: report {o.line()}")
    if args.scale:
        us, mem, size = scale_cost(dev_events, args.scale, 4, make())
        print(
            f"\ncost at {args.scale:,} drives (copies of the dev drives, 4 daily readings each): "
            f"{us:.2f} us per reading (score_one + learn_one, CPU time), {mem:.0f} bytes per drive in memory, "
            f"{size} bytes per drive serialised; "
            f"detectors.disk {'compiled' if 'detectors.disk' in compiled_modules() else 'pure Python'}"
        )
    return 0


def river_models() -> list[tuple[str, Callable[[], object], int]]:
    """(label, model factory, learn one negative label in this many)."""
    from river import compose, forest, linear_model, optim, preprocessing

    def logistic() -> object:
        return compose.Pipeline(
            preprocessing.StandardScaler(), linear_model.LogisticRegression(optimizer=optim.SGD(0.05))
        )

    def arf() -> object:
        return forest.ARFClassifier(n_models=10, seed=SEED)

    return [
        ("logistic regression (scaled)", logistic, 1),
        ("logistic regression, 1 negative in 10", logistic, 10),
        ("adaptive random forest (10 trees)", arf, 1),
        ("adaptive random forest, 1 negative in 10", arf, 10),
        ("adaptive random forest, 1 negative in 50", arf, 50),
    ]


if __name__ == "__main__":
    raise SystemExit(main())
