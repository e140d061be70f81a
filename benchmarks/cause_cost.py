"""What the cause features cost: ``tocsin backtest`` events/s with the client mix and cause model off and on.

Both engines replay the same recording in the same process, alternately,
best of ``--repeat`` each (CPU seconds of this process), so the ratio is
measured in one run on one machine. Also prints the bound on the client
mix's memory per service, and what one service's mix holds after 10,000 and
1,000,000 distinct clients.

Usage::

    .venv/bin/python benchmarks/cause_cost.py [--requests FILE] [--repeat 3] [--scale 3] [--history-days 2]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from detectors.cause_features import ClientMix  # noqa: E402
from detectors.config import DetectorsConfig  # noqa: E402
from detectors.events import RequestBatch  # noqa: E402
from stream.backtest import run_backtest  # noqa: E402
from stream.engine import Engine, tune_gc  # noqa: E402


def replay(path: str, out: str, cfg: DetectorsConfig) -> float:
    eng = Engine(cfg)
    t0 = time.process_time()
    res = run_backtest(path, None, out, eng)
    return res.events / (time.process_time() - t0)


def mix_memory(n_clients: int) -> int:
    """Bytes one service's mix holds (tracemalloc) after a window of ``n_clients`` distinct clients."""
    mix = ClientMix(window=60.0, sample_mod=8)
    rows = [{"service": "s", "client_ip": f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", "endpoint": "/p",
             "status": 200, "user_agent": "Mozilla"} for i in range(n_clients)]
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    for i in range(0, n_clients, 10_000):
        chunk = rows[i:i + 10_000]
        mix.add_batch(RequestBatch([30.0] * len(chunk), chunk))
    mix.close("s", 0.0)
    held = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    return held


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--scale", type=float, default=3)
    ap.add_argument("--history-days", type=int, default=2)
    args = ap.parse_args()
    tune_gc()
    off = DetectorsConfig.model_validate({"diagnosis": {"mix_sample": 0, "use_model": False}})
    on = DetectorsConfig()
    with tempfile.TemporaryDirectory(prefix="tocsin-cause-") as tmp:
        path = args.requests
        if not path:
            subprocess.run([sys.executable, "-c", "from stream.cli import main; raise SystemExit(main())",
                            "simulate", "--out", f"{tmp}/sim", "--history-days", str(args.history_days),
                            "--scale", str(args.scale)], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
            path = f"{tmp}/sim/requests.jsonl.gz"
        best_off = best_on = 0.0
        for _ in range(args.repeat):
            best_off = max(best_off, replay(path, f"{tmp}/off", off))
            best_on = max(best_on, replay(path, f"{tmp}/on", on))
    print(f"file: {args.requests or 'simulated'}")
    print(f"backtest, cause features off: {best_off:12,.0f} events/s")
    print(f"backtest, cause features on:  {best_on:12,.0f} events/s")
    print(f"ratio on / off:               {best_on / best_off:12.3f}")
    print(f"client mix bound per service: {ClientMix(sample_mod=8).bytes_per_service():,} bytes")
    for n in (10_000, 1_000_000):
        print(f"client mix held after a window of {n:>9,} clients: {mix_memory(n):,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
