"""Processing delay from event to anomaly, live, at a paced rate.

    .venv/bin/python benchmarks/delay.py --rate EVENTS_PER_S [--bootstrap HOST:PORT] [--duration 180]

Without ``--bootstrap`` the embedded tansu broker is started (and stopped at
the end); with it, that broker is used. The script says which.

Processes (all on 127.0.0.1):

* main: one tocsin worker (TocsinApp in-process, fresh topics and group);
* producer (child process, aiokafka record batches): request events of the simulator's incident day,
  re-stamped ``ts = time.time()`` when sent (live mode), paced at ``--rate``
  events/s in total. After the warm-up it runs a surge: for ``--surge-length``
  seconds one service (``--surge-service``, default ent-idf) gets
  ``--surge-factor`` times its usual share of the traffic, taken from the
  simulator's credential-stuffing flood on it, while the others get less:
  the total rate stays at ``--rate`` (meant to be 80% of the maximum that
  ``benchmarks/e2e.py`` measured), so the worker is never asked for more
  than that;
* anomaly reader (child process): an aiokafka consumer on the anomalies
  topic that stamps each record with ``time.time()`` when it is received.

Delay of an anomaly = (time received) - (end of its window). The detectors
work on tumbling event-time windows that close when the event time of their
partition passes ``window end + lateness``: with live timestamps an anomaly
can only come after its window has ended, so this is the delay *beyond the
window end*; it includes the lateness allowance, which is also printed, with
the delay beyond it (what the pipeline itself adds).

The window is shortened (default 10 s instead of the 1 min of the default
configuration) and the detectors' warm-ups are shortened to a few windows,
so that a bounded run (default 3 minutes) has models that can flag something.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import logging
import multiprocessing as mp
import random
import statistics
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import orjson  # noqa: E402

PARTITIONS = 4


def _quiet() -> None:
    logging.basicConfig(level=logging.WARNING)
    for noisy in ("faust", "mode", "aiokafka", "kafka"):
        logging.getLogger(noisy).setLevel(logging.CRITICAL)


# ----------------------------------------------------------------- producer --

def _templates(service: str, limit: int = 120_000) -> tuple[list[tuple[bytes, bytes]], list[tuple[bytes, bytes]], float]:
    """(normal pool, flood pool on ``service``, share of ``service`` in the normal pool).

    Each template is (key, JSON object without ``ts`` and without its opening brace).
    """
    from stream.tools.simulator import REQUESTS, Scenario, generate

    sc = Scenario(history_days=0)
    d = sc.incident_day
    zone = ZoneInfo(sc.timezone)

    def at(h: int, m: int) -> float:
        return datetime(d.year, d.month, d.day, h, m, tzinfo=zone).timestamp()

    def body(ev: dict) -> bytes:
        ev = {k: v for k, v in ev.items() if k != "ts"}
        return orjson.dumps(ev)[1:]  # b'"service":...}'

    normal = [(ev["service"].encode(), body(ev)) for topic, ev in generate(sc, at(9, 40), at(10, 0))
              if topic == REQUESTS][:limit]
    flood = [(ev["service"].encode(), body(ev)) for topic, ev in generate(sc, at(10, 10), at(10, 30))
             if topic == REQUESTS and ev["service"] == service][:limit]
    if not normal or not flood:
        raise SystemExit(f"no simulated traffic for {service!r}")
    share = sum(1 for k, _ in normal if k == service.encode()) / len(normal)
    return normal, flood, share


def produce(bootstrap: str, topic: str, rate: float, duration: float, surge: tuple[float, float], service: str,
            factor: float, sent: mp.Value, ready: mp.Event, out: mp.Queue) -> None:
    """Send paced events with aiokafka, in one batch per partition every few milliseconds.

    kafka-python's ``send`` tops out at about 9-10k events/s here (a lock
    and a future per record); building the record batches directly
    (:func:`e2e.send_batched`) sent 232k events/s from one process.
    """
    _quiet()
    asyncio.run(_produce(bootstrap, topic, rate, duration, surge, service, factor, sent, ready, out))


async def _produce(bootstrap: str, topic: str, rate: float, duration: float, surge: tuple[float, float],
                   service: str, factor: float, sent: mp.Value, ready: mp.Event, out: mp.Queue) -> None:
    from aiokafka import AIOKafkaProducer
    from e2e import send_batched

    normal, flood, share = _templates(service)
    others = [t for t in normal if t[0] != service.encode()]
    p_flood = min(0.9, factor * share)
    part: dict[bytes, int] = {}
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=2, max_batch_size=256 * 1024)
    await producer.start()
    ready.set()
    rng = random.Random(7)
    n = i = j = 0
    t0 = time.time()
    m0 = time.monotonic()
    s0, s1 = surge
    pending: list[asyncio.Future] = []
    try:
        while True:
            el = time.monotonic() - m0
            if el >= duration:
                break
            due = max(0, min(int(rate * el) - n, int(rate)))
            in_surge = s0 <= el < s1
            now = time.time()
            msgs = []
            for _ in range(due):
                if in_surge and rng.random() < p_flood:
                    key, body = flood[j % len(flood)]
                    j += 1
                elif in_surge:
                    key, body = others[i % len(others)]
                    i += 1
                else:
                    key, body = normal[i % len(normal)]
                    i += 1
                msgs.append((key, b'{"ts":%.6f,%s' % (now, body)))
            pending += await send_batched(producer, topic, msgs, part)
            n += due
            sent.value = n
            if len(pending) > 200:
                await asyncio.gather(*pending)
                pending.clear()
            await asyncio.sleep(0.003)
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    out.put({"sent": n, "seconds": time.monotonic() - m0, "t0": t0, "share": share, "p_flood": p_flood})


# ----------------------------------------------------------- anomaly reader --

def read_anomalies(bootstrap: str, topic: str, stop: mp.Event, ready: mp.Event, out: mp.Queue) -> None:
    _quiet()

    async def run() -> list[dict]:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        c = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                             auto_offset_reset="earliest", fetch_max_wait_ms=50)
        await c.start()
        got: list[dict] = []
        try:
            tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
            c.assign(tps)
            await c.seek_to_beginning(*tps)
            ready.set()
            while not stop.is_set():
                batches = await c.getmany(timeout_ms=100)
                now = time.time()
                for records in batches.values():
                    for r in records:
                        a = orjson.loads(r.value)
                        end = datetime.fromisoformat(a["ts"]).timestamp()
                        got.append({"recv": now, "end": end, "detector": a["detector"], "signal": a["signal"],
                                    "entity": a["entity"], "severity": a.get("severity")})
        finally:
            await c.stop()
        return got

    out.put(asyncio.run(run()))


# ------------------------------------------------------------------- worker --

async def run_worker(args: argparse.Namespace, bootstrap: str, embedded: bool) -> dict:
    from alerts.notify.console import ConsoleReceiver
    from detectors.config import DetectorsConfig, LatencyConfig, TrafficConfig
    from stream.app import TocsinApp
    from stream.broker import create_topics
    from stream.settings import Config, KafkaConfig, TopicsConfig

    names = f"bench-delay-{uuid.uuid4().hex[:8]}"
    topics = TopicsConfig(requests=f"{names}-requests", disk_health=f"{names}-disk",
                          anomalies=f"{names}-anomalies", alerts=f"{names}-alerts",
                          dead_letter=f"{names}-dead-letter", silences=f"{names}-silences")
    det = DetectorsConfig(
        window=args.window, lateness=args.lateness,
        # Short warm-ups: the seasonal profile is never trusted in 3 minutes, the
        # short-memory fallback is after a few windows.
        traffic=TrafficConfig(warmup=10**6, fallback_warmup=args.warmup_windows),
        latency=LatencyConfig(warmup=args.warmup_windows),
    )
    cfg = Config(topics=topics, kafka=KafkaConfig(partitions=PARTITIONS), detectors=det)
    create_topics(bootstrap, [topics.requests, topics.disk_health, topics.anomalies, topics.alerts,
                              topics.dead_letter, topics.silences], partitions=PARTITIONS)
    alerts_out = io.StringIO()
    tapp = TocsinApp(cfg, bootstrap, embedded=embedded, receivers={"console": ConsoleReceiver(alerts_out, color=False)},
                     app_id=f"{names}-app")
    ctx = mp.get_context("spawn")
    sent = ctx.Value("q", 0)
    p_ready, r_ready, r_stop = ctx.Event(), ctx.Event(), ctx.Event()
    p_out, r_out = ctx.Queue(), ctx.Queue()
    surge = (args.surge_start, args.surge_start + args.surge_length)
    reader = ctx.Process(target=read_anomalies, args=(bootstrap, topics.anomalies, r_stop, r_ready, r_out), daemon=True)
    producer = ctx.Process(target=produce, args=(bootstrap, topics.requests, args.rate, args.duration, surge,
                                                 args.surge_service, args.surge_factor, sent, p_ready, p_out),
                           daemon=True)
    reader.start()
    producer_started = False
    backlog: list[int] = []
    result: dict = {"names": names}
    hard_stop = time.monotonic() + args.duration + 90
    await tapp.app.start()
    try:
        # Wait for the worker to own the partitions of the requests topic (group join excluded).
        while time.monotonic() < hard_stop - args.duration:
            if tapp.reader is not None and tapp.reader.owned and r_ready.is_set():
                break
            await asyncio.sleep(0.1)
        else:
            raise SystemExit("the worker did not get its partitions in time")
        await asyncio.sleep(1.0)
        producer.start()
        producer_started = True
        while producer.is_alive() and time.monotonic() < hard_stop:
            await asyncio.sleep(0.5)
            done = tapp.counts["processed.requests"] + tapp.counts["dead_letter.requests"]
            backlog.append(sent.value - done)
        # Let the last complete windows close and their anomalies arrive.
        await asyncio.sleep(min(args.window + args.lateness + 3, max(0.0, hard_stop - time.monotonic())))
        result["processed"] = tapp.counts["processed.requests"]
        result["counts"] = {k: v for k, v in tapp.counts.items() if k.startswith(("anomalies.", "alerts."))}
        result["alert_lines"] = alerts_out.getvalue().count("\n")
    finally:
        r_stop.set()
        try:
            await asyncio.wait_for(tapp.app.stop(), 60)
        except (TimeoutError, Exception) as exc:  # noqa: BLE001
            print(f"  (worker stop: {exc!r})", file=sys.stderr)
        # Read the results before joining: a child that put into a queue exits
        # only once the data is taken.
        try:
            result["producer"] = p_out.get(timeout=30) if producer_started else {}
            result["anomalies"] = r_out.get(timeout=30)
        finally:
            for proc in (producer, reader):
                if proc.pid is not None:
                    proc.join(5)
                    if proc.is_alive():
                        proc.terminate()
    result["backlog"] = backlog
    result["surge"] = surge
    return result


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    k = (len(xs) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bootstrap", help="HOST:PORT of a running broker (default: start the embedded tansu broker)")
    ap.add_argument("--rate", type=float, required=True,
                    help="total events/s to produce (e.g. 80%% of what benchmarks/e2e.py measured for the worker)")
    ap.add_argument("--duration", type=float, default=180.0, help="seconds of production (the whole run is bounded "
                    "by this + 90 s)")
    ap.add_argument("--window", type=float, default=10.0, help="detector window, seconds (config default: 60)")
    ap.add_argument("--lateness", type=float, default=2.0, help="allowed lateness, seconds (config default: 5)")
    ap.add_argument("--warmup-windows", type=int, default=6)
    ap.add_argument("--surge-start", type=float, default=100.0, help="seconds after production starts")
    ap.add_argument("--surge-length", type=float, default=40.0)
    ap.add_argument("--surge-service", default="ent-idf")
    ap.add_argument("--surge-factor", type=float, default=6.0)
    args = ap.parse_args(argv)
    from stream.engine import tune_gc

    tune_gc()  # the worker process runs as the tocsin command does
    if args.surge_start + args.surge_length > args.duration:
        ap.error("the surge must end before --duration")
    _quiet()

    from stream.broker import given_or_embedded

    with given_or_embedded(args.bootstrap) as (bootstrap, embedded):
        print(f"broker: {bootstrap} (given with --bootstrap; e.g. Apache Kafka from scripts/kafka-local)"
              if not embedded else f"broker: embedded tansu at {bootstrap} (started by this script)")
        res = asyncio.run(run_worker(args, bootstrap, embedded))

    prod = res["producer"]
    an = res["anomalies"]
    print(f"window {args.window:g} s, lateness {args.lateness:g} s, warm-up {args.warmup_windows} windows; "
          f"target rate {args.rate:,.0f} ev/s")
    if prod:
        print(f"produced {prod['sent']} events in {prod['seconds']:.1f} s = {prod['sent'] / prod['seconds']:,.0f} ev/s; "
              f"surge on {args.surge_service} at +{res['surge'][0]:g}..+{res['surge'][1]:g} s "
              f"(its share {prod['share']:.1%} -> {prod['p_flood']:.1%} of the traffic)")
    print(f"worker processed {res.get('processed')} events; backlog (sent - processed, sampled every 0.5 s): "
          f"max {max(res['backlog'], default=0)}, median {statistics.median(res['backlog']) if res['backlog'] else 0:g}")
    print(f"worker counts: {res.get('counts')}")
    if not an:
        print("no anomaly received")
        return 1
    d = [a["recv"] - a["end"] for a in an]
    print(f"anomalies received: {len(an)} (by detector: "
          f"{dict(sorted(__import__('collections').Counter(a['detector'] for a in an).items()))})")
    print(f"delay (received - window end), all anomalies: p50 {pct(d, .5):.3f} s, p99 {pct(d, .99):.3f} s, "
          f"min {min(d):.3f} s, max {max(d):.3f} s")
    beyond = [x - args.lateness for x in d]
    print(f"  of which beyond window end + lateness ({args.lateness:g} s): p50 {pct(beyond, .5):.3f} s, "
          f"p99 {pct(beyond, .99):.3f} s")
    if prod:
        s0, s1 = prod["t0"] + res["surge"][0], prod["t0"] + res["surge"][1]
        ds = [a["recv"] - a["end"] for a in an if s0 <= a["end"] - args.window and a["end"] <= s1 + args.window]
        if ds:
            print(f"  anomalies of the surge windows: {len(ds)}, p50 {pct(ds, .5):.3f} s, p99 {pct(ds, .99):.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
