"""A worker killed with SIGKILL mid-stream and restarted resumes with the models it had."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request

import orjson
import pytest
from kafka import KafkaProducer

from stream.broker import free_port

from .test_broker_restart import committed_and_end
from .test_worker import read_all, synthetic_stream

pytestmark = pytest.mark.skipif(
    not os.environ.get("TOCSIN_TEST_BROKER"),
    reason="needs Apache Kafka (TOCSIN_TEST_BROKER): tansu loses group state and holds joins for 30 s",
)


def events_processed(port: int) -> float:
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()  # noqa: S310
    except OSError:
        return -1.0
    total = 0.0
    for line in body.splitlines():
        if line.startswith("tocsin_events_total{") and 'topic="' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def start_worker(config: str, bootstrap: str, tmp_path, name: str) -> subprocess.Popen:
    env = {**os.environ, "TOCSIN_KAFKA_BOOTSTRAP_SERVERS": bootstrap, "TOCSIN_CONFIG": config}
    log = open(tmp_path / f"{name}.log", "wb")
    return subprocess.Popen([sys.executable, "-m", "stream.cli", "worker", "--loglevel", "warning"],
                            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)


def wait_for(cond, timeout: float, what: str, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"worker exited with {proc.returncode} while waiting for {what}")
        time.sleep(0.5)
    pytest.fail(f"timed out waiting for {what}")


def worker_config(tmp_path, names: str, extra: str = "") -> tuple[str, int, int]:
    """A worker's configuration file with topics and groups of its own: (path, metrics port, web port)."""
    metrics_port, web_port = free_port(), free_port()
    config = tmp_path / "tocsin.yaml"
    config.write_text(
        f"kafka: {{group_id: {names}-group}}\n"
        f"topics: {{requests: {names}-req, disk_health: {names}-disk, anomalies: {names}-anom, "
        f"alerts: {names}-alerts, dead_letter: {names}-dl, silences: {names}-sil, labels: {names}-labels, "
        f"acks: {names}-acks}}\n"
        f"web: {{port: {web_port}}}\nmetrics: {{port: {metrics_port}}}\n" + extra
    )
    return str(config), metrics_port, web_port


def test_sigkill_and_restart_keeps_the_models(kafka_bootstrap, unique_names, tmp_path):
    names = unique_names()
    config, metrics_port, _ = worker_config(tmp_path, names)
    stream = synthetic_stream()  # 45 ordinary minutes, a 3-minute flood, 9 ordinary minutes
    first, second = stream[: 40 * 100], stream[40 * 100 :]
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, linger_ms=10)

    def send(events):
        for ev in events:
            producer.send(f"{names}-req", key=b"ent-test", value=orjson.dumps(ev))
        producer.flush()

    send(first)
    w1 = start_worker(config, kafka_bootstrap, tmp_path, "w1")
    seen_by_w1 = 0.0
    try:
        wait_for(lambda: events_processed(metrics_port) >= len(first), 120, "the first 40 minutes", w1)
        time.sleep(8)  # a checkpoint (every 5 s) and an offset commit happen
        # Something mid-stream when the kill comes.
        send(second[:300])
        time.sleep(0.5)
        seen_by_w1 = events_processed(metrics_port)
    finally:
        w1.send_signal(signal.SIGKILL)
        w1.wait(10)
    send(second[300:])
    producer.close()
    w2_processed = [0.0]
    w2 = start_worker(config, kafka_bootstrap, tmp_path, "w2")
    try:
        # At least once: the restarted worker reads from the last commit, some events again.
        wait_for(lambda: events_processed(metrics_port) >= len(second) - 300, 120, "the rest of the stream", w2)
        time.sleep(3)
        w2_processed[0] = events_processed(metrics_port)
    finally:
        w2.send_signal(signal.SIGTERM)
        try:
            w2.wait(30)
        except subprocess.TimeoutExpired:
            w2.kill()
    log2 = (tmp_path / "w2.log").read_text(errors="replace")
    # Accounting: every produced event was read (the restarted worker committed up to the end of
    # every partition: nothing skipped), and what was read twice is bounded by what the killed
    # worker had read since its last commit.
    produced = len(stream)
    committed, ends = committed_and_end(kafka_bootstrap, f"{names}-group-requests", f"{names}-req")
    assert committed == {p: o for p, o in ends.items() if o} and sum(ends.values()) == produced, (committed, ends)
    seen_by_w2 = w2_processed[0]
    duplicates = seen_by_w1 + seen_by_w2 - produced
    print(f"restart accounting: {produced} produced, {seen_by_w1:.0f} read before the kill, "
          f"{seen_by_w2:.0f} after; at least {duplicates:.0f} read twice (at least once)")
    assert seen_by_w1 + seen_by_w2 >= produced
    assert duplicates <= seen_by_w1 - len(first) + 5000  # at most what came after the last commit, and a batch
    alerts = [orjson.loads(m.value) for m in read_all(kafka_bootstrap, f"{names}-alerts", 1)]
    firing = [a for a in alerts if a["status"] == "firing"]
    # Warm models: the flood 5 minutes after the restart is caught and named (a cold
    # worker needs 30 windows before its traffic baseline can flag anything)...
    assert any(a["cause"] == "suspected_attack" for a in firing), (alerts, log2[-2000:])
    # ... and the restart itself raises nothing: no storm.
    assert len({a["fingerprint"] for a in firing}) == 1, [a["title"] for a in firing]
