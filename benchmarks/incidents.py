"""Incident days through ``tocsin backtest``: detection, cause and false alerts.

Generates simulated school-platform weeks (several seeds, with and without a
second incident overlapping the attack, with and without history), replays
each through the same code path as ``tocsin backtest``, and scores the
alerts against the simulator's ground truth:

* detected: a firing alert on the incident's service (and host for a disk)
  starting at most ``--within`` seconds after the incident starts; for a
  failing drive, an alert on that drive before its failure record counts too;
* right cause: the first such alert names the true cause;
* false alerts: firing alerts that match no incident, per service and day;
  those starting in the usual morning peak (07:00-10:00 local) are also
  counted on their own.

Usage::

    .venv/bin/python benchmarks/incidents.py [--seeds 1 2 3] [--scale 3] [--history-days 4] [--within 120]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from detectors.timeutil import parse_ts  # noqa: E402
from stream.backtest import run_backtest  # noqa: E402
from stream.tools import simulator  # noqa: E402

PARIS = ZoneInfo("Europe/Paris")


def failure_records(disks: Path) -> dict[str, float]:
    out = {}
    for line in open(disks, "rb"):
        ev = orjson.loads(line)
        if ev.get("failure"):
            out[ev["disk"]] = ev["ts"] if isinstance(ev["ts"], int | float) else parse_ts(ev["ts"])
    return out


def score(truth: list[dict], alerts: list[dict], failures: dict[str, float], within: float, days: int, services: int):
    fired = [a for a in alerts if a["status"] == "firing"]
    firsts: dict[str, dict] = {}
    for a in fired:  # first firing record of each fingerprint
        firsts.setdefault(a["fingerprint"], a)
    matched: set[str] = set()
    rows = []
    for t in truth:
        start = parse_ts(t["start"])
        cands = [a for a in firsts.values()
                 if a["labels"]["service"] == t["service"] and start - 60 <= parse_ts(a["starts_at"]) <= start + within
                 and (t["cause"] != "disk_failure" or a["labels"]["host"] in (t["host"], None))]
        if t["cause"] == "disk_failure":
            fail = failures.get(t["disk"], float("inf"))
            cands += [a for a in firsts.values() if a["labels"]["disk"] == t["disk"] and parse_ts(a["starts_at"]) < fail]
        cands.sort(key=lambda a: parse_ts(a["starts_at"]))
        # Every alert about the incident's service during it is part of it, not a false one.
        end = parse_ts(t["end"])
        matched.update(a["fingerprint"] for a in firsts.values()
                       if (a["labels"]["service"] == t["service"] and start - 60 <= parse_ts(a["starts_at"]) <= end)
                       or (t.get("disk") and a["labels"]["disk"] == t["disk"]))
        first = cands[0] if cands else None
        delay = parse_ts(first["starts_at"]) - start if first else None
        rows.append((t, first, delay))
    false = [a for fp, a in firsts.items() if fp not in matched]
    peak_false = [a for a in false
                  if 7 <= datetime.fromtimestamp(parse_ts(a["starts_at"]), UTC).astimezone(PARIS).hour < 10]
    return rows, false, peak_false


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--scale", type=float, default=3.0)
    ap.add_argument("--history-days", type=int, default=4)
    ap.add_argument("--within", type=float, default=120.0)
    args = ap.parse_args()
    total = detected = right = 0
    false_total = peak_total = service_days = 0
    for seed in args.seeds:
        for concurrent in (False, True):
            sc = simulator.Scenario(seed=seed, history_days=args.history_days, scale=args.scale, concurrent=concurrent)
            with tempfile.TemporaryDirectory() as tmp:
                d = Path(tmp)
                t0 = time.perf_counter()
                simulator.write_jsonl(sc, d / "in")
                res = run_backtest(str(d / "in" / "requests.jsonl.gz"), str(d / "in" / "disks.jsonl"), d / "out")
                truth = orjson.loads((d / "in" / "truth.json").read_bytes())
                alerts = [orjson.loads(x) for x in open(d / "out" / "alerts.jsonl", "rb")]
                rows, false, peak = score(truth, alerts, failure_records(d / "in" / "disks.jsonl"), args.within,
                                          args.history_days + 1, len(sc.services))
                dt = time.perf_counter() - t0
            print(f"seed {seed}{' +concurrent' if concurrent else ''}: {res.events:,} events, {dt:.0f} s")
            for t, first, delay in rows:
                total += 1
                ok = first is not None
                detected += ok
                good = ok and first["cause"] == t["cause"]
                right += good
                what = (f"{first['cause']:20s} after {delay:+5.0f} s" if ok else "MISSED")
                print(f"  {t['cause']:20s} {t['service']:24s} -> {what}{'' if good or not ok else '  WRONG CAUSE'}")
            for a in false:
                print(f"  false alert: {a['starts_at']} {a['cause']} {a['title']}")
            false_total += len(false)
            peak_total += len(peak)
            service_days += (args.history_days + 1) * len(sc.services)
    print()
    print(f"incidents {total}: detected {detected} ({100 * detected / total:.0f}%), right cause {right} "
          f"({100 * right / total:.0f}%); false alerts {false_total} over {service_days} service-days "
          f"({false_total / service_days:.2f} per service per day), {peak_total} at the usual morning peaks")
    return 0


if __name__ == "__main__":
    sys.exit(main())
