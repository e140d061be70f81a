"""End-to-end throughput: one tocsin worker against a bare aiokafka consumer, same broker, same messages.

    .venv/bin/python benchmarks/e2e.py [--bootstrap HOST:PORT] [-n 200000] [--rounds 1]

Without ``--bootstrap`` the embedded tansu broker is started (and stopped at
the end); with it, that broker is used (e.g. Apache Kafka from
``scripts/kafka-local start``). The script says which.

1. Preloads N request events of the simulator's incident day (2021-04-06,
   from 07:30 local, so the morning surge is in) into a fresh topic
   (unique name, 4 partitions, key = service, as ``tocsin simulate``).
2. (a) bare: an aiokafka consumer, partitions assigned by hand (no group),
   from the beginning; it only reads and ``orjson.loads`` each value.
   (b) worker: one TocsinApp in-process (fresh app id = fresh group),
   consuming from the start, until ``counts["processed.requests"]`` (plus
   dead letters) reaches N.
   Both are timed from the first event seen, so group join, topic creation and
   table recovery are excluded. (b) is sampled every 20 ms: the events already
   processed at the first sample are left out of the count as well as the time.
3. Prints events/s of both and the ratio (b)/(a) of this run (target: >= 50%),
   and the same per CPU-second of this process (``time.process_time``, all
   its threads): on a shared 2-core machine the wall-time rates depend on
   the cores each run gets, the CPU rates on what each costs.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import logging
import statistics
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import orjson  # noqa: E402

from stream.broker import create_topics, default_partition, given_or_embedded  # noqa: E402
from stream.engine import tune_gc  # noqa: E402
from stream.tools.simulator import REQUESTS, Scenario, generate  # noqa: E402

PARTITIONS = 4


def simulated_requests(n: int, start_local: str = "07:30") -> list[tuple[bytes, bytes]]:
    """The first ``n`` request events of the incident day from ``start_local``, as (key, value) bytes."""
    sc = Scenario(history_days=0)
    h, m = (int(x) for x in start_local.split(":"))
    d = sc.incident_day
    t0 = datetime(d.year, d.month, d.day, h, m, tzinfo=ZoneInfo(sc.timezone)).timestamp()
    return first_requests(sc, t0, n, f"the simulated day after {start_local}")


def first_requests(sc: Scenario, start: float, n: int, what: str) -> list[tuple[bytes, bytes]]:
    """The first ``n`` request events the simulator makes of ``sc`` from ``start``, as (service, JSON) bytes."""
    out: list[tuple[bytes, bytes]] = []
    dumps = orjson.dumps
    for topic, ev in generate(sc, start=start):
        if topic != REQUESTS:
            continue
        out.append((ev["service"].encode(), dumps(ev)))
        if len(out) >= n:
            break
    if len(out) < n:
        raise SystemExit(f"{what} has only {len(out)} request events")
    return out


async def send_batched(producer, topic: str, msgs: list[tuple[bytes, bytes]], part: dict[bytes, int]) -> list:
    """Send (key, value) pairs as record batches, one per partition at a time; the delivery futures.

    The partition of a key is the default partitioner's (murmur2, as
    kafka-python, aiokafka and Faust), cached in ``part``. Building the
    batches directly (``create_batch`` / ``send_batch``) costs a few µs an
    event; kafka-python's ``send`` tops out at about 9-10k events/s here.
    """
    n_parts = len(await producer.partitions_for(topic))
    batches: dict[int, object] = {}
    futures = []
    for key, value in msgs:
        p = part.get(key)
        if p is None:
            p = part[key] = default_partition(key, n_parts)
        batch = batches.get(p)
        if batch is None:
            batch = batches[p] = producer.create_batch()
        if batch.append(key=key, value=value, timestamp=None) is None:  # full: send it, start another
            futures.append(await producer.send_batch(batch, topic, partition=p))
            batch = batches[p] = producer.create_batch()
            if batch.append(key=key, value=value, timestamp=None) is None:
                raise ValueError(f"a record of {len(value)} bytes does not fit in an empty batch")
    for p, batch in batches.items():
        futures.append(await producer.send_batch(batch, topic, partition=p))
    return futures


def preload(bootstrap: str, topic: str, msgs: list[tuple[bytes, bytes]]) -> float:
    """Write ``msgs`` to ``topic`` (acks=1); the seconds it took."""
    from aiokafka import AIOKafkaProducer

    async def run() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks=1, max_batch_size=256 * 1024,
                                    max_request_size=4 * 1024 * 1024)
        await producer.start()
        try:
            part: dict[bytes, int] = {}
            for i in range(0, len(msgs), 20_000):
                await asyncio.gather(*await send_batched(producer, topic, msgs[i:i + 20_000], part))
        finally:
            await producer.stop()

    t0 = time.perf_counter()
    asyncio.run(run())
    return time.perf_counter() - t0


async def bare_consumer(bootstrap: str, topic: str, n: int, timeout: float) -> dict:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                         auto_offset_reset="earliest")
    await c.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        c.assign(tps)
        await c.seek_to_beginning(*tps)
        loads = orjson.loads
        got = 0
        t_first = None
        deadline = time.monotonic() + timeout
        while got < n and time.monotonic() < deadline:
            batches = await c.getmany(timeout_ms=500)
            for _tp, records in batches.items():
                if t_first is None and records:
                    t_first = time.perf_counter()
                    cpu_first = time.process_time()
                for r in records:
                    loads(r.value)
                got += len(records)
        t_end = time.perf_counter()
        cpu_end = time.process_time()
    finally:
        await c.stop()
    if got < n or t_first is None:
        raise SystemExit(f"bare consumer: only {got}/{n} events within {timeout:.0f} s")
    secs = t_end - t_first
    return {"events": got, "seconds": secs, "rate": got / secs, "cpu_rate": got / max(1e-9, cpu_end - cpu_first)}


async def worker(bootstrap: str, names: str, n: int, embedded: bool, timeout: float) -> dict:
    from alerts.notify.console import ConsoleReceiver
    from stream.app import TocsinApp
    from stream.settings import Config, KafkaConfig, TopicsConfig

    topics = TopicsConfig(requests=f"{names}-requests", disk_health=f"{names}-disk",
                          anomalies=f"{names}-anomalies", alerts=f"{names}-alerts",
                          dead_letter=f"{names}-dead-letter", silences=f"{names}-silences")
    cfg = Config(topics=topics, kafka=KafkaConfig(partitions=PARTITIONS))
    tapp = TocsinApp(cfg, bootstrap, embedded=embedded, receivers={"console": ConsoleReceiver(io.StringIO(), color=False)},
                     app_id=f"{names}-app-{uuid.uuid4().hex[:6]}")
    counts = tapp.counts

    def done() -> int:
        return counts["processed.requests"] + counts["dead_letter.requests"]

    t_start = time.perf_counter()
    await tapp.app.start()
    try:
        deadline = time.monotonic() + timeout
        t_first = c_first = None
        while time.monotonic() < deadline:
            c = done()
            now = time.perf_counter()
            if t_first is None and c > 0:
                t_first, c_first, cpu_first = now, c, time.process_time()
            if c >= n:
                break
            await asyncio.sleep(0.02)
        t_end = time.perf_counter()
        cpu_end = time.process_time()
        final = done()
        crashed = tapp.crash_reason()
    finally:
        try:
            await asyncio.wait_for(tapp.app.stop(), 60)
        except (TimeoutError, Exception) as exc:  # noqa: BLE001 - report, do not hide the figures
            print(f"  (worker stop: {exc!r})", file=sys.stderr)
    if crashed:
        raise SystemExit(f"worker crashed: {crashed!r}")
    if final < n or t_first is None:
        raise SystemExit(f"worker: only {final}/{n} events within {timeout:.0f} s; counts={dict(counts)}")
    secs = t_end - t_first
    return {"events": final - c_first, "seconds": secs, "rate": (final - c_first) / secs,
            "cpu_rate": (final - c_first) / max(1e-9, cpu_end - cpu_first),
            "startup": t_first - t_start, "first_sample": c_first,
            "anomalies": sum(v for k, v in counts.items() if k.startswith("anomalies.")),
            "alerts": sum(v for k, v in counts.items() if k.startswith("alerts.") and k != "alerts.notified"),
            "dead_letter": counts["dead_letter.requests"]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bootstrap", help="HOST:PORT of a running broker (default: start the embedded tansu broker)")
    ap.add_argument("-n", "--events", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=1, help="measure (a) then (b) this many times, same topic")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds allowed per measurement")
    args = ap.parse_args(argv)
    tune_gc()  # this process runs as the tocsin command does (both sides of each ratio)
    logging.basicConfig(level=logging.WARNING)
    for noisy in ("faust", "mode", "aiokafka", "kafka"):
        logging.getLogger(noisy).setLevel(logging.CRITICAL)

    with given_or_embedded(args.bootstrap) as (bootstrap, embedded):
        print(f"broker: {bootstrap} (given with --bootstrap; e.g. Apache Kafka from scripts/kafka-local)"
              if not embedded else f"broker: embedded tansu at {bootstrap} (started by this script)")
        names = f"bench-e2e-{uuid.uuid4().hex[:8]}"
        topic = f"{names}-requests"
        t = time.perf_counter()
        msgs = simulated_requests(args.events)
        avg = statistics.fmean(len(v) for _, v in msgs)
        print(f"generated {len(msgs)} request events (incident day from 07:30 local, avg {avg:.0f} B) "
              f"in {time.perf_counter() - t:.1f} s")
        create_topics(bootstrap, [topic], partitions=PARTITIONS)
        secs = preload(bootstrap, topic, msgs)
        print(f"preloaded into {topic} ({PARTITIONS} partitions) in {secs:.1f} s ({len(msgs) / secs:,.0f} ev/s)")
        del msgs
        ratios = []
        cpu_ratios = []
        for r in range(1, args.rounds + 1):
            a = asyncio.run(bare_consumer(bootstrap, topic, args.events, args.timeout))
            print(f"[round {r}] (a) bare aiokafka + orjson.loads: {a['events']} events in {a['seconds']:.2f} s "
                  f"= {a['rate']:,.0f} events/s")
            b = asyncio.run(worker(bootstrap, names, args.events, embedded, args.timeout))
            print(f"[round {r}] (b) tocsin worker (TocsinApp):    {b['events']} events in {b['seconds']:.2f} s "
                  f"= {b['rate']:,.0f} events/s  (start->first event {b['startup']:.1f} s, excluded; "
                  f"{b['first_sample']} events at first sample excluded; anomalies {b['anomalies']}, "
                  f"alert changes {b['alerts']}, dead letters {b['dead_letter']})")
            ratio = b["rate"] / a["rate"]
            ratios.append(ratio)
            print(f"[round {r}] ratio (b)/(a) = {ratio:.1%}  (target >= 50%: {'met' if ratio >= 0.5 else 'NOT met'})")
            cpu_ratio = b["cpu_rate"] / a["cpu_rate"]
            cpu_ratios.append(cpu_ratio)
            print(f"[round {r}] per CPU-second of this process: (a) {a['cpu_rate']:,.0f}, (b) {b['cpu_rate']:,.0f} "
                  f"events; ratio {cpu_ratio:.1%} (what each costs, whatever the cores the run got)")
        if len(ratios) > 1:
            print(f"ratio over {len(ratios)} rounds: median {statistics.median(ratios):.1%}, "
                  f"min {min(ratios):.1%}, max {max(ratios):.1%}; per CPU-second: median "
                  f"{statistics.median(cpu_ratios):.1%}, min {min(cpu_ratios):.1%}, max {max(cpu_ratios):.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
