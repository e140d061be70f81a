"""The Faust-free runner: raw messages in, records out through its ports (no broker)."""

from __future__ import annotations

import base64
from types import SimpleNamespace

import orjson
import pytest

from stream.engine import Engine
from stream.runner import DEAD_LETTER_PAYLOAD_MAX, DictStore, ListOutbox, Runner

T0 = 1617692400.0  # 2021-04-06 07:00 UTC


def msg(offset: int, value: bytes):
    return SimpleNamespace(offset=offset, value=value)


def request(ts: float, status: int = 200, latency: float = 120.0, service: str = "ent") -> bytes:
    return orjson.dumps({"ts": ts, "service": service, "status": status, "latency_ms": latency, "host": "web-1",
                         "client_ip": f"90.1.{int(ts) % 250}.{int(ts * 7) % 250}", "endpoint": "/login"})


def minutes(start: int, stop: int, per_minute: int = 60, **kw) -> list[bytes]:
    return [request(T0 + m * 60 + i * 60 / per_minute, **kw) for m in range(start, stop) for i in range(per_minute)]


def test_bad_messages_are_dead_lettered_with_their_coordinates_and_the_good_ones_processed():
    box = ListOutbox()
    runner = Runner(Engine(), box)
    values = [request(T0), b"{oops", request(T0 + 1, status=700), request(T0 + 2)]
    runner.process_request_records(3, [msg(100 + i, v) for i, v in enumerate(values)])
    dead = [orjson.loads(d) for d in box.dead_letters]
    assert [d["source"] for d in dead] == [
        {"topic": "requests", "partition": 3, "offset": 101}, {"topic": "requests", "partition": 3, "offset": 102}]
    assert [base64.b64decode(d["payload"]) for d in dead] == values[1:3]
    assert runner.counts["processed.requests"] == 2 and runner.counts["dead_letter.requests"] == 2


def test_a_message_close_to_the_kafka_limit_gives_a_dead_letter_that_fits():
    box = ListOutbox()
    runner = Runner(Engine(), box)
    huge = b'{"ts": 1, "service": "' + b"s" * 920_000 + b'"}'
    runner.process_request_records(0, [msg(7, huge), msg(8, request(T0))])
    (value,) = box.dead_letters
    rec = orjson.loads(value)
    assert len(value) < 100_000 < len(huge)  # Kafka's default limit is 1 MB
    assert rec["size"] == len(huge) and rec["truncated"] is True
    assert base64.b64decode(rec["payload"]) == huge[:DEAD_LETTER_PAYLOAD_MAX]
    assert runner.counts["processed.requests"] == 1


def test_a_dead_letter_the_outbox_refuses_is_counted_and_the_runner_goes_on():
    class Refusing(ListOutbox):
        def dead_letter(self, value: bytes) -> None:
            raise RuntimeError("broker said no")

    runner = Runner(Engine(), Refusing())
    runner.process_request_records(0, [msg(0, b"{oops"), msg(1, request(T0))])
    assert runner.counts["dead_letter.failed"] == 1 and runner.counts["processed.requests"] == 1


def test_a_flood_gives_anomalies_and_one_alert_through_the_outbox():
    box = ListOutbox()
    runner = Runner(Engine(), box)
    runner.process_request_records(0, [msg(i, v) for i, v in enumerate(minutes(0, 50, 100))])
    flood = [request(T0 + m * 60 + i * 0.04, status=503, latency=900.0) for m in range(50, 53) for i in range(1500)]
    runner.process_request_records(0, [msg(i, v) for i, v in enumerate(flood)])
    runner.flush()
    assert any(orjson.loads(v)["detector"] == "traffic" for _, v in box.anomalies)
    firing = [orjson.loads(v) for _, v in box.alerts if orjson.loads(v)["status"] == "firing"]
    assert firing and len({a["fingerprint"] for a in firing}) == 1
    assert all(k == orjson.loads(v)["fingerprint"].encode() for k, v in box.alerts)


def test_checkpoints_name_their_source_partition_and_restore_only_the_owned_ones():
    clock = [0.0]
    store = DictStore()
    runner = Runner(Engine(), ListOutbox(), store, partitions=2, checkpoint_interval=5.0, monotonic=lambda: clock[0])
    runner.process_request_records(3, [msg(i, v) for i, v in enumerate(minutes(0, 3, 50))])
    assert runner.maybe_checkpoint() == 0  # not due yet
    clock[0] += 5.0
    assert runner.maybe_checkpoint() > 0
    keys = sorted(k.decode() for k in store.data)
    assert "r3/traffic:ent" in keys and all(k.startswith("r3/") for k in keys)
    assert {p for _, _, p in store.writes} == {1}  # source 3 of a 2-partition table

    other = Runner(Engine(), ListOutbox(), store)
    assert other.restore({0, 1, 2}) == 0 and not other.engine.traffic
    assert other.restore({3}) == len(keys)
    assert other.engine.traffic["ent"].to_bytes() == runner.engine.traffic["ent"].to_bytes()


@pytest.mark.parametrize("value", [b"", b"{}", b'{"ts": 1}', b"\xff"])
def test_bad_disk_messages_go_to_the_dead_letter_port(value):
    box = ListOutbox()
    runner = Runner(Engine(), box)
    runner.process_disk_value(2, 41, value)
    (dead,) = [orjson.loads(d) for d in box.dead_letters]
    assert dead["source"] == {"topic": "disk-health", "partition": 2, "offset": 41}
    assert runner.counts["dead_letter.disk-health"] == 1


def test_a_label_someone_gave_teaches_the_cause_model_of_the_worker_that_holds_the_alert():
    from detectors.cause_model import CauseModel

    box = ListOutbox()
    engine = Engine()
    engine.diagnoser.cause_model = CauseModel.from_table()  # its own: the process-wide one stays untouched
    runner = Runner(engine, box)
    runner.process_request_records(0, [msg(i, v) for i, v in enumerate(minutes(0, 50, 100))])
    flood = [request(T0 + m * 60 + i * 0.04, status=503, latency=900.0) for m in range(50, 53) for i in range(1500)]
    runner.process_request_records(0, [msg(i, v) for i, v in enumerate(flood)])
    fingerprint = orjson.loads(box.alerts[0][1])["fingerprint"]
    label = {"schema": "tocsin.label.v1", "fingerprint": fingerprint, "cause": "capacity_saturation",
             "author": "U024BE7LH", "source": "slack", "ts": "2021-04-06T08:20:00Z"}
    assert runner.apply_label(label) is True
    assert runner.apply_label({**label, "fingerprint": "not-ours"}) is False
    assert runner.apply_label({"fingerprint": 3}) is False
    assert (runner.counts["labels.learnt"], runner.counts["labels.not_held"], runner.counts["labels.unreadable"]) == (1, 1, 1)


def test_the_shared_disk_model_is_checkpointed_and_restored_with_the_drives():
    store = DictStore()
    runner = Runner(Engine(), ListOutbox(), store)
    for day in range(20):
        for d in range(5):
            value = orjson.dumps({"ts": T0 + day * 86400, "host": "db-1", "disk": f"sd{d}", "model": "ST4000DM000",
                                  "smart": {"5": 0, "187": 0, "188": day if d == 0 else 0, "9": 1000 + 24 * day}})
            runner.process_disk_value(1, day * 5 + d, value)
    assert runner.checkpoint() > 0
    assert b"s0/shared:disk" in store.data and b"d1/drive:db-1/sd0" in store.data
    assert runner.checkpoint() == 0  # nothing changed since

    other = Runner(Engine(), ListOutbox(), store)
    other.restore({1})
    assert other.engine.disk_detector.to_bytes() == runner.engine.disk_detector.to_bytes()
    assert other.engine.drives["db-1/sd0"].to_bytes() == runner.engine.drives["db-1/sd0"].to_bytes()


def test_the_cause_model_never_mutes_a_flood_the_rules_name():
    """A 12x flood from hosting networks with half 503s, 35 minutes into a service's life (the
    model's client-mix baselines barely warm): the rules name the attack, and it alerts."""
    from tests.integration.test_broker_restart import two_services

    box = ListOutbox()
    runner = Runner(Engine(), box)
    values = [value for _, value, _ in two_services()]
    for i in range(0, len(values), 500):
        runner.process_request_records(0, [msg(i + j, v) for j, v in enumerate(values[i:i + 500])])
    runner.flush()
    firing = [orjson.loads(v) for _, v in box.alerts if orjson.loads(v)["status"] == "firing"]
    assert [(a["cause"], a["labels"]["service"]) for a in firing] == [("suspected_attack", "ent-a")]
