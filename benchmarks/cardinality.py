"""A cardinality attack in a backtest: 100,000 random service names among normal traffic.

Simulates a recording (``tocsin simulate``), then writes a second one: the
same requests plus ``--names`` requests, each with a service name never
seen before (and a random host), spread evenly over ``--flood-minutes`` of
the incident day's morning. Each recording is replayed by ``tocsin
backtest`` in a child process of its own; prints the request events per
second of each (CPU time of the child), their ratio, and the child's peak
resident memory (``ru_maxrss``), with the engine's key counters after the
attack. The targets: peak RSS under 1 GB, attack rate within 3x of normal.

Two parts, as every benchmark guiding a choice: ``--part tuning`` (seed 1,
the one the limits' defaults were chosen on) and ``--part report`` (seed 2
and another flood length: report-only, the headline). Default: both.

Usage::

    .venv/bin/python benchmarks/cardinality.py [--names 100000] [--part both]
        [--history-days 1] [--scale 3] [--repeat 2]
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402

# The child: one backtest, printing events, CPU seconds, peak RSS and the engine's counters as JSON.
CHILD = """
import json, resource, sys, time
from stream.backtest import run_backtest
from stream.engine import Engine, tune_gc
tune_gc()
eng = Engine()
t0 = time.process_time()
res = run_backtest(sys.argv[1], None, sys.argv[2], eng)
cpu = time.process_time() - t0
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
keys = {k: v for k, v in eng.counts.items() if k.split(".")[0] in ("services", "requests", "hosts")}
keys["tracked_services"] = eng.aggregator.tracked()
print(json.dumps({"events": res.events, "cpu": cpu, "rss": rss, "counts": keys}))
"""


def backtest(path: Path, out: Path) -> dict:
    r = subprocess.run([sys.executable, "-c", CHILD, str(path), str(out)], cwd=ROOT, check=True,
                       capture_output=True, text=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def with_flood(src: Path, dst: Path, names: int, minutes: float, seed: int, start: float) -> None:
    """``src`` plus ``names`` requests of fresh random service names over ``minutes`` from ``start``, in time order."""
    rnd = random.Random(seed)
    step = minutes * 60 / names
    flood = (
        (start + i * step, {"ts": round(start + i * step, 3), "service": f"x-{rnd.getrandbits(64):016x}",
                            "status": 200, "latency_ms": 50.0, "host": f"h-{rnd.getrandbits(32):08x}",
                            "client_ip": f"203.0.{rnd.randrange(256)}.{rnd.randrange(256)}"})
        for i in range(names)
    )
    nxt = next(flood, None)
    with gzip.open(src, "rb") as fi, gzip.open(dst, "wb", compresslevel=1) as fo:
        for line in fi:
            ev = orjson.loads(line)
            t = ev["ts"] if isinstance(ev["ts"], float | int) else None
            if t is None:
                from detectors.timeutil import parse_ts

                t = parse_ts(ev["ts"])
            while nxt is not None and nxt[0] <= t:
                fo.write(orjson.dumps(nxt[1]) + b"\n")
                nxt = next(flood, None)
            fo.write(line if line.endswith(b"\n") else line + b"\n")
        while nxt is not None:
            fo.write(orjson.dumps(nxt[1]) + b"\n")
            nxt = next(flood, None)


def part(name: str, tmp: Path, args, seed: int, minutes: float) -> None:
    sim = tmp / f"sim-{seed}"
    subprocess.run(
        [sys.executable, "-c", "from stream.cli import main; raise SystemExit(main())", "simulate",
         "--out", str(sim), "--seed", str(seed), "--history-days", str(args.history_days), "--scale", str(args.scale)],
        cwd=ROOT, check=True, stdout=subprocess.DEVNULL,
    )
    normal = sim / "requests.jsonl.gz"
    truth = orjson.loads((sim / "truth.json").read_bytes())
    from detectors.timeutil import parse_ts

    start = min(parse_ts(t["start"]) for t in truth) - 3600  # an hour before the first incident
    attack = tmp / f"attack-{seed}.jsonl.gz"
    with_flood(normal, attack, args.names, minutes, seed, start)
    runs_n, runs_a = [], []
    for _ in range(args.repeat):  # alternated, so that a busy spell of the machine hits both
        runs_n.append(backtest(normal, tmp / f"out-n-{seed}"))
        runs_a.append(backtest(attack, tmp / f"out-a-{seed}"))
    n = min(runs_n, key=lambda r: r["cpu"])
    a = min(runs_a, key=lambda r: r["cpu"])
    rn = n["events"] / n["cpu"]
    ra = a["events"] / a["cpu"]
    print(f"[{name}] seed {seed}, {args.names:,} random service names over {minutes:g} min, best of {args.repeat}")
    print(f"  normal traffic: {n['events']:>10,} events {rn:>10,.0f} events/s   peak RSS {n['rss'] / 2**20:6.0f} MiB")
    print(f"  with the flood: {a['events']:>10,} events {ra:>10,.0f} events/s   peak RSS {a['rss'] / 2**20:6.0f} MiB")
    print(f"  slow-down normal / flood: {rn / ra:.2f}x (target <= 3)   peak RSS under 1 GiB: {a['rss'] < 2**30}")
    print(f"  keys after the flood: {a['counts']}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--names", type=int, default=100_000)
    ap.add_argument("--part", choices=("tuning", "report", "both"), default="both")
    ap.add_argument("--history-days", type=int, default=1)
    ap.add_argument("--scale", type=float, default=3)
    ap.add_argument("--repeat", type=int, default=2, help="runs of each backtest; the fastest is reported")
    args = ap.parse_args(argv)
    import detectors.features  # noqa: F401  (so compiled_modules sees it)
    from detectors import compiled_modules

    print(f"compiled (mypyc): {', '.join(compiled_modules()) or 'none, pure Python'}; "
          f"parent peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    with tempfile.TemporaryDirectory(prefix="tocsin-card-") as d:
        tmp = Path(d)
        if args.part in ("tuning", "both"):
            part("tuning", tmp, args, seed=1, minutes=60)
        if args.part in ("report", "both"):
            part("report (headline)", tmp, args, seed=2, minutes=20)
    return 0


if __name__ == "__main__":
    sys.exit(main())
