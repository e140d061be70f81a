"""Backtest throughput: request events per second, against a decode-only floor.

Runs ``tocsin backtest`` (the engine, the windowed features, the decoders,
the file reading) on a recording of request events, and a loop that only
reads the same file and decodes each line with orjson. Prints both rates and
their ratio (the backtest's share of the decode-only speed). The targets are
>= 300,000 request events/s and a ratio >= 0.30.

Usage::

    .venv/bin/python benchmarks/backtest_speed.py [--requests FILE | --world SEED [--first N]]
        [--repeat 3] [--history-days 2] [--scale 3] [--baseline DIR]

``--baseline DIR``: also replay the file with another build of tocsin (a
folder holding its ``detectors``, ``alerts`` and ``stream`` packages, e.g. an
older commit's wheel unpacked), alternating with this one in child
processes, and print both rates and their ratio: a before/after in one run.

Without ``--requests`` it simulates a recording into a temporary folder
first: ``tocsin simulate`` (the default), or with ``--world SEED`` the first
``--first`` request events (default 2,000,000) of
``stream.tools.simulator.world(SEED)``, a varied world (many clients, IPv6,
many user agents and endpoints). Best of ``--repeat`` runs each, in CPU seconds of
this process (``time.process_time``: one core, and steady on a busy machine).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402

from detectors import compiled_modules  # noqa: E402
from stream.backtest import run_backtest  # noqa: E402
from stream.engine import Engine, tune_gc  # noqa: E402
from stream.files import iter_lines  # noqa: E402


def write_world(seed: int, first: int, path: str) -> int:
    """The first ``first`` request events of ``world(seed)`` (default history and scale) as gzipped JSONL."""
    import gzip

    from stream.tools import simulator

    n = 0
    buf: list[bytes] = []
    with gzip.open(path, "wb", compresslevel=1) as fh:
        for topic, ev in simulator.generate(simulator.world(seed)):
            if topic != simulator.REQUESTS:
                continue
            buf.append(orjson.dumps(ev))
            n += 1
            if len(buf) >= 20_000 or n >= first:
                fh.write(b"\n".join(buf) + b"\n")
                buf.clear()
            if n >= first:
                break
        if buf:
            fh.write(b"\n".join(buf) + b"\n")
    return n


def decode_only(path: str) -> tuple[int, float]:
    """Read + orjson-decode every line; the plain reading loop, no tocsin code but iter_lines' job.

    A gzipped file is inflated by ISA-L (``isal.igzip``), as ``tocsin backtest`` does.
    """
    from isal import igzip

    t0 = time.process_time()
    n = 0
    with open(path, "rb") as fh:
        gz = fh.read(2) == b"\x1f\x8b"
    with igzip.open(path, "rb") if gz else open(path, "rb") as fh:
        loads = orjson.loads
        for line in fh:
            if line.strip():
                loads(line)
                n += 1
    return n, time.process_time() - t0


def backtest(path: str, out: str) -> tuple[int, float]:
    t0 = time.process_time()
    res = run_backtest(path, None, out, Engine())
    return res.events, time.process_time() - t0


# One backtest in a child process whose imports come from the folder it runs in.
_CHILD = """
import json, sys, time
sys.path.insert(0, sys.argv[3])
from stream.backtest import run_backtest
from stream.engine import Engine, tune_gc
from detectors import compiled_modules
import detectors.features
tune_gc()
t0 = time.process_time()
engine = Engine()  # (trains the cause model once per process, where there is one: timed apart)
t1 = time.process_time()
res = run_backtest(sys.argv[1], None, sys.argv[2], engine)
print(json.dumps({"events": res.events, "cpu": time.process_time() - t1, "start": t1 - t0,
                  "compiled": len(compiled_modules())}))
"""


def backtest_in(code: str, path: str, out: str) -> tuple[int, float, int]:
    """(events, CPU seconds, compiled modules) of a backtest run with the tocsin found in folder ``code``.

    The CPU seconds are the replay's; building the engine (which trains the cause model
    once per process, where there is one) is printed apart, on stderr.
    """
    import json
    import os

    env = {**os.environ, "PYTHONPATH": code}
    r = subprocess.run([sys.executable, "-c", _CHILD, path, out, code], cwd=code, env=env, check=True,
                       capture_output=True, text=True)
    d = json.loads(r.stdout.strip().splitlines()[-1])
    print(f"  ({code}: engine built in {d.get('start', 0.0):.1f} CPU s before the replay)", file=sys.stderr)
    return d["events"], d["cpu"], d["compiled"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", help="a requests .jsonl or .jsonl.gz (default: simulate one)")
    ap.add_argument("--world", type=int, help="simulate the first --first requests of simulator.world(SEED)")
    ap.add_argument("--first", type=int, default=2_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--history-days", type=int, default=2)
    ap.add_argument("--scale", type=float, default=3)
    ap.add_argument("--baseline", help="folder of another tocsin build to compare with (before/after)")
    args = ap.parse_args(argv)
    tune_gc()  # this process runs as the tocsin command does (both sides of each ratio)
    with tempfile.TemporaryDirectory(prefix="tocsin-speed-") as tmp:
        path = args.requests
        if not path and args.world is not None:
            path = str(Path(tmp) / f"world{args.world}.jsonl.gz")
            write_world(args.world, args.first, path)
        if not path:
            sim = Path(tmp) / "sim"
            subprocess.run(
                [sys.executable, "-c", "from stream.cli import main; raise SystemExit(main())",
                 "simulate", "--out", str(sim),
                 "--history-days", str(args.history_days), "--scale", str(args.scale)],
                cwd=ROOT, check=True, stdout=subprocess.DEVNULL,
            )
            path = str(sim / "requests.jsonl.gz")
        sum(1 for _ in iter_lines(path))  # warm the page cache
        if args.baseline:
            best = {"baseline": 0.0, "this": 0.0}
            compiled = {}
            for _ in range(args.repeat):
                for name, code in (("baseline", args.baseline), ("this", str(ROOT))):
                    n, cpu, compiled[name] = backtest_in(code, path, str(Path(tmp) / f"out-{name}"))
                    best[name] = max(best[name], n / cpu)
            what = args.requests or (f"world({args.world}), first {args.first:,}" if args.world is not None else "simulated")
            print(f"file: {what} ({n:,} request events), best of {args.repeat}, child processes")
            print(f"compiled modules: baseline {compiled['baseline']}, this {compiled['this']}")
            print(f"baseline ({args.baseline}): {best['baseline']:12,.0f} events/s")
            print(f"this ({ROOT}):  {best['this']:12,.0f} events/s")
            print(f"ratio this / baseline: {best['this'] / best['baseline']:.3f}")
            return 0
        best_d = best_b = 0.0
        n_d = n_b = 0
        for _ in range(args.repeat):
            n_d, s = decode_only(path)
            best_d = max(best_d, n_d / s)
            n_b, s = backtest(path, str(Path(tmp) / "out"))
            best_b = max(best_b, n_b / s)
    what = args.requests or (f"world({args.world}), first {args.first:,}" if args.world is not None else "simulated")
    print(f"file: {what} ({n_b:,} request events)")
    print(f"compiled (mypyc): {', '.join(compiled_modules()) or 'none, pure Python'}")
    print(f"decode only (read + orjson.loads): {best_d:12,.0f} events/s")
    print(f"backtest (tocsin engine):          {best_b:12,.0f} events/s")
    print(f"ratio backtest / decode only:      {best_b / best_d:12.2f}")
    if n_d != n_b:
        print(f"note: {n_d - n_b} lines were not valid request events")
    return 0


if __name__ == "__main__":
    sys.exit(main())
