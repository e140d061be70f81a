"""The worker on a real broker: events in; anomalies, alerts and dead letters out."""

from __future__ import annotations

import asyncio
import base64
import os
import random
import time

import orjson
from kafka import KafkaConsumer, KafkaProducer

from alerts.notify.console import ConsoleReceiver
from stream.app import TocsinApp, wait_until
from stream.settings import Config, TopicsConfig

T0 = 1617692400.0  # 2021-04-06T07:00:00Z


def synthetic_stream(seed: int = 3) -> list[dict]:
    """45 ordinary minutes of one service, a 3-minute flood from hosting networks, 9 ordinary minutes."""
    rng = random.Random(seed)
    events = []
    for minute in range(57):
        attack = 45 <= minute < 48
        n = 1200 if attack else 100
        for i in range(n):
            ts = T0 + minute * 60 + i * 60.0 / n
            if attack:
                ev = {"client_ip": f"203.0.113.{rng.randrange(40)}", "country": rng.choice(["US", "NL", "SG"]),
                      "asn": rng.choice([14061, 16509, 24940]), "endpoint": "/login", "user_agent": "python-requests/2.25"}
            else:
                ev = {"client_ip": f"90.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(256)}", "country": "FR",
                      "asn": 3215, "endpoint": rng.choice(["/login", "/cahier-de-textes", "/messagerie"]),
                      "user_agent": rng.choice(["Mozilla/5.0 (Windows)", "Mozilla/5.0 (iPad)", "Mozilla/5.0 (X11)"])}
            ev.update(ts=ts, service="ent-test", status=200 if not attack or rng.random() < 0.5 else 503,
                      latency_ms=rng.lognormvariate(4.8, 0.3) * (6 if attack else 1), host=f"web-{i % 3}")
            events.append(ev)
    return events


def malformed(ev: dict, k: int) -> bytes:
    kind = k % 5
    if kind == 0:
        return orjson.dumps(ev)[:-7]
    if kind == 1:
        return orjson.dumps({k2: v for k2, v in ev.items() if k2 != "status"})
    if kind == 2:
        return orjson.dumps({**ev, "latency_ms": "slow"})
    if kind == 3:
        return orjson.dumps({**ev, "status": 777})
    return orjson.dumps({**ev, "pad": "x" * 70_000})


def read_all(bootstrap: str, topic: str, expect: int, timeout: float = 20.0) -> list:
    c = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", consumer_timeout_ms=2000,
                      enable_auto_commit=False)
    out, deadline = [], time.monotonic() + timeout
    while len(out) < expect and time.monotonic() < deadline:
        out.extend(c)
    c.close()
    return out


def test_10k_events_with_10pct_malformed(kafka_bootstrap, unique_names):
    embedded_broker = not os.environ.get("TOCSIN_TEST_BROKER")
    names = unique_names()
    topics = TopicsConfig(requests=f"{names}-requests", disk_health=f"{names}-disk", anomalies=f"{names}-anomalies",
                          alerts=f"{names}-alerts", dead_letter=f"{names}-dead-letter")
    cfg = Config(topics=topics)
    good = synthetic_stream()[:9000]
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, max_request_size=4 * 1024 * 1024, linger_ms=20)
    sent_bad: list[bytes] = []
    for i, ev in enumerate(good):
        producer.send(topics.requests, key=b"ent-test", value=orjson.dumps(ev))
        if i % 9 == 8:
            raw = malformed(ev, len(sent_bad))
            sent_bad.append(raw)
            producer.send(topics.requests, key=b"ent-test", value=raw)
    producer.flush()
    producer.close()
    assert len(good) + len(sent_bad) == 10_000

    async def run() -> TocsinApp:
        tapp = TocsinApp(cfg, kafka_bootstrap, embedded=embedded_broker, receivers={"console": ConsoleReceiver()},
                         app_id=f"{names}-app", data_dir=None)
        await tapp.app.start()
        try:
            ok = await wait_until(lambda: tapp.counts["processed.requests"] + tapp.counts["dead_letter.requests"] >= 10_000,
                                  timeout=150)
            assert ok, dict(tapp.counts)
            await tapp.flush()
            await wait_until(lambda: tapp.counts["alerts.notified"] >= tapp.counts["alerts.firing"], timeout=30)
            # The worker is still up: no agent crashed on the bad input.
            assert tapp.app._crash_reason is None
            assert all(agent._crash_reason is None for agent in tapp.app.agents.values())
        finally:
            await tapp.app.stop()
        return tapp

    tapp = asyncio.run(run())
    assert tapp.counts["processed.requests"] == 9000
    assert tapp.counts["dead_letter.requests"] == 1000

    dead = [orjson.loads(m.value) for m in read_all(kafka_bootstrap, topics.dead_letter, 1000)]
    assert len(dead) == 1000
    assert all(d["schema"] == "tocsin.dead-letter.v1" and d["error"] and d["source"]["topic"] == topics.requests
               for d in dead)
    # Payloads over 64 KiB keep their first 64 KiB (the size says how long they were).
    assert sorted(base64.b64decode(d["payload"]) for d in dead) == sorted(raw[:65536] for raw in sent_bad)
    assert sorted(d["size"] for d in dead) == sorted(len(raw) for raw in sent_bad)
    reasons = " ".join(d["error"] for d in dead)
    for needle in ("not valid JSON", "status", "latency_ms", "<= 599", "exceeds"):
        assert needle in reasons

    anomalies = [orjson.loads(m.value) for m in read_all(kafka_bootstrap, topics.anomalies, 1)]
    assert any(a["detector"] == "traffic" and a["entity"]["service"] == "ent-test" for a in anomalies)
    alerts = [orjson.loads(m.value) for m in read_all(kafka_bootstrap, topics.alerts, 1)]
    assert any(a["status"] == "firing" and a["cause"] == "suspected_attack" for a in alerts), alerts
