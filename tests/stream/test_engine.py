"""The processing core without Kafka: windows, state checkpoints, event-time behaviour."""

import math

import pytest

from detectors.events import RequestEvent
from stream.engine import Engine

T0 = 1617692400.0


def feed(engine, minutes, start=T0, per_minute=120, service="ent", slow=1.0):
    out = []
    for m in range(minutes):
        for i in range(per_minute):
            ts = start + m * 60 + i * 60.0 / per_minute
            o = engine.process_request(RequestEvent(ts, service, 200, 100.0 * slow + (i % 13), host=f"w{i % 2}",
                                                    client_ip=f"10.0.{i % 50}.{m % 7}", country="FR"))
            out.append(o)
    return out


def test_checkpointed_models_restore_to_the_same_verdicts():
    a = Engine()
    feed(a, 90)
    states = a.dirty_states()
    assert {k.split(":")[0] for k in states} >= {"traffic", "latency", "composition"}
    assert all(len(v) < 1024 for v in states.values())
    b = Engine()
    for k, v in states.items():
        b.load_state(k, v)
    assert a.dirty_states() == {}  # nothing changed since the checkpoint
    # Both see the same next hour, slowed down: same anomalies.
    oa = feed(a, 30, start=T0 + 90 * 60, slow=4.0)
    ob = feed(b, 30, start=T0 + 90 * 60, slow=4.0)
    ids_a = [x.id for o in oa for x in o.anomalies]
    ids_b = [x.id for o in ob for x in o.anomalies]
    assert ids_a and ids_a == ids_b


def test_a_silent_service_gets_empty_windows_while_its_partition_flows():
    e = Engine()
    feed(e, 5, service="quiet")
    feed(e, 20, start=T0 + 5 * 60, service="busy")  # same source (partition 0)
    assert e.counts["windows"] > 20  # quiet's windows closed too, empty ones included
    closed = e.counts["windows"]
    # A whole partition that went quiet is advanced by the caller's clock.
    e.advance(T0 + 40 * 60, source=0)
    assert e.counts["windows"] > closed


def test_a_lagging_partition_is_not_cut_short():
    e = Engine()
    # partition 1 carries "slow", 10 minutes of event time behind partition 0
    for m in range(30):
        for i in range(60):
            e.process_request(RequestEvent(T0 + m * 60 + i, "fast", 200, 100.0), source=0)
            e.process_request(RequestEvent(T0 + (m - 10) * 60 + i, "slow", 200, 100.0), source=1)
    assert e.aggregator.late_events == 0


def test_partitions_apart_in_event_time_do_not_make_late_events():
    e = Engine()
    # service b is 3 minutes of event time behind service a (two partitions read unevenly)
    for m in range(10):
        for i in range(60):
            e.process_request(RequestEvent(T0 + m * 60 + i, "a", 200, 100.0), source=0)
            e.process_request(RequestEvent(T0 + (m - 3) * 60 + i, "b", 200, 100.0), source=1)
    assert e.aggregator.late_events == 0


def test_counts_and_scores_are_finite():
    e = Engine()
    outs = feed(e, 60)
    outs += feed(e, 5, start=T0 + 3600, per_minute=2000)
    anomalies = [a for o in outs for a in o.anomalies]
    assert anomalies and all(math.isfinite(a.value) and 0 <= a.score <= 1 for a in anomalies)


def test_an_incident_on_a_lagging_partition_is_one_alert_not_a_storm():
    e = Engine()
    alerts = []
    for m in range(100):
        for i in range(120):
            lag_m = m - 10  # partition 1 is 10 minutes of event time behind
            slow = 8.0 if 70 <= lag_m < 85 else 1.0
            for src, svc, mm, f in ((0, "fast", m, 1.0), (1, "slow", lag_m, slow)):
                o = e.process_request(RequestEvent(T0 + mm * 60 + i * 0.5, svc, 200, 100.0 * f + i % 9,
                                                   host=f"w{i % 3}"), source=src)
                alerts += o.alerts
    slow_alerts = [a for a in alerts if a.labels["service"] == "slow"]
    assert [a.status for a in slow_alerts][:1] == ["firing"]
    assert sum(a.status == "firing" and a.severity == slow_alerts[0].severity for a in slow_alerts) == 1
    assert all(a.labels["service"] != "fast" for a in alerts)


def test_after_a_restart_the_partial_window_is_not_judged():
    a = Engine()
    feed(a, 60)
    states = a.dirty_states()
    b = Engine()
    for k, v in states.items():
        b.load_state(k, v)
    b.mark_resumed()
    # The restarted worker sees only the end of the minute that was open.
    outs = feed(b, 1, start=T0 + 60 * 60 + 50, per_minute=10) + feed(b, 10, start=T0 + 61 * 60)
    assert not [x for o in outs for x in o.anomalies]
    assert b.counts["windows.partial"] == 1


def incident_events(minutes=150, per_minute=120, service="ent"):
    """A steady service, slowed down and busier from minute 100 to 115."""
    out = []
    for m in range(minutes):
        slow = 6.0 if 100 <= m < 115 else 1.0
        n = per_minute * (2 if 100 <= m < 115 else 1)
        for i in range(n):
            out.append(RequestEvent(T0 + m * 60 + i * 60.0 / n, service, 503 if slow > 1 and i % 7 == 0 else 200,
                                    100.0 * slow + (i % 13), host=f"w{i % 3}", client_ip=f"10.0.{i % 50}.{m % 7}",
                                    country="FR", endpoint=f"/p{i % 5}", user_agent=f"ua{i % 4}"))
    return out


def records(outs):
    return ([a.to_record() for o in outs for a in o.anomalies], [a.to_record() for o in outs for a in o.alerts])


@pytest.mark.parametrize("size", [1, 10, 500, 5000])
def test_process_requests_is_process_request_for_each(size):
    evs = incident_events()
    a, b = Engine(), Engine()
    outs_a = [a.process_request(e) for e in evs] + [a.flush()]
    outs_b = [b.process_requests(evs[i:i + size]) for i in range(0, len(evs), size)] + [b.flush()]
    anomalies, alerts = records(outs_a)
    assert anomalies and alerts
    assert records(outs_b) == (anomalies, alerts)
    assert a.counts == b.counts and a.dirty_states() == b.dirty_states()


def test_batches_of_two_partitions_apart_in_event_time():
    a, b = Engine(), Engine()
    fast = incident_events(service="fast")
    slow = [RequestEvent(e.ts - 600, "slow", e.status, e.latency_ms, host=e.host) for e in incident_events(service="slow")]
    outs_a, outs_b = [], []
    for i in range(0, len(fast), 1000):
        outs_a += [a.process_request(e, source=0) for e in fast[i:i + 1000]]
        outs_a += [a.process_request(e, source=1) for e in slow[i:i + 1000]]
        outs_b += [b.process_requests(fast[i:i + 1000], source=0), b.process_requests(slow[i:i + 1000], source=1)]
    assert records(outs_a) == records(outs_b) and records(outs_a)[1]
    assert a.aggregator.late_events == b.aggregator.late_events == 0
    assert a.aggregator.low_watermark() == b.aggregator.low_watermark()


def test_services_of_a_lost_partition_are_forgotten_and_only_they():
    e = Engine()
    for m in range(5):
        for i in range(60):
            ts = T0 + m * 60 + i
            e.process_requests([RequestEvent(ts, "kept", 200, 100.0, host="w1")], source=0)
            e.process_requests([RequestEvent(ts, "moved", 200, 100.0, host="w2")], source=3)
    assert e.source_of("kept") == 0 and e.source_of("moved") == 3
    assert {"kept", "moved"} <= set(e.traffic) and "moved|w2" in e.latency
    e.mark_resumed({"kept"})
    e.forget_sources({3})
    assert "moved" not in e.traffic and "moved" not in e.latency and "moved|w2" not in e.latency
    assert e.source_of("moved") is None
    assert "kept" in e.traffic and "kept|w1" in e.latency and e.source_of("kept") == 0
    assert e._partial == {"kept"}
    # The lost partition no longer holds the event-time clock (and the alerts' aging) back.
    for m in range(5, 10):
        e.process_requests([RequestEvent(T0 + m * 60 + i, "kept", 200, 100.0, host="w1") for i in range(60)], source=0)
    agg = e.aggregator
    assert agg.source_watermark(3) == -math.inf
    assert agg.low_watermark() == agg.source_watermark(0) - agg.lateness > T0 + 9 * 60


def test_alerts_are_checkpointed_with_their_service_and_deleted_when_they_end():
    from stream.engine import Engine as E

    a = E()
    feed(a, 60)
    feed(a, 5, start=T0 + 60 * 60, per_minute=600, slow=8.0)  # a burst that makes an alert
    states = a.dirty_states()
    alerts = {k: v for k, v in states.items() if k.startswith("alert:")}
    assert alerts and all(k.startswith("alert:ent|") for k in alerts), states.keys()
    fp = next(iter(alerts)).split("|", 1)[1]
    assert fp in a.tracker.active

    b = E()
    for k, v in states.items():
        b.load_state(k, v)
    assert fp in b.tracker.active and b.dirty_states() == {}
    # Handing the service over drops its alert without resolving it.
    a.forget_services({"ent"})
    assert a.tracker.active == {} and a.tracker.tick(T0 + 10**6) == []
    assert a.dirty_states() == {}
    # At the new owner the alert ends in time, and its checkpoint is deleted.
    outs = feed(b, 20, start=T0 + 65 * 60)
    resolved = [al for o in outs for al in o.alerts if al.status == "resolved"]
    assert [al.fingerprint for al in resolved] == [fp]
    assert {k: v for k, v in b.dirty_states().items() if k.startswith("alert:")} == {next(iter(alerts)): None}


def test_drive_signals_shared_between_workers_give_the_disk_diagnosis(sim_recording):
    """Two workers: one reads the drives, the other the requests of the service on that host.

    The requests' worker holds no drive; the drive signals it is sent (as
    records, through JSON) are all it knows, and they are enough to blame
    the failing drive, as one worker reading both would.
    """
    import orjson

    from detectors.diagnosis import DiskSignal
    from detectors.events import decode_disk, decode_requests
    from detectors.timeutil import parse_ts
    from stream.files import iter_lines

    truth = next(t for t in orjson.loads((sim_recording / "truth.json").read_bytes()) if t["cause"] == "disk_failure")
    drives, services = Engine(), Engine()
    sent = []  # (event time it was sent at, record)
    for _, line in iter_lines(str(sim_recording / "disks.jsonl")):
        ev = decode_disk(line)
        for sig in drives.process_disk(ev).signals:
            sent.append((ev.ts, orjson.dumps(sig.to_record())))
    assert any(orjson.loads(r)["disk"] == truth["disk"] for _, r in sent)
    assert drives.disk_signals and not services.disk_signals

    alerts, k = [], 0
    lines = [line for _, line in iter_lines(str(sim_recording / "requests.jsonl.gz"))]
    for i in range(0, len(lines), 2000):
        evs, bad = decode_requests(lines[i:i + 2000])
        while k < len(sent) and sent[k][0] <= evs[0].ts:
            rec = orjson.loads(sent[k][1])
            services.apply_signal(DiskSignal.from_record(rec))
            services.apply_signal(DiskSignal.from_record(rec))  # an echo changes nothing
            k += 1
        alerts += services.process_requests(evs).alerts
    assert services.counts["disk_signals.applied"] == k == len(sent)
    start = parse_ts(truth["start"])
    hits = [a for a in alerts if a.status == "firing" and a.cause == "disk_failure"
            and a.labels["service"] == truth["service"] and start - 60 <= a.starts_at <= start + 300]
    assert hits and hits[0].labels["disk"] == truth["disk"] and hits[0].labels["host"] == truth["host"]
    # The requests' worker never read a disk reading: no drive alert of its own.
    assert not [a for a in alerts if a.labels["service"] is None]


def test_a_drive_signal_is_applied_only_when_it_is_newer():
    from detectors.diagnosis import DiskSignal

    e = Engine()
    first = DiskSignal("db-1", "sda", T0, 0.8, ["smart_5 rose"], "a1")
    later = DiskSignal("db-1", "sda", T0 + 86400, 0.9, ["smart_197 rose"], "a2")
    replaced = DiskSignal("db-1", "sda", T0 + 86400, 0.9, ["smart_197 rose"], "a2", replaced_at=T0 + 2 * 86400)
    other = DiskSignal("db-1", "sdb", T0, 0.7, [], "a3")
    assert e.apply_signal(later) and not e.apply_signal(first)
    assert e.apply_signal(replaced) and not e.apply_signal(later)
    assert e.apply_signal(other)
    held = {s.disk: s for s in e.disk_signals["db-1"]}
    assert held["sda"].replaced_at == T0 + 2 * 86400 and held["sdb"].anomaly_id == "a3"
    assert DiskSignal.from_record(orjson_roundtrip(replaced.to_record())) == replaced
    with pytest.raises((KeyError, TypeError, ValueError)):
        DiskSignal.from_record({"host": "db-1"})


def orjson_roundtrip(rec):
    import orjson

    return orjson.loads(orjson.dumps(rec))
