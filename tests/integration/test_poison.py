"""Poison messages on a real broker: a message just under the broker's size limit, on both input topics.

Its dead letter must fit in a Kafka message (a whole base64 copy would not:
the worker then died on that offset, restarted, and died again for ever),
and the events after it must still be processed.
"""

from __future__ import annotations

import asyncio

import orjson
from kafka import KafkaProducer

from alerts.notify.console import ConsoleReceiver
from stream.app import TocsinApp, wait_until
from stream.runner import DEAD_LETTER_PAYLOAD_MAX
from stream.settings import Config, TopicsConfig

from .test_worker import read_all, synthetic_stream

#: Under Kafka's default message.max.bytes (1,048,588), record overhead included.
NEAR_LIMIT = 1_000_000


def test_messages_just_under_the_broker_limit_are_dead_lettered_and_the_worker_goes_on(
        kafka_bootstrap, unique_names, embedded_broker):
    names = unique_names()
    topics = TopicsConfig(requests=f"{names}-requests", disk_health=f"{names}-disk", anomalies=f"{names}-anomalies",
                          alerts=f"{names}-alerts", dead_letter=f"{names}-dead-letter")
    cfg = Config(topics=topics)
    good = synthetic_stream()[:3000]
    huge_request = b'{"ts": 1617692400, "service": "ent-test", "pad": "' + b"x" * NEAR_LIMIT + b'"}'
    huge_disk = b'{"ts": 1617692400, "host": "h", "disk": "d", "smart": {}, "pad": "' + b"y" * NEAR_LIMIT + b'"}'
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, max_request_size=2 * 1024 * 1024, linger_ms=20)
    producer.send(topics.requests, key=b"ent-test", value=huge_request)
    for ev in good:
        producer.send(topics.requests, key=b"ent-test", value=orjson.dumps(ev))
    producer.send(topics.disk_health, key=b"h", value=huge_disk)
    disk_ok = {"ts": 1617692400, "host": "h", "disk": "d", "smart": {"5": 0}}
    producer.send(topics.disk_health, key=b"h", value=orjson.dumps(disk_ok))
    producer.flush()
    producer.close()

    async def run() -> TocsinApp:
        tapp = TocsinApp(cfg, kafka_bootstrap, embedded=embedded_broker, receivers={"console": ConsoleReceiver()},
                         app_id=f"{names}-app")
        await tapp.app.start()
        try:
            c = tapp.counts
            ok = await wait_until(lambda: c["processed.requests"] + c["dead_letter.requests"] >= len(good) + 1
                                  and c["processed.disk-health"] + c["dead_letter.disk-health"] >= 2, timeout=150)
            assert ok, dict(c)
            assert tapp.crash_reason() is None
        finally:
            await tapp.app.stop()
        return tapp

    tapp = asyncio.run(run())
    assert tapp.counts["processed.requests"] == len(good) and tapp.counts["dead_letter.requests"] == 1
    assert tapp.counts["processed.disk-health"] == 1 and tapp.counts["dead_letter.disk-health"] == 1
    assert not any(k.startswith("send_failed.") for k in tapp.counts), dict(tapp.counts)
    dead = [orjson.loads(m.value) for m in read_all(kafka_bootstrap, topics.dead_letter, 2)]
    assert sorted(d["source"]["topic"] for d in dead) == sorted([topics.requests, topics.disk_health])
    for d in dead:
        assert d["truncated"] is True and d["size"] > NEAR_LIMIT
        assert len(d["payload"]) <= 4 * DEAD_LETTER_PAYLOAD_MAX // 3 + 4
