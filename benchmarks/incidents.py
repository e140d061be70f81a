"""Incidents nobody tuned for: detection, cause, false alerts and calibration over many worlds.

Each seed is a world of its own (``stream.tools.simulator.world``): six
services, a date, seven incidents drawn from every shape the simulator knows
(residential botnets, credential stuffing, night scraping, a weekend
scraper, an attack inside a surge, saturations without 5xx, a host out of
the pool, a slow creep, first-day and homework surges, silent and
database-host drive failures) and five benign confounders (newsletter,
deploy, crawler, carrier-grade NAT, a SMART tick; the nightly backup I/O
runs every night). Every world is replayed through the same code path as
``tocsin backtest`` and scored against its ``truth.json``:

* detected: an alert about the incident (its service; for a drive, its host
  or the drive itself before its failure record) that starts at most
  ``--within`` seconds after the incident starts (and no earlier than a
  minute before its ramp: a creep or a botnet seen on its way up to the
  onset the truth gives is seen early, not falsely), or an alert already
  firing on the service that changes within that time;
* right cause: what that alert says ``--within`` seconds after the start;
* false alerts: firing alerts that match no incident, per service and day;
  alerts on confounders: those of them on a confounder's service (or drive)
  while it runs;
* reliability: of the causes given (incidents and false alerts alike), how
  many were right, per band of printed confidence.

The tuning seeds are the ones the diagnosis was tuned on and the cause
model trained on; the report-only seeds are the headline, never tuned on.

Usage::

    .venv/bin/python benchmarks/incidents.py [--only tuning|report] [--no-model]
        [--write-table detectors/data/cause_windows.csv]
        [--write-calibration detectors/data/cause_calibration.json]

Generated worlds are cached under ``$TMPDIR/tocsin-worlds`` (keyed by the
simulator's source), so a second run replays without regenerating.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from detectors.cause_model import CALIBRATION, TABLE, CauseModel  # noqa: E402
from detectors.config import DetectorsConfig  # noqa: E402
from detectors.timeutil import parse_ts  # noqa: E402
from stream.backtest import run_backtest  # noqa: E402
from stream.engine import Engine  # noqa: E402
from stream.tools import simulator  # noqa: E402

TUNING = (101, 102, 103, 104, 105, 106)
REPORT = (201, 202, 203, 204, 205, 206)
BANDS = ((0.0, 0.5), (0.5, 0.6), (0.6, 0.7), (0.7, 0.8), (0.8, 0.9), (0.9, 1.01))


def _ts(x) -> float:
    return x if isinstance(x, int | float) else parse_ts(x)


def world_files(seed: int, history_days: int, scale: float) -> Path:
    """The world's recording (generated once, then cached)."""
    src = hashlib.blake2b(Path(simulator.__file__).read_bytes(), digest_size=6).hexdigest()
    d = Path(tempfile.gettempdir()) / "tocsin-worlds" / f"{seed}-{history_days}-{scale}-{src}"
    if not (d / "done").exists():
        simulator.write_jsonl(simulator.world(seed, history_days=history_days, scale=scale), d)
        (d / "done").touch()
    return d


def failure_records(disks: Path) -> dict[str, float]:
    out = {}
    for line in open(disks, "rb"):
        ev = orjson.loads(line)
        if ev.get("failure"):
            out[ev["disk"]] = _ts(ev["ts"])
    return out


def _about(a: dict, t: dict) -> bool:
    """Is alert ``a`` about incident or confounder ``t`` (labels only)?"""
    lab = a["labels"]
    if t.get("disk") and lab.get("disk") == t["disk"]:
        return True
    if t["cause"] == "disk_failure" or t.get("kind") in ("smart_tick", "backup_io"):
        return lab.get("host") == t.get("host") or (lab.get("service") == t["service"] and lab.get("host") is None
                                                     and t["cause"] == "disk_failure")
    return lab.get("service") == t["service"]


def score(truth: list[dict], records: list[tuple[float, dict]], failures: dict[str, float], within: float):
    """Rows (incident, cause named or None, delay, confidence), false alerts, alerts on confounders."""
    incidents = [t for t in truth if t["cause"] != "benign"]
    confs = [t for t in truth if t["cause"] == "benign"]
    # An alert's episodes (same labels: same fingerprint, fired again after it resolved)
    # are told apart by their start: the key below is fingerprint and starts_at.
    firing = [(ts, a | {"fingerprint": f"{a['fingerprint']}@{a['starts_at']}"})
              for ts, a in records if a["status"] == "firing"]
    firsts: dict[str, tuple[float, dict]] = {}
    for ts, a in firing:
        firsts.setdefault(a["fingerprint"], (ts, a))
    matched: set[str] = set()
    rows = []
    for t in incidents:
        start, end = _ts(t["start"]), _ts(t["end"])
        # A ramping incident (a creep, a botnet) may be seen on its ramp, before the onset the
        # truth gives (the knee, half the attack's rate): an alert from its ramp on is about it.
        first = min(start, _ts(t.get("ramp_start") or start)) - 60
        deadline = start + within
        fail = failures.get(t.get("disk") or "", float("inf"))
        new = [fp for fp, (_, a) in firsts.items() if _about(a, t) and (
            first <= _ts(a["starts_at"]) <= deadline
            or (t["cause"] == "disk_failure" and a["labels"].get("disk") == t.get("disk")
                and _ts(a["starts_at"]) < fail))]
        # A change of an alert already firing counts from the same time as a new alert (its ramp).
        ongoing = [a["fingerprint"] for ts, a in firing if _about(a, t) and first <= ts <= deadline + 60]
        fps = new or ongoing
        matched.update(fp for fp, (_, a) in firsts.items()
                       if _about(a, t) and first <= _ts(a["starts_at"]) <= end + 900)
        matched.update(fps)
        if not fps:
            late = [_ts(a["starts_at"]) - start for _, a in firsts.values()
                    if _about(a, t) and deadline < _ts(a["starts_at"]) <= end]
            rows.append((t, None, min(late) if late else None, None))
            continue
        # what the first such alert says by the deadline (its first record if it came later)
        fp = min(fps, key=lambda f: _ts(firsts[f][1]["starts_at"]))
        recs = [(ts, a) for ts, a in firing if a["fingerprint"] == fp]
        said = [a for ts, a in recs if ts <= deadline + 60] or [recs[0][1]]
        last = said[-1]
        rows.append((t, last["cause"], _ts(firsts[fp][1]["starts_at"]) - start, last["confidence"]))
    false = [a for fp, (_, a) in firsts.items() if fp not in matched]
    on_conf = [(c, a) for c in confs for a in false
               if _about(a, c) and _ts(c["start"]) - 60 <= _ts(a["starts_at"]) <= _ts(c["end"]) + 300]
    return rows, false, on_conf


def label_rows(truth: list[dict], recorded: list) -> list[tuple[dict[str, float], str]]:
    """Training rows: each recorded candidate window with the cause the truth gives it."""
    out = []
    for svc, start, _end, slow, x in recorded:
        label = "benign"
        best = None
        for t in truth:
            if t["cause"] == "benign" or t["service"] != svc:
                continue
            t0, t1 = min(_ts(t["start"]), _ts(t.get("ramp_start") or t["start"])), _ts(t["end"])
            if t0 - 60 <= start <= t1 + 900 and (best is None or t0 > _ts(best["start"])):
                best = t
        if best is not None:
            if best["cause"] == "disk_failure" and best.get("host") not in slow:
                continue  # the window is not about the drive's host
            label = best["cause"]
        out.append((x, label))
    return out


def run_set(name: str, seeds, args, model: CauseModel | None, table: list | None, verbose: bool = True,
            model_for=None) -> dict:
    """Replay and score ``seeds``; ``model_for(seed)``, when given, is the cause model of each
    world (out-of-fold: one trained without that world's windows), else ``model`` for all."""
    tot = defaultdict(int)
    rel: list[tuple[float, bool]] = []
    by_kind: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    print(f"== {name} seeds {' '.join(map(str, seeds))}")
    for seed in seeds:
        d = world_files(seed, args.history_days, args.scale)
        eng = Engine(DetectorsConfig())
        eng.diagnoser.cause_model = model_for(seed) if model_for is not None else model
        if table is not None:
            eng.diagnoser.recorder = []
        records: list[tuple[float, dict]] = []

        def on_alert(a, eng=eng, records=records):
            # the engine's clock when the record was made: when the on-call would have seen it
            records.append((eng.aggregator.low_watermark(), a.to_record()))

        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            res = run_backtest(str(d / "requests.jsonl.gz"), str(d / "disks.jsonl"), Path(tmp) / "out", eng,
                               on_alert=on_alert)
        dt = time.perf_counter() - t0
        recs = records
        truth = orjson.loads((d / "truth.json").read_bytes())
        if table is not None:
            table.extend((x, y, str(seed)) for x, y in label_rows(truth, eng.diagnoser.recorder or []))
        rows, false, on_conf = score(truth, recs, failure_records(d / "disks.jsonl"), args.within)
        n_svc = len({t["service"] for t in truth}) and 6
        tot["service_days"] += (args.history_days + 1) * n_svc
        if verbose:
            print(f"seed {seed}: {res.events:,} events, {dt:.0f} s")
        for t, cause, delay, conf in rows:
            tot["incidents"] += 1
            k = by_kind[f"{t['cause']}/{t.get('kind', 'default')}"]
            k[0] += 1
            if cause is None:
                if verbose:
                    print(f"  {t['cause']:20s} {t.get('kind', ''):20s} {t['service']:26s} -> MISSED"
                          + (f" (an alert {delay:+.0f} s after the start)" if delay is not None else ""))
                continue
            tot["detected"] += 1
            k[1] += 1
            good = cause == t["cause"]
            tot["right"] += good
            k[2] += good
            if cause != "unknown":
                rel.append((conf, good))
            if verbose:
                print(f"  {t['cause']:20s} {t.get('kind', ''):20s} {t['service']:26s} -> {cause:20s} "
                      f"after {delay:+6.0f} s conf {conf:.2f}{'' if good else '  WRONG CAUSE'}")
        for a in false:
            if a["cause"] != "unknown":
                rel.append((a["confidence"], False))
            if verbose:
                print(f"  false alert: {a['starts_at']} {a['cause']} {a['title']}")
        for c, a in on_conf:
            if verbose:
                print(f"  ON CONFOUNDER {c['kind']}: {a['starts_at']} {a['cause']} {a['title']}")
        tot["false"] += len(false)
        tot["on_conf"] += len(on_conf)
        tot["confounders"] += sum(t["cause"] == "benign" for t in truth)
    n = max(tot["incidents"], 1)
    print(f"-- {name}: incidents {tot['incidents']}: detected within {args.within:.0f} s {tot['detected']} "
          f"({100 * tot['detected'] / n:.0f}%), right cause {tot['right']} ({100 * tot['right'] / n:.0f}%); "
          f"false alerts {tot['false']} over {tot['service_days']} service-days "
          f"({tot['false'] / max(tot['service_days'], 1):.2f} per service per day); "
          f"alerts on {tot['confounders']} confounders: {tot['on_conf']}")
    print(f"   {'kind':42s} incidents detected right")
    for k in sorted(by_kind):
        v = by_kind[k]
        print(f"   {k:42s} {v[0]:9d} {v[1]:8d} {v[2]:5d}")
    print("   reliability (causes given, incidents and false alerts): confidence band -> right / given")
    for lo, hi in BANDS:
        sel = [g for c, g in rel if lo <= c < hi]
        if sel:
            print(f"   {lo:.1f}-{min(hi, 1.0):.1f}: {sum(sel):3d} / {len(sel):3d} ({100 * sum(sel) / len(sel):.0f}%)")
    hi_conf = [g for c, g in rel if c >= 0.8]
    if hi_conf:
        print(f"   given at >= 80%: {sum(hi_conf)} / {len(hi_conf)} right ({100 * sum(hi_conf) / len(hi_conf):.0f}%)")
    return {"totals": dict(tot), "reliability": rel}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tuning-seeds", type=int, nargs="+", default=list(TUNING))
    ap.add_argument("--report-seeds", type=int, nargs="+", default=list(REPORT))
    ap.add_argument("--only", choices=("tuning", "report"))
    ap.add_argument("--scale", type=float, default=1.5)
    ap.add_argument("--history-days", type=int, default=4)
    ap.add_argument("--within", type=float, default=120.0)
    ap.add_argument("--no-model", action="store_true", help="rules only (the diagnosis before the cause model)")
    ap.add_argument("--write-table", metavar="CSV", help="write the labelled windows of the tuning seeds")
    ap.add_argument("--write-calibration", metavar="JSON",
                    help="write the reliability of the model's probabilities on the tuning seeds (the tuning "
                         "part then prints raw probabilities; the report-only part uses the new table)")
    ap.add_argument("--table", metavar="CSV", default=str(TABLE),
                    help="the cause model's training table (default: the shipped one)")
    ap.add_argument("--calibration", metavar="JSON", default=str(CALIBRATION),
                    help="the model's reliability table (default: the shipped one)")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()
    table_path = Path(args.table)
    model = (None if args.no_model or not table_path.exists()
             else CauseModel.from_table(table_path, args.calibration))
    if model is None:
        print("cause model: none (rules only)")
    model_for = None
    if model is not None and args.write_calibration:
        # The reliability of the raw probabilities, measured out of fold where the table says
        # which world each window came from: each tuning world replayed with a model trained
        # without its windows (a model scored on its own training windows is over-confident).
        worlds = {w for _, _, w in CauseModel.read_table(table_path)}
        if all(str(s) in worlds for s in args.tuning_seeds):
            def model_for(seed: int) -> CauseModel:
                m = CauseModel.from_table(table_path, None, exclude={str(seed)})
                m.set_calibration([])
                return m
            print("calibration: out of fold (each tuning world replayed with a model trained without it)")
        else:
            print("calibration: in sample (the table does not say which world each window came from)")
        model.set_calibration([])  # measure the raw probabilities
    table: list | None = [] if args.write_table else None
    if args.only != "report":
        out = run_set("tuning", args.tuning_seeds, args, model, table, not args.quiet, model_for=model_for)
        if table is not None:
            n = CauseModel.write_table(args.write_table, [(x, y) for x, y, _ in table], [w for _, _, w in table])
            print(f"wrote {n} labelled windows to {args.write_table}")
        if args.write_calibration:
            # per band: right and given, with a prior worth 4 causes at the band's middle (few samples)
            stats = []
            for lo, hi in BANDS:
                sel = [g for c, g in out["reliability"] if lo <= c < hi]
                mid = (lo + min(hi, 1.0)) / 2
                stats.append([sum(sel) + 4 * mid, len(sel) + 4.0, [min(hi, 1.0)]])
            # isotonic (pool adjacent violators): a higher probability is never less often right
            i = 0
            while i < len(stats) - 1:
                if stats[i][0] / stats[i][1] > stats[i + 1][0] / stats[i + 1][1]:
                    a, b = stats[i], stats.pop(i + 1)
                    stats[i] = [a[0] + b[0], a[1] + b[1], a[2] + b[2]]
                    i = max(0, i - 1)
                else:
                    i += 1
            bins = [[ub, round(r / n, 3)] for r, n, ubs in stats for ub in ubs]
            Path(args.write_calibration).write_text(json.dumps({"bins": bins, "seeds": args.tuning_seeds,
                                                                      "out_of_fold": model_for is not None}) + "\n")
            print(f"wrote calibration {bins} to {args.write_calibration}")
            if model is not None:
                model.set_calibration(bins)  # the report-only seeds print calibrated confidences
    if args.only != "tuning":
        run_set("report-only (headline)", args.report_seeds, args, model, None, not args.quiet)
    return 0


if __name__ == "__main__":
    sys.exit(main())
