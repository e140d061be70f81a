#!/usr/bin/env python3
"""Numenta Anomaly Benchmark (NAB) run of tocsin's series scorers, with cross-validation.

Scores each series of ``<data>/files.txt`` with each detector of
``--detectors`` (the names of ``tocsin score --detector``: ``tocsin``,
``traffic``, ``latency``, ``river:<Class>[:json]``), writes the results in
NAB layout ``<results>/<det>/<category>/<det>_<file>.csv``, and scores them
with NAB's rules (the functions of ``nab_score.py``, imported from
``--scorer``) three ways, for each NAB profile:

``dev``
    One threshold chosen on all the series and applied to them (NAB's own
    use; the threshold has seen every series it is judged on).
``LOCO``
    Leave one category out: for each NAB category, the threshold is chosen
    on the other categories and applied to it.  ``pooled`` is NAB's
    normalised score of the 31 series so scored (each series judged at a
    threshold chosen without its category, windows weighted as NAB weighs
    them); ``mean`` is the mean of the categories' own normalised scores
    (categories without an anomaly window have none and are left out of it).
``LOSO``
    The same, leaving one series out.

The headline is the LOCO pooled standard score: the dev series stand in for
series never seen, which is what NAB's held-out half measures.  The dev
threshold of the sweep is checked against ``nab_score.optimise`` (the fast
sweep used for the folds must give the same one).  Per-point CPU cost and the
size of the learned state at the end of the longest series are printed for
each detector.

Usage
-----
    .venv/bin/python benchmarks/nab.py [--data ../shared/datasets/nab-dev]
        [--scorer ../shared/tools/nab_score.py] [--results DIR]
        [--detectors tocsin,traffic,latency,river:HalfSpaceTrees,...]
        [--procs 2] [--param name=value ...] [--save-thresholds thr.json]

``--param`` overrides a constructor argument of the ``tocsin`` detector
(repeatable).  ``--save-thresholds`` writes the dev thresholds of the
``tocsin`` detector (``benchmarks/nab-thresholds.json``: what the held-out
series are scored with).  When the data folder is absent the benchmark says
so and exits with status 0 (a fresh clone has no shared data).
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import os
import re
import sys
import tempfile
import time
import zlib
from datetime import UTC, datetime
from multiprocessing import Pool

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from detectors.configfile import parse_scalar  # noqa: E402
from detectors.river_adapter import make_series_scorer  # noqa: E402
from detectors.univariate import UnivariateDetector  # noqa: E402

DEFAULT_DATA = os.path.join(ROOT, "..", "shared", "datasets", "nab-dev")
DEFAULT_SCORER = os.path.join(ROOT, "..", "shared", "tools", "nab_score.py")
# HalfSpaceTrees draws its trees at random: seeded, so that two runs agree
DEFAULT_DETECTORS = (
    'tocsin,traffic,latency,river:HalfSpaceTrees:{"seed": 42},river:GaussianScorer,'
    "river:PredictiveAnomalyDetection"
)
PROFILE_NAMES = ("standard", "reward_low_FP_rate", "reward_low_FN_rate")


def _epoch(ts: str) -> float:
    return datetime.strptime(ts.split(".")[0], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC).timestamp()


def det_name(spec: str) -> str:
    """A results folder name for a detector spec (NAB names have no '_'; parameters hashed)."""
    base, brace, params = spec.partition(":{")
    name = re.sub(r"[^A-Za-z0-9]", "", base) or "det"
    return name + (f"{zlib.crc32(params.encode()):08x}" if brace else "")


def run_file(job: tuple) -> tuple[str, str, int, float, int]:
    """Score one series with one detector and write its NAB results file.

    ``job`` is ``(data_dir, rel_path, results_dir, spec, params, name)``; returns
    ``(name, rel_path, n_points, seconds spent scoring, state bytes)``.
    """
    data, rel, results, spec, params, name = job
    with open(os.path.join(data, "data", rel), newline="") as f:
        rows = list(csv.reader(f))[1:]
    ts = [r[0] for r in rows]
    vals = [float(r[1]) for r in rows]
    epochs = [_epoch(t) for t in ts]
    if params:
        model = UnivariateDetector(**params)
        scorer = model.score_learn_one
        size = lambda: len(model.to_bytes())  # noqa: E731
    else:
        s = make_series_scorer(spec)
        scorer, size = s.score_learn_one, s.nbytes
    t0 = time.process_time()
    scores = [scorer(v, e) for v, e in zip(vals, epochs, strict=True)]
    dt = time.process_time() - t0
    cat, fn = rel.split("/")
    out_dir = os.path.join(results, name, cat)
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, f"{name}_{fn}"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["timestamp", "value", "anomaly_score"])
        for t, v, sc in zip(ts, vals, scores, strict=True):
            w.writerow([t, repr(v), repr(sc)])
    return name, rel, len(vals), dt, size()


class Sweep:
    """NAB's threshold sweep (``nab_score.optimise``) over any subset of the series.

    The contribution of every row is fixed once per profile: a false
    positive adds ``u * fp``; inside a window, a row adds how much it raises
    the window's best ``u * tp`` over the rows scored higher than it (all in
    the same series, so the increments do not depend on which other series
    are in the fold).  Rows sorted by decreasing score, the objective at a
    threshold is then a cumulative sum, evaluated at the last row of each
    distinct score; ties keep the higher threshold, as NAB does.
    """

    def __init__(self, corpus: dict, scores: dict, prof: dict) -> None:
        s, inc, series = [], [], []
        self.files = list(corpus)
        for k, rel in enumerate(self.files):
            best: dict = {}
            rows = [
                (sc, kind, w, u)
                for (kind, w, u), sc in zip(corpus[rel], scores[rel], strict=True)
                if kind != "P"
            ]
            rows.sort(key=lambda r: -r[0])  # stable, as the global sort below
            for sc, kind, w, u in rows:
                if kind == "W":
                    old = best.get(w, -prof["fn"])
                    new = max(old, u * prof["tp"])
                    best[w] = new
                    inc.append(new - old)
                else:
                    inc.append(u * prof["fp"])
                s.append(sc)
                series.append(k)
        s_arr = np.array(s)
        order = np.argsort(-s_arr, kind="stable")
        self.s = s_arr[order]
        self.inc = np.array(inc)[order]
        self.series = np.array(series)[order]

    def threshold(self, train: set[str]) -> float:
        keep = np.isin(self.series, [k for k, rel in enumerate(self.files) if rel in train])
        s, cum = self.s[keep], np.cumsum(self.inc[keep])
        if len(s) == 0:
            return 1.1
        ends = np.flatnonzero(np.append(s[1:] != s[:-1], True))
        i = int(np.argmax(cum[ends]))
        return float(s[ends[i]]) if cum[ends[i]] > 0.0 else 1.1


def evaluate(nab, corpus: dict, scores: dict, windows: dict) -> dict:
    """dev, LOCO and LOSO scores (normalised as NAB does) for each profile."""
    out: dict = {}
    cats = sorted({rel.split("/")[0] for rel in corpus})

    def norm(files, raw):
        null = -prof["fn"] * sum(
            len({w for kind, w, _ in corpus[r] if kind == "W"}) for r in files
        )
        perfect = prof["tp"] * sum(len(windows[r]) for r in files)
        return None if perfect == null else 100.0 * (raw - null) / (perfect - null)

    for pname in PROFILE_NAMES:
        prof = nab.PROFILES[pname]
        sweep = Sweep(corpus, scores, prof)
        files = list(corpus)
        thr_ref, raw_ref = nab.optimise(corpus, scores, prof)
        thr = sweep.threshold(set(files))
        if thr != thr_ref:
            print(f"  warning: fast sweep threshold {thr} != nab_score {thr_ref} ({pname})")
        res = {"dev": norm(files, raw_ref), "thr": thr_ref}
        for fold, key in (("LOCO", lambda r: r.split("/")[0]), ("LOSO", lambda r: r)):
            groups = cats if fold == "LOCO" else files
            raw_all, per = 0.0, []
            for g in groups:
                held = [r for r in files if key(r) == g]
                t = sweep.threshold({r for r in files if key(r) != g})
                raw = nab.score_at({r: corpus[r] for r in held}, scores, prof, t)
                raw_all += raw
                v = norm(held, raw)
                if v is not None:
                    per.append(v)
                if fold == "LOCO":
                    res.setdefault("by_cat", {})[g] = (v, norm(held, nab.score_at(
                        {r: corpus[r] for r in held}, scores, prof, thr_ref)), t)
            res[fold] = norm(files, raw_all)
            res[fold + "_mean"] = sum(per) / len(per)
        out[pname] = res
    return out


def nested_loco(nab, corpus: dict, variants: dict, windows: dict, pname: str) -> tuple:
    """Leave one category out over the *choice of variant* as well as the threshold.

    For each category, every variant gets its threshold on the other
    categories and its NAB score there; the best variant there, at its
    threshold, is applied to the left-out category.  The pooled result
    estimates what selecting among ``variants`` on known series gives on
    series of a kind never seen (the selection cannot fit its own test).
    """
    prof = nab.PROFILES[pname]
    files = list(corpus)
    sweeps = {v: Sweep(corpus, sc, prof) for v, sc in variants.items()}
    raw_all, picks = 0.0, {}
    for g in sorted({r.split("/")[0] for r in files}):
        train = [r for r in files if r.split("/")[0] != g]
        held = [r for r in files if r.split("/")[0] == g]
        best = None
        for v, sc in variants.items():
            t = sweeps[v].threshold(set(train))
            tr = nab.score_at({r: corpus[r] for r in train}, sc, prof, t)
            if best is None or tr > best[0]:
                best = (tr, v, t)
        _, v, t = best
        picks[g] = v
        raw_all += nab.score_at({r: corpus[r] for r in held}, variants[v], prof, t)
    null = -prof["fn"] * sum(len({w for kind, w, _ in corpus[r] if kind == "W"}) for r in files)
    perfect = prof["tp"] * sum(len(windows[r]) for r in files)
    return 100.0 * (raw_all - null) / (perfect - null), picks


def _load_scorer(path: str):
    spec = importlib.util.spec_from_file_location("nab_score", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--data", default=DEFAULT_DATA, help="NAB folder with files.txt, data/, labels/")
    ap.add_argument("--scorer", default=DEFAULT_SCORER, help="path of nab_score.py")
    ap.add_argument("--results", default=os.path.join(tempfile.gettempdir(), "tocsin-nab-results"))
    ap.add_argument("--detectors", default=DEFAULT_DETECTORS, help="comma-separated specs")
    ap.add_argument("--procs", type=int, default=2, help="worker processes (max 2)")
    ap.add_argument("--param", action="append", default=[], help="tocsin override name=value")
    ap.add_argument(
        "--variant", action="append", default=[], metavar="NAME:k=v[,k=v]",
        help="a tocsin variant (constructor overrides) scored beside the others; with variants, "
        "the nested LOCO score of choosing among tocsin and them is printed",
    )
    ap.add_argument("--save-thresholds", help="write the tocsin dev thresholds (JSON) here")
    ap.add_argument("--by-category", action="store_true", help="print tocsin's dev/LOCO by category")
    a = ap.parse_args(argv)
    files_txt = os.path.join(a.data, "files.txt")
    if not os.path.isfile(files_txt):
        print(f"NAB data not found at {a.data}; skipping benchmark.")
        return 0
    nab = _load_scorer(a.scorer)
    def overrides(items) -> dict:
        out = {}
        for p in items:
            k, _, v = p.partition("=")
            out[k.strip()] = parse_scalar(v.strip())
        return out

    params = overrides(a.param)
    # specs hold JSON with commas: split on commas outside braces
    specs = [s for s in re.split(r",(?![^{]*})", a.detectors) if s]
    for s in specs:
        make_series_scorer(s)  # a bad spec fails here, not in a worker
    files = [ln.strip() for ln in open(files_txt) if ln.strip()]
    windows = json.load(open(os.path.join(a.data, "labels", "combined_windows.json")))
    size = {rel: os.path.getsize(os.path.join(a.data, "data", rel)) for rel in files}
    runs = [(s, params if s == "tocsin" else {}, det_name(s)) for s in specs]
    for v in a.variant:
        vname, _, items = v.partition(":")
        runs.append(("tocsin", overrides(items.split(",")) if items else {}, "tocsin" + det_name(vname)))
    jobs = [(a.data, rel, a.results, s, p, name) for s, p, name in runs for rel in files]
    jobs.sort(key=lambda j: -size[j[1]] * (3 if j[3] == "tocsin" else 1))  # big first
    t0 = time.perf_counter()
    procs = max(1, min(2, a.procs))
    if procs == 1:
        done = [run_file(j) for j in jobs]
    else:
        with Pool(procs) as pool:
            done = pool.map(run_file, jobs, chunksize=1)
    wall = time.perf_counter() - t0
    corpus = nab.load_corpus(a.data, files)
    longest = max(files, key=lambda r: len(corpus[r]))
    print(f"{len(files)} series, {sum(len(corpus[r]) for r in files)} points, scoring wall {wall:.0f}s "
          f"({procs} processes)")
    head = (f"{'detector':34s} {'LOCO std':>8s} {'dev std':>8s} {'LOCO mean':>9s} {'LOSO std':>8s} "
            f"{'LOCO lowFP':>10s} {'dev lowFP':>9s} {'LOCO lowFN':>10s} {'dev lowFN':>9s} "
            f"{'us/point':>8s} {'state B':>8s}")
    print(head)
    thresholds = {}
    tocsin_scores = {}
    for s, _, name in runs:
        mine = [d for d in done if d[0] == name]
        n_pts = sum(d[2] for d in mine)
        cpu = sum(d[3] for d in mine)
        state = next(d[4] for d in mine if d[1] == longest)
        scores = {rel: nab.load_scores(a.results, name, rel) for rel in files}
        if s == "tocsin":
            tocsin_scores[name] = scores
        r = evaluate(nab, corpus, scores, windows)
        st, fp, fn = r["standard"], r["reward_low_FP_rate"], r["reward_low_FN_rate"]
        label = name if s == "tocsin" else s
        print(f"{label:34s} {st['LOCO']:8.2f} {st['dev']:8.2f} {st['LOCO_mean']:9.2f} {st['LOSO']:8.2f} "
              f"{fp['LOCO']:10.2f} {fp['dev']:9.2f} {fn['LOCO']:10.2f} {fn['dev']:9.2f} "
              f"{1e6 * cpu / n_pts:8.1f} {state:8d}", flush=True)
        if name == "tocsin":
            thresholds = {"tocsin": {p: r[p]["thr"] for p in PROFILE_NAMES}}
            if a.by_category:
                for cat, (loco, dev, t) in sorted(st["by_cat"].items()):
                    fmt = lambda v: "   n/a" if v is None else f"{v:6.1f}"  # noqa: E731
                    print(f"    {cat:24s} LOCO {fmt(loco)} (thr {t:.4f})  dev {fmt(dev)}")
    if len(tocsin_scores) > 1:
        for pname in PROFILE_NAMES:
            v, picks = nested_loco(nab, corpus, tocsin_scores, windows, pname)
            chosen = ", ".join(f"{g}: {p}" for g, p in picks.items())
            print(f"nested LOCO, choosing among {len(tocsin_scores)} tocsin variants, {pname}: {v:.2f} ({chosen})")
    if a.save_thresholds and thresholds:
        with open(a.save_thresholds, "w") as f:
            json.dump(thresholds, f, indent=1)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
