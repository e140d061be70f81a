"""The simulator's Kafka sink on a real broker."""

from kafka import KafkaConsumer

from detectors.errors import InvalidEvent
from detectors.events import decode_disk, decode_request
from stream.tools import simulator as sim
from stream.tools.simulator import Scenario


def test_send_to_kafka_counts_and_decodes(kafka_bootstrap, unique_names):
    broker = kafka_bootstrap
    sc = Scenario(seed=5, history_days=0, scale=0.5)
    rt, dt = unique_names("sim-req"), unique_names("sim-disk")
    counts = sim.send_to_kafka(sc, broker, rt, dt, start_at="2021-04-06T06:00:00Z",
                               end_at="2021-04-06T06:20:00Z", malformed_ratio=0.02)
    assert counts["malformed"] == sum(counts["malformed_by_kind"].values()) > 0
    consumer = KafkaConsumer(rt, dt, bootstrap_servers=broker, auto_offset_reset="earliest",
                             consumer_timeout_ms=5000)
    ok = bad = 0
    for m in consumer:
        try:
            (decode_request if m.topic == rt else decode_disk)(m.value)
            ok += 1
        except InvalidEvent:
            bad += 1
    consumer.close()
    assert ok == counts["requests"] + counts["disk-health"]
    assert bad == counts["malformed"]
