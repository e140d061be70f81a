"""The Faust agents without a broker: ``agent.test_context()`` and in-memory output channels."""

import base64
import io

import orjson

from alerts.notify.console import ConsoleReceiver
from stream.alerting import TICK
from stream.app import TocsinApp
from stream.settings import Config

T0 = 1617692400.0


def make_app(stream=None, **kw):
    out = io.StringIO() if stream is None else stream
    tapp = TocsinApp(Config(), "127.0.0.1:1", receivers={"console": ConsoleReceiver(stream=out, color=False)},
                     app_id="tocsin-agent-test", local_outputs=True, **kw)
    subs = {name: getattr(tapp, f"{name}_topic").clone(is_iterator=True) for name in ("anomalies", "alerts", "dead_letter")}
    return tapp, subs, out


def drain(sub):
    out = []
    while not sub.queue.empty():
        out.append(orjson.loads(sub.queue.get_nowait().value))
    return out


def request(ts, n_in_minute=100, attack=False):
    return orjson.dumps({
        "ts": ts, "service": "ent", "status": 503 if attack else 200, "latency_ms": 900.0 if attack else 120.0,
        "host": "web-1", "client_ip": f"203.0.113.{int(ts) % 20}" if attack else f"90.1.{int(ts * 7) % 250}.{int(ts) % 250}",
        "country": "US" if attack else "FR", "asn": 14061 if attack else 3215, "endpoint": "/login",
    })


async def test_malformed_messages_go_to_dead_letter_and_the_agent_goes_on():
    tapp, subs, _ = make_app()
    bad = [b"{oops", b'{"ts": 1, "service": "s", "status": 700, "latency_ms": 1}', b"\xff\xfe", b"[]"]
    async with tapp.detect_requests.test_context() as agent:
        for raw in bad:
            await agent.put(raw)
        await agent.put(request(T0))
    dead = drain(subs["dead_letter"])
    assert [base64.b64decode(d["payload"]) for d in dead] == bad
    assert all(d["schema"] == "tocsin.dead-letter.v1" and d["error"] for d in dead)
    assert tapp.counts["dead_letter.requests"] == 4 and tapp.counts["processed.requests"] == 1


async def test_a_flood_becomes_anomalies_and_one_alert():
    tapp, subs, _ = make_app()
    async with tapp.detect_requests.test_context() as agent:
        for minute in range(50):
            for i in range(100):
                await agent.put(request(T0 + minute * 60 + i * 0.6))
        for minute in range(50, 53):
            for i in range(1500):
                await agent.put(request(T0 + minute * 60 + i * 0.04, attack=True))
        await agent.put(request(T0 + 53 * 60 + 10))
    anomalies = drain(subs["anomalies"])
    alerts = drain(subs["alerts"])
    assert any(a["detector"] == "traffic" for a in anomalies)
    assert [a["cause"] for a in alerts if a["status"] == "firing"][:1] == ["suspected_attack"]
    assert len({a["fingerprint"] for a in alerts}) == 1


async def test_notify_agent_delivers_once_per_state_change():
    now = [1_700_000_000.0]
    tapp, subs, out = make_app(clock=lambda: now[0])
    record = {"schema": "tocsin.alert.v1", "fingerprint": "f1", "status": "firing", "severity": "critical",
              "title": "Traffic 8.2x usual on ent: suspected attack", "cause": "suspected_attack", "confidence": 0.9,
              "labels": {"service": "ent", "host": None, "disk": None}, "starts_at": "2021-04-06T08:04:00Z",
              "ends_at": None, "evidence": [{"signal": "request_rate", "value": 812.0, "expected": 99.0,
                                              "text": "812 req/s against 99 usual"}], "anomalies": ["a1"]}
    async with tapp.notify_alerts.test_context() as agent:
        await agent.put(orjson.dumps(record))
        await agent.put(orjson.dumps(record))  # redelivered after a restart: not sent again
        now[0] += 60  # past group_wait
        await agent.put(TICK)
        await agent.put(orjson.dumps({**record, "status": "resolved", "ends_at": "2021-04-06T08:30:00Z"}))
        await agent.put(b"not an alert")
        now[0] += 600  # past group_interval
        await agent.put(TICK)
    text = out.getvalue()
    assert text.count("[FIRING]") == 1
    assert "RESOLVED" in text.upper()
    assert tapp.counts["alerts.unreadable"] == 1


async def test_checkpoints_name_their_partition_and_restore_only_the_owned_ones():
    tapp, _, _ = make_app()
    async with tapp.detect_requests.test_context() as agent:
        for minute in range(3):
            for i in range(50):
                await agent.put(request(T0 + minute * 60 + i * 1.2), partition=2)
        assert tapp.checkpoint() > 0
    keys = sorted(k.decode() for k in tapp.models_table.data.keys())
    assert keys and all(k.startswith("r2/") for k in keys), keys
    assert "r2/traffic:ent" in keys and "r2/latency:ent|web-1" in keys

    other, _, _ = make_app()
    for k in keys:
        other.models_table.data[k.encode()] = tapp.models_table.data[k.encode()]
    assert other.restore({0, 1}) == 0 and not other.engine.traffic
    assert other.restore({2}) == len(keys)
    assert other.engine.traffic["ent"].to_bytes() == tapp.engine.traffic["ent"].to_bytes()
    assert other.engine._partial == {"ent"}
