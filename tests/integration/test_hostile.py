"""A worker (``tocsin worker``, its own process) under a mixed hostile stream still alerts on the incident inside it.

Into one hour of one service's traffic with a flood from hosting networks
go: a message just under the broker's size limit, events dated decades
ahead, malformed messages, a flood of random service names, a disk reading
with an absurd SMART value; and at the worker's web port, unauthenticated
and unbounded silence writes. The worker must not exit, must account for
every message (processed or dead-lettered), and must still raise the attack.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import urllib.error
import urllib.request

import orjson
from kafka import KafkaProducer

from .test_restart import events_processed, start_worker, wait_for, worker_config
from .test_worker import read_all, synthetic_stream

NEAR_LIMIT = 1_000_000
TOKEN = "test-token-0123456789"  # noqa: S105 - a test's own token


def post(port: int, path: str, body: bytes, token: str | None = None) -> int:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method="POST",  # noqa: S310
                                 headers={"Content-Type": "application/json"})
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def dead_letters(port: int) -> float:
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()  # noqa: S310
    except OSError:
        return -1.0
    return sum(float(line.rsplit(" ", 1)[1]) for line in body.splitlines()
               if line.startswith("tocsin_dead_letters_total{"))


def test_a_mixed_hostile_stream_does_not_silence_the_worker(kafka_bootstrap, unique_names, tmp_path, monkeypatch):
    names = unique_names()
    config, metrics_port, web_port = worker_config(tmp_path, names, "detectors: {limits: {max_services: 200}}\n")
    monkeypatch.setenv("TOCSIN_WEB_TOKEN", TOKEN)
    rng = random.Random(5)
    stream = synthetic_stream()  # 57 minutes of ent-test, a flood from hosting networks at minutes 45-48
    good = [orjson.dumps(ev) for ev in stream]
    hostile: list[bytes] = [b'{"ts": 1617692400, "service": "x", "pad": "' + b"x" * NEAR_LIMIT + b'"}']
    hostile += [orjson.dumps({**stream[0], "ts": "2090-01-01T00:00:00Z"}) for _ in range(10)]
    hostile += [b"{oops", b"[]", b'{"ts": 1, "service": "s", "status": 700, "latency_ms": 1}', b"\xff\xfe"] * 10
    randoms = [orjson.dumps({**ev, "service": f"svc-{rng.getrandbits(64):016x}"})
               for ev in rng.sample(stream[: 40 * 100], 3000)]
    mixed = good + hostile + randoms
    rng.shuffle(hostile)
    # Interleave the hostile messages with the traffic, keeping the traffic in time order.
    slots = sorted(rng.sample(range(len(good)), len(hostile) + len(randoms)))
    extra = iter(hostile + randoms)
    out: list[bytes] = []
    j = 0
    for i in range(len(good)):
        while j < len(slots) and slots[j] == i:
            out.append(next(extra))
            j += 1
        out.append(good[i])
    assert len(out) == len(mixed)

    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, max_request_size=2 * 1024 * 1024, linger_ms=20)
    for value in out:
        producer.send(f"{names}-req", key=b"ent-test", value=value)
    producer.send(f"{names}-disk", key=b"h", value=orjson.dumps(
        {"ts": 1617692400, "host": "h", "disk": "d", "smart": {"5": 1e308}}))
    producer.flush()
    producer.close()

    worker = start_worker(config, kafka_bootstrap, tmp_path, "hostile")
    try:
        wait_for(lambda: events_processed(metrics_port) >= len(out) + 1, 240, "every message read", worker)
        # The web port: no write without the token, no silence of everything, no huge or deep body.
        everything = json.dumps({"matchers": [{"name": "severity", "value": ".+", "isRegex": True}],
                                 "duration": "8760h", "author": "x", "comment": "mute all"}).encode()
        assert post(web_port, "/silences/", everything) == 401
        assert post(web_port, "/silences/", everything, TOKEN) == 400
        assert post(web_port, "/silences/", b"[" * 100_000 + b"]" * 100_000, TOKEN) in (400, 413)
        assert post(web_port, "/silences/", json.dumps({"matchers": [{"name": "service", "value": "ent-test"}],
                                                        "duration": "100000000h"}).encode(), TOKEN) == 400
        with urllib.request.urlopen(f"http://127.0.0.1:{web_port}/silences/", timeout=10) as resp:  # noqa: S310
            assert resp.status == 200 and json.loads(resp.read()) == []
        wait_for(lambda: dead_letters(metrics_port) >= len(hostile) + 1, 60, "the dead letters counted", worker)
        assert worker.poll() is None, "the worker exited"
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
    log = (tmp_path / "hostile.log").read_text(errors="replace")
    alerts = [orjson.loads(m.value) for m in read_all(kafka_bootstrap, f"{names}-alerts", 1, timeout=30)]
    firing = [a for a in alerts if a["status"] == "firing"]
    assert any(a["cause"] == "suspected_attack" and a["labels"]["service"] == "ent-test" for a in firing), (
        [a["title"] for a in firing], log[-3000:])
    assert not any(a["cause"] == "disk_failure" for a in firing)
    dead = [orjson.loads(m.value) for m in read_all(kafka_bootstrap, f"{names}-dl", len(hostile) + 1, timeout=30)]
    assert len(dead) == len(hostile) + 1
    reasons = " ".join(d["error"] for d in dead)
    assert "ahead" in reasons and "out of range" in reasons and "not valid JSON" in reasons
    assert all(len(d["payload"]) < 100_000 for d in dead)
    assert "Traceback" not in log, log[-3000:]
