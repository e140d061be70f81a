"""Apache Kafka stopped and restarted under load: the worker resumes, nothing is lost, no duplicate notification.

The shared broker of the session (``TOCSIN_TEST_BROKER``) is left alone: the
test starts a private Apache Kafka with ``scripts/kafka-local`` in its own
state folder, stops it with SIGTERM mid-stream and starts it again with
``start --keep`` (same folder and port, topics and committed offsets kept).

The worker is the real ``tocsin worker`` command in a subprocess (as
``test_restart``): the production shape (Faust's Worker, its signal handling,
the webhook receiver built from the configuration), and a crash shows as an
exit status. What it did is read from its Prometheus endpoint, the topics and
the consumer group offsets; the notifications from a webhook server in the test.

A producer thread sends ~27,500 request events of two services (one per
partition) at a steady rate, 1 in 40 malformed, with a 5-minute flood on one
service (event time) that makes one alert. The broker is stopped as soon as
that alert's firing notification arrives, so the outage falls between the
firing and the resolve; the producer keeps sending into its buffer (and
retries) through it.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import orjson
import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic

from stream.broker import free_port

from .test_worker import T0, malformed, read_all

ROOT = Path(__file__).resolve().parents[2]
KAFKA_LOCAL = ROOT / "scripts" / "kafka-local"
KAFKA_VERSION = os.environ.get("TOCSIN_KAFKA_VERSION", "4.4.0")
KAFKA_LIB = Path(os.environ.get("TOCSIN_KAFKA_CACHE", Path.home() / ".cache" / "tocsin")) / f"kafka-{KAFKA_VERSION}" / "lib"

RATE = 1000.0  # events a second, steady
PAUSE = 3.0  # seconds between the end of the stop and the start again


def _why_skip() -> str | None:
    if not os.environ.get("TOCSIN_TEST_BROKER"):
        return "needs Apache Kafka (TOCSIN_TEST_BROKER, as in CI): this test starts, stops and restarts a private one"
    if not (KAFKA_LIB / ".complete").is_file():
        return f"no Apache Kafka {KAFKA_VERSION} jars in {KAFKA_LIB} (scripts/kafka-local start fetches them)"
    if not (shutil.which("java") or os.environ.get("JAVA_HOME")):
        return "no java for a private Apache Kafka"
    return None


pytestmark = pytest.mark.skipif(_why_skip() is not None, reason=_why_skip() or "")


# -- the private broker ----------------------------------------------------------
class PrivateKafka:
    def __init__(self, state: Path) -> None:
        self.state = state
        self.env = {**os.environ, "TOCSIN_KAFKA_STATE": str(state), "TOCSIN_KAFKA_VERSION": KAFKA_VERSION}
        self.bootstrap = ""

    def _run(self, *args: str, timeout: float = 120) -> str:
        r = subprocess.run([str(KAFKA_LOCAL), *args], env=self.env, capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0:
            pytest.fail(f"kafka-local {' '.join(args)} failed ({r.returncode}): {r.stderr[-2000:]}")
        return r.stdout

    def start(self, *extra: str) -> str:
        out = self._run("start", *extra)
        bs = [line.split("=", 1)[1] for line in out.splitlines() if line.startswith("TOCSIN_TEST_BROKER=")][-1]
        assert not self.bootstrap or bs == self.bootstrap, "the restarted broker must keep its port"
        self.bootstrap = bs
        return bs

    def stop(self) -> None:
        self._run("stop", timeout=60)


# -- the webhook receiver -----------------------------------------------------------
class Hook:
    """Records every POST (Alertmanager webhook v4 payloads) with its arrival time."""

    def __init__(self) -> None:
        self.posts: list[tuple[float, dict]] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                hook.posts.append((time.monotonic(), json.loads(body)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def changes(self) -> list[tuple[str, str]]:
        """(fingerprint, status) of every alert in every notification, in arrival order."""
        return [(a["fingerprint"], a["status"]) for _, p in self.posts for a in p["alerts"]]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# -- the input -------------------------------------------------------------------------
def two_services(seed: int = 11) -> list[tuple[bytes, bytes, bool]]:
    """(key, value, malformed) of 60 minutes of two services, a 5-minute flood on the first.

    The flood is long (3,900 events past its detection, ~4 s at RATE) so that the
    firing notification comes, and the broker stops, well before it ends: the
    resolve can only come after the restart.

    ent-a: 150 requests a minute, 1,800 (hosting networks, /login, slow, half 503) in minutes 35-39;
    ent-b: 150 a minute throughout. One message in 40 is malformed (dead-lettered).
    """
    rng = random.Random(seed)
    timed: list[tuple[float, str, dict]] = []
    for minute in range(60):
        for svc in ("ent-a", "ent-b"):
            attack = svc == "ent-a" and 35 <= minute < 40
            n = 1800 if attack else 150
            for i in range(n):
                if attack:
                    ev = {"client_ip": f"203.0.113.{rng.randrange(40)}", "country": rng.choice(["US", "NL", "SG"]),
                          "asn": rng.choice([14061, 16509, 24940]), "endpoint": "/login",
                          "user_agent": "python-requests/2.25"}
                else:
                    ev = {"client_ip": f"90.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(256)}",
                          "country": "FR", "asn": 3215,
                          "endpoint": rng.choice(["/login", "/cahier-de-textes", "/messagerie"]),
                          "user_agent": rng.choice(["Mozilla/5.0 (Windows)", "Mozilla/5.0 (iPad)", "Mozilla/5.0 (X11)"])}
                ev.update(ts=T0 + minute * 60 + i * 60.0 / n, service=svc,
                          status=200 if not attack or rng.random() < 0.5 else 503,
                          latency_ms=rng.lognormvariate(4.8, 0.3) * (6 if attack else 1), host=f"web-{i % 3}")
                timed.append((ev["ts"], svc, ev))
    timed.sort(key=lambda t: t[0])
    out: list[tuple[bytes, bytes, bool]] = []
    bad = 0
    for k, (_, svc, ev) in enumerate(timed):
        out.append((svc.encode(), orjson.dumps(ev), False))
        if k % 40 == 39:
            out.append((svc.encode(), malformed(ev, bad), True))
            bad += 1
    return out


class SteadyProducer(threading.Thread):
    """Sends the messages at RATE a second whatever the broker does; counts what Kafka acknowledged."""

    def __init__(self, bootstrap: str, topic: str, messages: list[tuple[bytes, bytes, bool]]) -> None:
        super().__init__(daemon=True)
        self.topic, self.messages = topic, messages
        self.producer = KafkaProducer(
            bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=20,
            retries=2**31 - 1, delivery_timeout_ms=120_000, request_timeout_ms=10_000, max_block_ms=60_000,
            reconnect_backoff_ms=100, reconnect_backoff_max_ms=500, retry_backoff_ms=200,
            max_request_size=4 * 1024 * 1024,
        )
        self.lock = threading.Lock()
        self.acked = Counter()  # "good" / "bad"
        self.errors: list[str] = []
        self.sent = 0
        self.done = threading.Event()

    def _ok(self, bad: bool):
        def cb(_meta) -> None:
            with self.lock:
                self.acked["bad" if bad else "good"] += 1
        return cb

    def _err(self, exc: BaseException) -> None:
        with self.lock:
            self.errors.append(repr(exc))

    def run(self) -> None:
        t0 = time.monotonic()
        try:
            for i, (key, value, bad) in enumerate(self.messages):
                due = t0 + i / RATE
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                fut = self.producer.send(self.topic, key=key, value=value)
                fut.add_callback(self._ok(bad))
                fut.add_errback(self._err)
                self.sent = i + 1
            self.producer.flush(timeout=150)
        except Exception as exc:  # noqa: BLE001 - reported by the test
            self.errors.append(f"producer thread: {exc!r}")
        finally:
            self.done.set()

    @property
    def total_acked(self) -> int:
        with self.lock:
            return self.acked["good"] + self.acked["bad"]


# -- the worker -------------------------------------------------------------------------
def metric_sum(port: int, name: str, topic: str) -> float:
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()  # noqa: S310
    except OSError:
        return -1.0
    return sum(float(line.rsplit(" ", 1)[1]) for line in body.splitlines()
               if line.startswith(name + "{") and f'topic="{topic}"' in line)


def metric_lines(port: int) -> str:
    """The worker's tocsin_* counters (for failure messages)."""
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()  # noqa: S310
    except OSError as exc:
        return f"(no metrics: {exc})"
    keep = ("tocsin_events_total", "tocsin_dead_letters_total", "tocsin_anomalies_total", "tocsin_alerts_total",
            "tocsin_notifications_total", "tocsin_consumer_lag")
    return "\n".join(line for line in body.splitlines() if line.startswith(keep))


def wait_for(cond, timeout: float, what: str, proc: subprocess.Popen | None = None, log: Path | None = None,
             metrics_port: int | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        if proc is not None and proc.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:] if log else ""
            pytest.fail(f"worker exited with {proc.returncode} while waiting for {what}\n{tail}")
        time.sleep(0.2)
    tail = log.read_text(errors="replace")[-3000:] if log else ""
    metrics = metric_lines(metrics_port) if metrics_port else ""
    pytest.fail(f"timed out ({timeout:.0f} s) waiting for {what}\n{metrics}\n{tail}")


def committed_and_end(bootstrap: str, group: str, topic: str) -> tuple[dict[int, int], dict[int, int]]:
    """The group's committed offsets and the end offsets of every partition of ``topic``."""
    c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        tps = [TopicPartition(topic, p) for p in sorted(c.partitions_for_topic(topic) or ())]
        end = {tp.partition: o for tp, o in c.end_offsets(tps).items()}
        committed = {tp.partition: c.committed(tp) for tp in tps}  # an OffsetFetch: no group join
    finally:
        c.close()
    return {p: o for p, o in committed.items() if o is not None}, end


def test_kafka_stopped_and_restarted_under_load(unique_names, tmp_path, monkeypatch):
    started = time.monotonic()
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    names = unique_names()
    kafka = PrivateKafka(tmp_path / "kafka")
    hook = Hook()
    worker: subprocess.Popen | None = None
    producer: SteadyProducer | None = None
    wlog = tmp_path / "worker.log"
    try:
        bootstrap = kafka.start()
        t_ready = time.monotonic()
        requests = f"{names}-req"
        group = f"{names}-group"
        metrics_port, web_port = free_port(), free_port()
        config = tmp_path / "tocsin.yaml"
        config.write_text(
            f"kafka: {{group_id: {group}}}\n"
            f"topics: {{requests: {requests}, disk_health: {names}-disk, anomalies: {names}-anom, "
            f"alerts: {names}-alerts, dead_letter: {names}-dl, silences: {names}-sil}}\n"
            f"web: {{port: {web_port}}}\nmetrics: {{port: {metrics_port}}}\n"
            "alerting:\n"
            "  receivers: [{name: hook, webhook: {url_env: TOCSIN_IT_HOOK_URL, timeout: 5s}}]\n"
            "  route: {receiver: hook, group_by: [service], group_wait: 1s, group_interval: 2s, repeat_interval: 1h}\n"
        )
        # The topics first, 4 partitions as the worker's (as a deployment does): Faust subscribes
        # once at start and ignores a missing alerts topic ("Ignoring missing topic"), so an
        # alerts topic auto-created by the first alert would not be read back for minutes.
        admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        try:
            admin.create_topics([NewTopic(t, 4, 1) for t in (requests, f"{names}-disk", f"{names}-anom",
                                                             f"{names}-alerts", f"{names}-dl", f"{names}-sil")])
        finally:
            admin.close()

        env = {**os.environ, "TOCSIN_KAFKA_BOOTSTRAP_SERVERS": bootstrap, "TOCSIN_CONFIG": str(config),
               "TOCSIN_IT_HOOK_URL": hook.url, "NO_PROXY": "127.0.0.1,localhost"}
        env.pop("TOCSIN_METRICS_PORT", None)
        with wlog.open("wb") as out:
            worker = subprocess.Popen([sys.executable, "-m", "stream.cli", "worker", "--loglevel", "info"],
                                      env=env, stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path)
        wait_for(lambda: metric_sum(metrics_port, "tocsin_events_total", requests) >= 0, 60,
                 "the worker's metrics endpoint", worker, wlog)

        messages = two_services()
        n_bad = sum(1 for m in messages if m[2])
        producer = SteadyProducer(bootstrap, requests, messages)
        producer.start()
        t_produce = time.monotonic()

        # Reading and alerting: the flood's firing notification arrives, then the broker goes.
        wait_for(lambda: any(s == "firing" for _, s in hook.changes()), 60,
                 "the firing notification of the flood", worker, wlog, metrics_port)
        read_at_stop = metric_sum(metrics_port, "tocsin_events_total", requests)
        sent_at_stop, acked_at_stop = producer.sent, producer.total_acked
        t_stop = time.monotonic()
        kafka.stop()
        t_stopped = time.monotonic()
        read_when_down = metric_sum(metrics_port, "tocsin_events_total", requests)
        time.sleep(PAUSE)
        assert worker.poll() is None, "the worker exited while the broker was down"
        sent_before_restart = producer.sent
        kafka.start("--keep")
        t_back = time.monotonic()
        outage = t_back - t_stop
        read_at_restart = metric_sum(metrics_port, "tocsin_events_total", requests)

        # Everything the producer sent is acknowledged (it retried through the outage)...
        assert producer.done.wait(150), f"the producer did not finish: sent {producer.sent}/{len(messages)}"
        assert not producer.errors, producer.errors[:5]
        assert producer.total_acked == len(messages), (producer.total_acked, len(messages))
        t_produced = time.monotonic()
        producer.producer.close(timeout=10)
        # ... and read by the worker: processed or dead-lettered.
        wait_for(lambda: metric_sum(metrics_port, "tocsin_events_total", requests) >= len(messages), 90,
                 "the worker to read every acknowledged event", worker, wlog, metrics_port)
        read_total = metric_sum(metrics_port, "tocsin_events_total", requests)
        dead_total = metric_sum(metrics_port, "tocsin_dead_letters_total", requests)
        # Committed offsets of the request reader's group reach the end of every partition.
        state: dict[str, dict[int, int]] = {}

        def caught_up() -> bool:
            state["committed"], state["end"] = committed_and_end(bootstrap, f"{group}-requests", requests)
            return all(state["committed"].get(p, 0) >= o for p, o in state["end"].items())

        wait_for(caught_up, 30, "the requests offsets to be committed to the end", worker, wlog, metrics_port)
        # The flood's alert resolves after the restart, and is notified once.
        wait_for(lambda: any(s == "resolved" for _, s in hook.changes()), 30,
                 "the resolved notification", worker, wlog, metrics_port)
        time.sleep(3)  # a group_interval more: anything extra would come now
        assert worker.poll() is None, "the worker died"
    finally:
        if producer is not None and not producer.done.is_set():
            producer.producer.close(timeout=0)
        if worker is not None and worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait(10)
        alerts_seen: list[dict] = []
        dead_seen: list = []
        if kafka.bootstrap and worker is not None:
            try:
                alerts_seen = [orjson.loads(m.value) for m in read_all(kafka.bootstrap, f"{names}-alerts", 1, timeout=10)]
                dead_seen = read_all(kafka.bootstrap, f"{names}-dl", 1, timeout=10)
            except Exception as exc:  # noqa: BLE001 - the assertions below say what is missing
                print("reading the output topics failed:", exc)
        kafka.stop()
        hook.close()
    took = time.monotonic() - started

    log_text = wlog.read_text(errors="replace")
    changes = hook.changes()
    firing_records = [a for a in alerts_seen if a["status"] == "firing"]
    emitted = sorted({(a["fingerprint"], a["status"]) for a in alerts_seen})
    report = {
        "events": len(messages), "malformed": n_bad, "acked": producer.total_acked,
        "acked_before_stop": acked_at_stop, "sent_before_stop": sent_at_stop,
        "sent_while_stopping_or_down": sent_before_restart - sent_at_stop,
        "read_at_stop": read_at_stop, "read_when_down": read_when_down, "read_at_restart": read_at_restart,
        "read": read_total, "dead_lettered": dead_total, "dead_letter_topic": len(dead_seen),
        "outage_s": round(outage, 1), "stop_s": round(t_stopped - t_stop, 1), "restart_s": round(t_back - t_stopped - PAUSE, 1),
        "kafka_start_s": round(t_ready - started, 1), "produce_s": round(t_produced - t_produce, 1),
        "notifications": len(hook.posts), "notified_changes": changes, "alert_records": len(alerts_seen),
        "committed": state.get("committed"), "end": state.get("end"), "took_s": round(took, 1),
        "worker_exit": worker.returncode if worker else None,
    }
    print("broker restart:", report)

    # Nothing lost: every acknowledged event was read (the committed offsets reach
    # every partition's end, checked above), processed or dead-lettered.
    assert read_total - dead_total >= len(messages) - n_bad, report
    assert dead_total >= n_bad and len(dead_seen) >= n_bad, report
    # The idempotent producer wrote each event once: the logs hold exactly what was sent.
    assert sum(state["end"].values()) == len(messages), report
    # The worker resumed: thousands of events were read after the restart (those sent while
    # the broker was down could be read no earlier), and it neither crashed nor hung on the way out.
    assert read_total - read_when_down >= 1000, report
    assert worker.returncode in (0, -signal.SIGTERM), (worker.returncode, log_text[-3000:])
    assert "Traceback" not in log_text and "crashed" not in log_text.lower(), log_text[-5000:]
    # One alert (the flood on ent-a): no storm from the outage or a re-read.
    assert len({a["fingerprint"] for a in firing_records}) == 1, [a["title"] for a in firing_records]
    assert all(a["labels"]["service"] == "ent-a" for a in alerts_seen), [a["title"] for a in alerts_seen]
    # Exactly one notification per alert state change: firing before the outage, resolved after it.
    assert sorted(changes) == emitted and len(changes) == len(emitted) == 2, report
    assert [s for _, s in changes] == ["firing", "resolved"], changes
    assert len(hook.posts) == 2, report
    (t_firing, _), (t_resolved, _) = hook.posts
    assert t_firing < t_stop < t_resolved, "the outage must fall between the firing and the resolve"
