"""Metrics: reason classes from the decoders' own messages, and a real scrape over HTTP."""

from __future__ import annotations

import inspect
import json
import re
import shutil
import subprocess
import urllib.request
from pathlib import Path

import orjson
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from detectors.errors import InvalidEvent
from detectors.events import decode_disk, decode_request
from detectors.model import Anomaly, Entity
from stream.metrics import DEAD_LETTER_REASONS, Metrics, classify_dead_letter, update_lag


def _error(decode, raw: bytes) -> str:
    with pytest.raises(InvalidEvent) as exc:
        decode(raw)
    return str(exc.value)


REQ = b'{"ts": 1617696000, "service": "ent", "status": 200, "latency_ms": 12}'


@pytest.mark.parametrize("decode, raw, reason", [
    (decode_request, b'{"ts": 1, "service": "ent"', "bad_json"),
    (decode_request, b"\xff\xfe", "bad_json"),
    (decode_request, b'{"ts": 1, "status": 200, "latency_ms": 1}', "missing_field"),
    (decode_disk, b'{"ts": 1, "host": "h", "disk": "d"}', "missing_field"),
    (decode_request, b'{"ts": 1, "service": "ent", "status": "200", "latency_ms": 1}', "wrong_type"),
    (decode_request, b'[1, 2]', "wrong_type"),
    (decode_request, b'{"ts": "yesterday", "service": "ent", "status": 200, "latency_ms": 1}', "wrong_type"),
    (decode_request, b'{"ts": "2021-04-06T08:00:00", "service": "ent", "status": 200, "latency_ms": 1}', "wrong_type"),
    (decode_request, b'{"ts": true, "service": "ent", "status": 200, "latency_ms": 1}', "wrong_type"),
    (decode_disk, b'{"ts": 1, "host": "h", "disk": "d", "smart": {"x": 1}}', "wrong_type"),
    (decode_disk, b'{"ts": 1, "host": "h", "disk": "d", "smart": {"5": "a"}}', "wrong_type"),
    (decode_request, b'{"ts": 1, "service": "ent", "status": 700, "latency_ms": 1}', "out_of_range"),
    (decode_request, b'{"ts": 1, "service": "ent", "status": 200, "latency_ms": -3}', "out_of_range"),
    (decode_request, b'{"ts": 1, "service": "", "status": 200, "latency_ms": 1}', "out_of_range"),
    (decode_request, b'{"ts": 1e20, "service": "ent", "status": 200, "latency_ms": 1}', "out_of_range"),
    (decode_disk, b'{"ts": 1, "host": "h", "disk": "d", "smart": {"5": -1}}', "out_of_range"),
    (decode_request, b'{"pad": "' + b"x" * 70_000 + b'"}', "oversized"),
])
def test_dead_letter_reason_is_read_from_the_decoder_message(decode, raw, reason):
    assert classify_dead_letter(_error(decode, raw)) == reason


def test_unknown_messages_are_other():
    assert classify_dead_letter("the broker ate it") == "other"
    assert set(DEAD_LETTER_REASONS) >= {"bad_json", "missing_field", "wrong_type", "out_of_range", "oversized", "other"}


def _scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - 127.0.0.1
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = resp.read().decode()
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _anomaly(detector: str, severity: str) -> Anomaly:
    return Anomaly(
        id="a1", ts=1617696000.0, detector=detector, entity=Entity(service="ent"), signal="request_rate",
        value=800.0, expected=100.0, lower=50.0, upper=200.0, score=0.99, severity=severity,
    )


def test_scrape_over_http_sees_every_metric():
    m = Metrics(sample_every=1)
    for _ in range(3):
        m.event_in("requests")
    m.event_in("disk-health")
    m.dead_letter(_error(decode_request, b"{"), topic="requests")
    m.dead_letter(_error(decode_request, b'{"ts": 1, "service": "ent", "status": 99, "latency_ms": 1}'), topic="requests")
    m.anomaly(_anomaly("traffic", "critical"))
    m.anomaly({"detector": "disk", "severity": "warning"})
    m.alert({"cause": "suspected_attack", "status": "firing"})
    m.alert({"cause": "suspected_attack", "status": "resolved"})
    m.notification("oncall", "sent")
    m.notification("oncall", "retried")
    m.notification("oncall", "failed")
    m.lag("requests", 3, 42)
    m.tracked_keys("traffic", 17)
    assert m.sample()
    m.processing_time(0.00002)
    m.processing_time(0.003)

    with m.serve("127.0.0.1", 0) as srv:
        assert srv.port > 0 and srv.host == "127.0.0.1"
        got = _scrape(srv.url)

    def v(name, **labels):
        return got[(name, tuple(sorted(labels.items())))]

    assert v("tocsin_events_total", topic="requests") == 3
    assert v("tocsin_events_total", topic="disk-health") == 1
    assert v("tocsin_dead_letters_total", topic="requests", reason="bad_json") == 1
    assert v("tocsin_dead_letters_total", topic="requests", reason="out_of_range") == 1
    assert v("tocsin_anomalies_total", detector="traffic", severity="critical") == 1
    assert v("tocsin_anomalies_total", detector="disk", severity="warning") == 1
    assert v("tocsin_alerts_total", cause="suspected_attack", status="firing") == 1
    assert v("tocsin_alerts_total", cause="suspected_attack", status="resolved") == 1
    for outcome in ("sent", "retried", "failed"):
        assert v("tocsin_notifications_total", receiver="oncall", outcome=outcome) == 1
    assert v("tocsin_consumer_lag_messages", topic="requests", partition="3") == 42
    assert v("tocsin_tracked_keys", kind="traffic") == 17
    assert v("tocsin_event_processing_seconds_count") == 2
    assert v("tocsin_event_processing_seconds_bucket", le="2.5e-05") == 1
    assert v("tocsin_event_processing_seconds_sum") == pytest.approx(0.00302)


def test_registries_are_isolated():
    a, b = Metrics(), Metrics()
    a.event_in("requests")
    assert b'tocsin_events_total{topic="requests"}' not in b.render()
    from prometheus_client import REGISTRY

    assert REGISTRY.get_sample_value("tocsin_events_total", {"topic": "requests"}) is None


def test_sampling_times_one_event_in_n():
    m = Metrics(sample_every=4)
    assert [m.sample() for _ in range(8)] == [False, False, False, True] * 2
    with pytest.raises(ValueError):
        Metrics(sample_every=0)


def test_notification_outcome_is_checked():
    with pytest.raises(ValueError, match="outcome"):
        Metrics().notification("console", "lost")


class _TP:
    def __init__(self, topic: str, partition: int) -> None:
        self.topic, self.partition = topic, partition

    def __hash__(self) -> int:
        return hash((self.topic, self.partition))


class _FakeConsumer:
    """The three calls of a Faust consumer that update_lag uses."""

    def __init__(self, offsets: dict[tuple[str, int], tuple[int | None, int | None]]) -> None:
        self.offsets = {_TP(t, p): v for (t, p), v in offsets.items()}

    def assignment(self):
        return set(self.offsets)

    def highwater(self, tp):
        return self.offsets[tp][0]

    async def position(self, tp):
        if self.offsets[tp][1] == "revoked":
            raise RuntimeError("partition not assigned")
        return self.offsets[tp][1]


async def test_update_lag_sets_the_gauge_per_partition():
    m = Metrics()
    consumer = _FakeConsumer({("requests", 0): (100, 60), ("requests", 1): (5, 5), ("disk-health", 0): (None, 3),
                              ("requests", 2): (9, "revoked")})
    assert await update_lag(m, consumer) == 40
    r = m.registry
    assert r.get_sample_value("tocsin_consumer_lag_messages", {"topic": "requests", "partition": "0"}) == 40
    assert r.get_sample_value("tocsin_consumer_lag_messages", {"topic": "requests", "partition": "1"}) == 0
    assert r.get_sample_value("tocsin_consumer_lag_messages", {"topic": "disk-health", "partition": "0"}) is None


# -- deploy/: Prometheus, Grafana and the compose services -------------------------
ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def _dashboard() -> dict:
    return json.loads((DEPLOY / "grafana" / "dashboards" / "tocsin.json").read_text(encoding="utf-8"))


def _exprs() -> list[str]:
    return [t["expr"] for p in _dashboard()["panels"] for t in p.get("targets", [])]


def test_prometheus_scrapes_the_port_the_worker_serves():
    cfg = yaml.safe_load((DEPLOY / "prometheus.yml").read_text(encoding="utf-8"))
    jobs = {j["job_name"]: j for j in cfg["scrape_configs"]}
    tocsin = jobs["tocsin"]
    assert tocsin["metrics_path"] == "/metrics"
    default_port = inspect.signature(Metrics.serve).parameters["port"].default
    assert tocsin["dns_sd_configs"][0]["port"] == default_port
    assert tocsin["dns_sd_configs"][0]["names"] == ["tocsin-worker"]


def test_grafana_dashboard_queries_only_metrics_that_exist():
    dash = _dashboard()
    ds = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text())
    uid = ds["datasources"][0]["uid"]
    panels = dash["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    for p in panels:
        if p["type"] != "row":
            assert p["datasource"]["uid"] == uid and p["targets"], p["title"]
    titles = {p["title"] for p in panels}
    for needed in ("Throughput by topic", "Consumer lag by partition", "Anomalies by detector", "Alerts by cause",
                   "Dead letters by reason"):
        assert needed in titles
    # Every series a query names is one the Metrics registry exposes.
    m = Metrics()
    m.event_in("requests")
    m.dead_letter("x", "requests")
    m.anomaly({"detector": "traffic", "severity": "warning"})
    m.alert({"cause": "unknown", "status": "firing"})
    m.notification("console", "sent")
    m.lag("requests", 0, 1)
    m.tracked_keys("traffic", 1)
    m.processing_time(0.001)
    exposed = {s.name for fam in text_string_to_metric_families(m.render().decode()) for s in fam.samples}
    used = {name for e in _exprs() for name in re.findall(r"\btocsin_[a-z_]+", e)}
    assert used and used <= exposed, used - exposed
    provider = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "dashboards" / "tocsin.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"


def test_compose_adds_prometheus_and_grafana_on_localhost():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    services = compose["services"]
    assert {"kafka", "tocsin-worker", "tocsin-simulator", "prometheus", "grafana"} <= set(services)
    for name in ("prometheus", "grafana"):
        svc = services[name]
        assert all(str(p).startswith("127.0.0.1:") for p in svc["ports"]), svc["ports"]
        for vol in svc["volumes"]:
            host = vol.split(":")[0]
            assert (ROOT / host).exists(), vol
    grafana_mounts = dict(v.split(":")[:2] for v in services["grafana"]["volumes"])
    home = services["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == grafana_mounts["./deploy/grafana/dashboards"] + "/tocsin.json"


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed (Debian package prometheus)")
def test_promtool_accepts_the_config_and_every_query(tmp_path):
    run = subprocess.run(["promtool", "check", "config", "--syntax-only", str(DEPLOY / "prometheus.yml")],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"tocsin:query_{i}", "expr": e.replace("$__rate_interval", "5m")} for i, e in enumerate(_exprs())
    ]}]}
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump(rules))
    run = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr


def test_sync_notifications_adds_what_the_pipeline_counted_since_last_time():
    from collections import Counter

    m = Metrics()
    counts = Counter({"sent.oncall": 2, "failed.oncall": 1, "retried.oncall": 1, "duplicate.oncall": 5,
                      "sent.console": 1, "failed.slack": 1, "fallback.slack": 2})
    m.sync_notifications(counts, failed=["slack"])
    counts["sent.oncall"] += 1
    m.sync_notifications(counts)
    m.sync_notifications(counts)

    def v(receiver, outcome):
        return m.registry.get_sample_value("tocsin_notifications_total", {"receiver": receiver, "outcome": outcome})

    def down(receiver):
        return m.registry.get_sample_value("tocsin_receiver_failed", {"receiver": receiver})

    assert (v("oncall", "sent"), v("oncall", "failed"), v("oncall", "retried"), v("console", "sent")) == (3, 1, 1, 1)
    assert v("oncall", "duplicate") is None
    # A non-retryable failure is not a retry: its notifications went to the fallbacks.
    assert (v("slack", "failed"), v("slack", "retried"), v("slack", "fallback")) == (1, None, 2)
    assert (down("slack"), down("oncall")) == (1, 0)
    m.sync_notifications(counts, failed=[])
    assert down("slack") == 0


def test_track_engine_counts_the_models_per_kind(make_request):
    from stream.engine import Engine

    e = Engine()
    for i in range(200):
        e.process_request(make_request(1617696000.0 + i, service="ent", host="web-1"))
        e.process_request(make_request(1617696000.0 + i, service="pronote", host="web-2"))
    e.flush()
    m = Metrics()
    m.track_engine(e)
    got = {k: m.registry.get_sample_value("tocsin_tracked_keys", {"kind": k}) for k in ("traffic", "latency", "composition", "drives")}
    assert got == {k: len(getattr(e, k)) for k in got}
    assert got["traffic"] >= 2 and got["drives"] == 0


def test_process_gc_and_build_collectors_are_registered():
    """The worker's own registry carries what the default one would (CPU, memory, GC) and its build."""
    import sys

    import detectors.traffic

    got = {(s.name, tuple(sorted(s.labels.items()))): s.value
           for fam in text_string_to_metric_families(Metrics().render().decode()) for s in fam.samples}
    names = {name for name, _ in got}
    if sys.platform.startswith("linux"):  # the process collector reads /proc
        assert {"process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds"} <= names
        assert got[("process_resident_memory_bytes", ())] > 10e6
    assert "python_gc_collections_total" in names and "python_info" in names
    [(labels, value)] = [(dict(lab), v) for (n, lab), v in got.items() if n == "tocsin_build_info"]
    assert value == 1
    assert labels["python"] == ".".join(map(str, sys.version_info[:3]))
    assert labels["compiled"] == ("false" if detectors.traffic.__file__.endswith(".py") else "true")
    assert labels["version"]
    # A registry given by the caller is left as it is (no second process collector).
    from prometheus_client import CollectorRegistry

    r = CollectorRegistry()
    Metrics(registry=r)
    assert r.get_sample_value("process_cpu_seconds_total") is None


def test_metric_names_carry_their_unit():
    """Prometheus naming: counters end in _total; gauges and histograms name their unit."""
    # a count of things; an info metric; a 0/1 state (as `up`)
    unitless_ok = {"tocsin_tracked_keys", "tocsin_build_info", "tocsin_receiver_failed"}
    for fam in text_string_to_metric_families(Metrics().render().decode()):
        if not fam.name.startswith("tocsin_") or fam.type == "counter" or fam.name in unitless_ok:
            continue
        if fam.name.endswith("_created"):  # the client's creation timestamp of a histogram or counter
            continue
        assert fam.name.endswith(("_seconds", "_bytes", "_messages", "_ratio")), fam.name


def test_grafana_dashboard_shows_worker_cpu_and_memory():
    exprs = _exprs()
    assert any("rate(process_cpu_seconds_total" in e for e in exprs)
    assert any("process_resident_memory_bytes" in e for e in exprs)
    assert any("tocsin_build_info" in e for e in exprs)
    exposed = {s.name for fam in text_string_to_metric_families(Metrics().render().decode()) for s in fam.samples}
    used = {n for e in exprs for n in re.findall(r"\b(?:process|python)_[a-z_]+", e)}
    assert used <= exposed, used - exposed


def test_track_engine_exports_what_the_caps_and_the_time_guard_dropped():
    from detectors.config import DetectorsConfig
    from detectors.events import decode_requests
    from stream.engine import Engine
    from stream.runner import time_guards

    engine = Engine(DetectorsConfig(limits={"max_services": 3}))
    guard, disk_guard = time_guards(engine.config)
    t0 = 1617692400.0
    raw = [orjson.dumps({"ts": t0 + i, "service": f"s{i}", "status": 200, "latency_ms": 5}) for i in range(10)]
    raw.append(orjson.dumps({"ts": t0 + 86400 * 30, "service": "s0", "status": 200, "latency_ms": 5}))
    evs, bad = decode_requests(raw)
    assert not bad
    kept, rejected = guard.split(evs, 0, arrival=t0 + 10)
    assert len(rejected) == 1
    engine.process_requests(kept, 0)
    m = Metrics()
    m.track_engine(engine, (guard, disk_guard))
    m.track_engine(engine, (guard, disk_guard))  # totals, not added twice

    def v(name, **labels):
        return m.registry.get_sample_value(name, labels)

    dropped = sum(v("tocsin_keys_dropped_total", kind="services", action=a) or 0
                  for a in ("evicted", "refused", "forgotten"))
    assert dropped >= 7 - 1  # 10 names, 3 kept (one may still be counted as young)
    assert v("tocsin_time_rejected_total", reason="ahead") == 1
    assert v("tocsin_tracked_keys", kind="services") <= 3
