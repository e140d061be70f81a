"""Per-key detector cost: microseconds per update and bytes per key at 100,000 keys.

Measures, for each per-key model of tocsin (latency per service/host, traffic
per service, composition per service, drive state), the time of one
score + learn on a key picked at random among N keys, the size of its
serialised state (what the changelog carries) and the Python memory held per
key (tracemalloc). Also the traffic-composition features of one service at
1, 10,000 and 1,000,000 distinct clients (bounded sketches; the first-time-client
filter grows with the clients seen).

Usage::

    .venv/bin/python benchmarks/keys_cost.py [--keys 100000] [--updates 300000]
        [--chunks 1] [--only traffic,drive]

On a shared machine, ``--chunks 10`` times the updates in 10 runs of
consecutive updates and reports the fastest (the same updates, so the same
states); ``--only`` measures some models (the key draws of the others are
still made, so each model sees the same keys).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from detectors import compiled_modules  # noqa: E402
from detectors.diagnosis import CompositionState  # noqa: E402
from detectors.disk import DiskFailureDetector  # noqa: E402
from detectors.events import DiskHealthEvent, RequestEvent  # noqa: E402
from detectors.features import WindowAggregator, WindowFeatures  # noqa: E402
from detectors.latency import LatencySpikeDetector  # noqa: E402
from detectors.traffic import TrafficAnomalyDetector  # noqa: E402

T0 = 1617692400.0


MODELS = ("latency", "traffic", "composition", "drive", "sketches")
OPTS = argparse.Namespace(chunks=1, only=MODELS)


def measure(name, n_keys, n_updates, new_state, update, rng):
    if name.split()[0] not in OPTS.only:
        for _ in range(n_updates):
            rng.randrange(n_keys)
        return
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    states = [new_state(i) for i in range(n_keys)]
    for i in range(n_keys):  # one update each so the state is populated
        states[i] = update(states[i], i, 0)
    held = (tracemalloc.get_traced_memory()[0] - base) / n_keys
    tracemalloc.stop()
    keys = [rng.randrange(n_keys) for _ in range(n_updates)]
    step = -(-n_updates // OPTS.chunks)
    us = float("inf")
    for c0 in range(0, n_updates, step):
        chunk = keys[c0 : c0 + step]
        t = time.perf_counter()
        for j, k in enumerate(chunk, c0):
            states[k] = update(states[k], k, j)
        us = min(us, (time.perf_counter() - t) / len(chunk) * 1e6)
    size = len(states[0].to_bytes())
    print(
        f"{name:28s} {us:6.2f} us/update   {size:5d} B serialised   {held:7.0f} B in memory per key"
    )


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--keys", type=int, default=100_000)
    ap.add_argument("--updates", type=int, default=300_000)
    ap.add_argument("--chunks", type=int, default=1, help="report the fastest of this many runs")
    ap.add_argument(
        "--only", default=",".join(MODELS), help="comma-separated: " + ", ".join(MODELS)
    )
    args = ap.parse_args()
    OPTS.chunks = max(1, args.chunks)
    OPTS.only = tuple(args.only.split(","))
    rng = random.Random(1)
    n, u = args.keys, args.updates
    print(f"{n:,} keys, {u:,} random updates each (score + learn), one process")
    print(f"compiled (mypyc): {', '.join(compiled_modules()) or 'none, pure Python'}")

    lat = LatencySpikeDetector()

    def lat_update(st, k, j):
        p50 = 100.0 + (j % 17)
        p95 = 250.0 + (j % 31)
        vs = lat.score_one(60, p50, p95, 0.001, st)
        return lat.learn_one(60, p50, p95, 0.001, st, vs)

    measure("latency (service, host)", n, u, lambda i: lat.new_state(), lat_update, rng)

    tr = TrafficAnomalyDetector(timezone="Europe/Paris")

    def tr_update(st, k, j):
        f = WindowFeatures("s", T0 + 60 * j, T0 + 60 * j + 60, 100 + j % 23)
        v = tr.score_one(f, st)
        return tr.learn_one(f, st, v)

    measure("traffic (service)", n, u, lambda i: tr.new_state(), tr_update, rng)

    def comp_update(st, k, j):
        st.learn(
            WindowFeatures("s", T0, T0 + 60, 100, countries={"FR": 0.95}, top10_share=0.05), 0.02
        )
        return st

    measure("composition (service)", n, u, lambda i: CompositionState(), comp_update, rng)

    disk = DiskFailureDetector()

    def disk_update(st, k, j):
        ev = DiskHealthEvent(
            T0 + 600 * j,
            f"h{k % 500}",
            f"d{k}",
            {"5": float(j % 3), "197": 0.0, "9": 1000.0 + j},
            model="M1",
            io_latency_ms=5.0,
            io_errors=0,
        )
        disk.score_one(ev, st)
        return disk.learn_one(ev, st)

    measure("drive (host, disk)", n, u, lambda i: None, disk_update, rng)

    if "sketches" not in OPTS.only:
        return 0
    print("\ntraffic composition of one service (window sketches + first-seen filter):")
    for clients in (1, 10_000, 1_000_000):
        tracemalloc.start()
        agg = WindowAggregator()
        per_window = 20_000
        for i in range(clients):
            ts = T0 + (i // per_window) * 60 + (i % per_window) * 60 / per_window
            agg.add(
                RequestEvent(
                    ts,
                    "svc",
                    200,
                    100.0,
                    host="web-1",
                    client_ip=f"c{i}",
                    country="FR",
                    asn=3215,
                    endpoint=f"/e{i % 7}",
                    user_agent=f"ua{i % 300}",
                )
            )
            if agg.due():
                agg.advance()
        cur = tracemalloc.get_traced_memory()[0]
        # The client-hash caches are per worker (all services), bounded at
        # two generations of 65,536 clients: reported apart from what the service holds.
        agg._client_keys.clear()
        agg._old_keys.clear()
        svc = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        seen = agg._services["svc"].seen.nbytes()
        print(
            f"  {clients:>9,} distinct clients: {svc / 1024:7.1f} KiB held for the service, "
            f"{seen / 1024:6.1f} KiB of it the first-time-client filter "
            f"(+ {(cur - svc) / 1024:.0f} KiB of the worker's bounded client-hash cache)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
