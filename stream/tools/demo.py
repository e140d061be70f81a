"""``tocsin demo``: the whole system on the embedded broker, on a simulated incident day.

1. Starts the embedded tansu broker.
2. Simulates the days before 6 April 2021 and teaches them to the engine
   (what a worker that has run for a few days knows), as fast as the CPU
   allows, through the same decoders and detectors.
3. Starts the Faust worker (agents, tables, notification pipeline with the
   console receiver) and streams the incident day's morning into Kafka.
4. Prints each alert as the worker fires it, with its cause and evidence,
   then a summary, and stops everything it started.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from alerts.model import Alert
from alerts.notify.base import Memory, Receiver
from alerts.notify.console import ConsoleReceiver
from detectors.configfile import load_model_text
from detectors.events import decode_disk, decode_request

from ..app import TocsinApp
from ..engine import Engine
from ..settings import Config

__all__ = ["run_demo"]

_CAUSES = ("capacity_saturation", "suspected_attack", "disk_failure")


class _Recording(Receiver):
    """Wraps the console receiver and remembers what it printed."""

    def __init__(self, inner: Receiver) -> None:
        self.inner = inner
        self.name = inner.name
        self.seen: list[Alert] = []

    async def notify(self, alert: Alert, memory: Memory | None) -> Memory | None:
        self.seen.append(alert)
        return await self.inner.notify(alert, memory)


def _say(msg: str) -> None:
    print(f"tocsin demo: {msg}", flush=True)


def _check_alive(tapp: TocsinApp) -> None:
    reason = tapp.crash_reason()
    if reason is not None:
        raise RuntimeError(f"the worker crashed: {reason!r}") from reason


async def _wait_while_moving(tapp: TocsinApp, what: str, done: Callable[[], bool],
                             progress: Callable[[], object], stall: float = 60.0) -> bool:
    """Wait until ``done()``, as long as ``progress()`` keeps changing: False after ``stall`` seconds without a change.

    A loaded machine makes the worker slower, not stuck: the limit is on
    time without progress, never on the total time. Says where it is every 10 s.
    """
    value, changed = progress(), time.monotonic()
    shown = changed
    while not done():
        _check_alive(tapp)
        await asyncio.sleep(0.2)
        now = time.monotonic()
        if progress() != value:
            value, changed = progress(), now
        elif now - changed > stall:
            return False
        if now - shown >= 10:
            shown = now
            _say(f"  ... {what}: {value}")
    return True


def run_demo(args: Any) -> int:
    for name in ("faust", "aiokafka", "kafka", "mode"):
        logging.getLogger(name).setLevel(logging.ERROR)
    return asyncio.run(_demo(seed=args.seed, history_days=args.history_days, scale=args.scale))


async def _demo(seed: int, history_days: int, scale: float) -> int:
    from ..broker import EmbeddedBroker
    from . import simulator

    t_start = time.monotonic()
    sc = simulator.Scenario(seed=seed, history_days=history_days, scale=scale)
    day = datetime(sc.incident_day.year, sc.incident_day.month, sc.incident_day.day, tzinfo=UTC)
    live_from = (day + timedelta(hours=4)).timestamp()  # 06:00 in Paris
    live_to = (day + timedelta(hours=10, minutes=30)).timestamp()
    truth = simulator.ground_truth(sc)
    _say(f"scenario: {history_days} ordinary days, then {sc.incident_day} "
         f"({', '.join(t['cause'] + ' on ' + (t['host'] or t['service']) for t in truth)}), seed {seed}")

    # Alertmanager's default timers (30 s group_wait, 5 m group_interval) are
    # for production; the demo compresses hours into a minute.
    cfg = load_model_text(
        "alerting:\n  route:\n    receiver: console\n    group_by: [service, host, disk]\n"
        "    group_wait: 1s\n    group_interval: 2s\n", Config, "<demo>")
    engine = Engine(cfg.detectors, cfg.alerting)
    t0 = time.monotonic()
    n = 0
    history_alerts: dict[str, Alert] = {}  # by fingerprint: a drive's open alert is re-sent with fresher evidence
    shown = t0
    for topic, ev in simulator.generate(sc, end=live_from):
        raw = orjson.dumps(ev)
        out = engine.process_request(decode_request(raw)) if topic == "requests" else engine.process_disk(decode_disk(raw))
        history_alerts.update((a.fingerprint, a) for a in out.alerts if a.status == "firing")
        n += 1
        if not n & 0x3FFF and time.monotonic() - shown >= 10:
            shown = time.monotonic()
            _say(f"  ... learning the previous days: {n:,} events, at "
                 f"{datetime.fromtimestamp(engine.aggregator.watermark, UTC):%a %d %b %H:%M} UTC event time")
    _say(f"learned {n:,} events of the previous days in {time.monotonic() - t0:.0f} s "
         "(what a worker running since then would know)")
    for a in history_alerts.values():
        _say(f"  raised before the incident day: [{a.cause}] {a.title}")

    broker = EmbeddedBroker()
    broker.start()
    _say(f"embedded tansu broker on {broker.bootstrap_servers}")
    console = _Recording(ConsoleReceiver())
    tapp = TocsinApp(cfg, broker.bootstrap_servers, embedded=True, engine=engine,
                     receivers={"console": console}, app_id=f"tocsin-demo-{int(time.time())}")
    sent: dict[str, Any] = {}
    try:
        _say("starting the Faust worker (agents, tables, notification pipeline) ...")
        await tapp.app.start()
        _say("worker started; streaming the incident day 06:00-12:30 (Paris) into Kafka, as fast as it goes")

        def produce() -> None:
            sent.update(simulator.send_to_kafka(sc, broker.bootstrap_servers, start_at=live_from, end_at=live_to))

        th = threading.Thread(target=produce, name="simulator", daemon=True)
        th.start()
        last = 0.0
        while th.is_alive():
            await asyncio.sleep(0.5)
            _check_alive(tapp)
            if time.monotonic() - last > 10:
                last = time.monotonic()
                _say(f"  ... {tapp.counts['processed.requests']:,} requests processed, event time "
                     f"{datetime.fromtimestamp(engine.aggregator.watermark, UTC):%H:%M} UTC")
        total = sent.get("requests", 0)
        _say(f"simulator sent {total:,} requests and {sent.get('disk-health', 0):,} disk readings")
        counts = tapp.counts
        processed = await _wait_while_moving(
            tapp, "processing",
            lambda: counts["processed.requests"] >= total
            and counts["processed.disk-health"] >= sent.get("disk-health", 0),
            lambda: (counts["processed.requests"], counts["processed.disk-health"]))
        if not processed:
            _say(f"WARNING: the worker stopped at {counts['processed.requests']:,} of {total:,} requests")
        await tapp.flush()
        delivered = await _wait_while_moving(
            tapp, "delivering alerts",
            lambda: counts["alerts.notified"] >= counts["alerts.firing"] + counts["alerts.resolved"],
            lambda: counts["alerts.notified"])
        await asyncio.sleep(5)  # two group intervals: the last groups go out
        if not delivered:
            _say(f"WARNING: {tapp.counts['alerts.notified']} of "
                 f"{tapp.counts['alerts.firing'] + tapp.counts['alerts.resolved']} alert state changes delivered in time")
    finally:
        try:
            await tapp.app.stop()
        finally:
            await tapp.close_receivers()
            broker.stop()

    fired = [a for a in console.seen if a.status == "firing"]
    causes = Counter(a.cause for a in fired)
    _say(f"done in {time.monotonic() - t_start:.0f} s: {tapp.counts['processed.requests']:,} requests and "
         f"{tapp.counts['processed.disk-health']:,} disk readings processed, "
         f"{sum(v for k, v in tapp.counts.items() if k.startswith('anomalies.')):,} anomalies, {len(fired)} alert notifications")
    for t in truth:
        hit = [a for a in fired if a.cause == t["cause"] and a.labels.get("service") == t["service"]]
        mark = "caught" if hit else "MISSED"
        _say(f"  {t['cause']:20s} {t['service']:24s} {mark}")
    missing = [c for c in _CAUSES if not causes.get(c)]
    if missing:
        _say(f"no alert for: {', '.join(missing)}")
        return 1
    return 0
