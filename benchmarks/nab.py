#!/usr/bin/env python3
"""Numenta Anomaly Benchmark (NAB) run of ``detectors.univariate``.

Runs :class:`detectors.univariate.UnivariateDetector` (one parameter set for
every series) over each series listed in ``<data>/files.txt``, writes the
results in NAB layout ``<results>/<det>/<category>/<det>_<file>.csv``
(columns ``timestamp,value,anomaly_score,label``), then runs the NAB scorer
and prints the standard / reward_low_FP_rate / reward_low_FN_rate scores and
the cost in microseconds per point.

Usage
-----
    .venv/bin/python benchmarks/nab.py [--data ../shared/datasets/nab-dev]
        [--scorer ../shared/tools/nab_score.py] [--results /tmp/tocsin-nab]
        [--det tocsin] [--procs 2] [--param name=value ...]
        [--save-thresholds thr.json]

Current defaults on the 31 dev series: standard 75.54, reward_low_FP_rate
68.37, reward_low_FN_rate 80.12 (``benchmarks/nab-thresholds.json`` holds the
thresholds the scorer chose).

``--param`` overrides a detector constructor argument (repeatable), e.g.
``--param suppress=300``.  When the data folder is absent the benchmark prints
a message and exits with status 0 (a fresh clone has no shared data).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from multiprocessing import Pool

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from detectors.univariate import UnivariateDetector  # noqa: E402

DEFAULT_DATA = os.path.join(ROOT, "..", "shared", "datasets", "nab-dev")
DEFAULT_SCORER = os.path.join(ROOT, "..", "shared", "tools", "nab_score.py")


def _epoch(ts: str) -> float:
    return datetime.strptime(ts.split(".")[0], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC).timestamp()


def _parse_value(v: str) -> float | int | bool:
    if v.lower() in ("true", "false"):
        return v.lower() == "true"
    try:
        return int(v)
    except ValueError:
        return float(v)


def run_file(job: tuple) -> tuple[str, int, float]:
    """Score one series and write its NAB results file.

    Parameters
    ----------
    job : tuple
        ``(data_dir, rel_path, results_dir, det_name, params, windows)``.

    Returns
    -------
    tuple
        ``(rel_path, n_points, seconds spent scoring)``.
    """
    data, rel, results, det, params, windows = job
    with open(os.path.join(data, "data", rel), newline="") as f:
        rows = list(csv.reader(f))[1:]
    ts = [r[0] for r in rows]
    vals = [float(r[1]) for r in rows]
    epochs = [_epoch(t) for t in ts]
    model = UnivariateDetector(**params)
    t0 = time.perf_counter()
    scores = [model.score_learn_one(v, e) for v, e in zip(vals, epochs, strict=True)]
    dt = time.perf_counter() - t0
    spans = [(a.split(".")[0], b.split(".")[0]) for a, b in windows]
    cat, fn = rel.split("/")
    out_dir = os.path.join(results, det, cat)
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, f"{det}_{fn}"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["timestamp", "value", "anomaly_score", "label"])
        for t, v, s in zip(ts, vals, scores, strict=True):
            lab = int(any(a <= t <= b for a, b in spans))
            w.writerow([t, repr(v), repr(s), lab])
    return rel, len(vals), dt


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--data", default=DEFAULT_DATA, help="NAB folder with files.txt, data/, labels/"
    )
    ap.add_argument("--scorer", default=DEFAULT_SCORER, help="path of nab_score.py")
    ap.add_argument("--results", default=os.path.join(tempfile.gettempdir(), "tocsin-nab-results"))
    ap.add_argument("--det", default="tocsin", help="detector name (no '_')")
    ap.add_argument("--procs", type=int, default=2, help="worker processes (max 2)")
    ap.add_argument("--param", action="append", default=[], help="constructor override name=value")
    ap.add_argument("--save-thresholds", help="write the chosen thresholds (JSON) here")
    a = ap.parse_args(argv)
    if "_" in a.det:
        ap.error("--det must not contain '_'")
    files_txt = os.path.join(a.data, "files.txt")
    if not os.path.isfile(files_txt):
        print(f"NAB data not found at {a.data}; skipping benchmark.")
        return 0
    params = {}
    for p in a.param:
        k, _, v = p.partition("=")
        params[k] = _parse_value(v)
    files = [ln.strip() for ln in open(files_txt) if ln.strip()]
    labels = json.load(open(os.path.join(a.data, "labels", "combined_windows.json")))
    jobs = [(a.data, rel, a.results, a.det, params, labels.get(rel, [])) for rel in files]
    jobs.sort(key=lambda j: -os.path.getsize(os.path.join(a.data, "data", j[1])))  # big first
    t0 = time.perf_counter()
    procs = max(1, min(2, a.procs))
    if procs == 1:
        done = [run_file(j) for j in jobs]
    else:
        with Pool(procs) as pool:
            done = pool.map(run_file, jobs, chunksize=1)
    wall = time.perf_counter() - t0
    n_pts = sum(d[1] for d in done)
    cpu = sum(d[2] for d in done)
    list_path = os.path.join(a.results, a.det, "files.txt")
    with open(list_path, "w") as f:
        f.write("\n".join(files) + "\n")
    cmd = [
        sys.executable,
        a.scorer,
        "--results",
        a.results,
        "-d",
        a.det,
        "--nab",
        a.data,
        "--files",
        list_path,
    ]
    if a.save_thresholds:
        cmd += ["--save-thresholds", a.save_thresholds]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        print(res.stdout, res.stderr, file=sys.stderr)
        return res.returncode
    print(res.stdout.strip())
    line = res.stdout.strip().splitlines()[-1]
    sc = json.loads(line[line.index("{") : line.index("}") + 1])
    print(
        f"standard={sc['standard']:.2f} reward_low_FP_rate={sc['reward_low_FP_rate']:.2f} "
        f"reward_low_FN_rate={sc['reward_low_FN_rate']:.2f}  "
        f"{len(files)} series, {n_pts} points, {1e6 * cpu / n_pts:.1f} us/point, wall {wall:.1f}s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
