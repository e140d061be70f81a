"""Drive signals reach every worker through Kafka.

The disk-health topic is keyed by host, the requests topic by service: with
two workers, the one that reads a failing drive is often not the one that
diagnoses the services on its host. The drive's signal goes to the internal
``<app id>-drive-signals`` topic, which every worker reads whole.
"""

from __future__ import annotations

import asyncio

import orjson
from kafka import KafkaProducer

from stream.app import TocsinApp, wait_until
from stream.settings import Config, TopicsConfig
from stream.worker import declare_topics


def _assigned(tapp: TocsinApp, topic: str) -> set[int]:
    try:
        return {tp.partition for tp in tapp.app.consumer.assignment() if tp.topic == topic}
    except Exception:  # noqa: BLE001 - not started yet
        return set()


def _signal(tapp: TocsinApp, host: str, disk: str):
    return next((s for s in tapp.engine.disk_signals.get(host, []) if s.disk == disk), None)


def test_a_drive_signal_reaches_the_worker_that_does_not_read_the_drive(kafka_bootstrap, embedded_broker, unique_names,
                                                                      sim_recording):
    truth = next(t for t in orjson.loads((sim_recording / "truth.json").read_bytes()) if t["cause"] == "disk_failure")
    host, disk = truth["host"], truth["disk"]
    readings = [line for line in (sim_recording / "disks.jsonl").read_bytes().splitlines()
                if orjson.loads(line)["host"] == host]
    names = unique_names()
    topics = TopicsConfig(requests=f"{names}-r", disk_health=f"{names}-d", anomalies=f"{names}-a",
                          alerts=f"{names}-al", dead_letter=f"{names}-dl", silences=f"{names}-s")
    embedded = embedded_broker
    app_id = f"{names}-app"

    def worker(topics: TopicsConfig) -> TocsinApp:
        return TocsinApp(Config(topics=topics), kafka_bootstrap, embedded=embedded, receivers={}, app_id=app_id)

    declare_topics(Config(topics=topics), kafka_bootstrap)  # as `tocsin worker` does

    async def run() -> None:
        a, b = worker(topics), worker(topics)
        await a.app.start()
        await b.app.start()
        try:
            # The disk-health partitions are shared out between the two.
            n = a.config.kafka.partitions
            assert await wait_until(lambda: (_assigned(a, topics.disk_health) | _assigned(b, topics.disk_health)
                                             == set(range(n)) and not _assigned(a, topics.disk_health)
                                             & _assigned(b, topics.disk_health)
                                             and _assigned(a, topics.disk_health)
                                             and _assigned(b, topics.disk_health)), timeout=60)
            producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
            for line in readings:
                producer.send(topics.disk_health, key=host.encode(), value=line)
            producer.flush()
            producer.close()
            assert await wait_until(lambda: a.engine.counts["disk_readings"] + b.engine.counts["disk_readings"]
                                    >= len(readings), timeout=60)
            # One worker read every reading of the host (one key, one partition)...
            reader, other = (a, b) if a.engine.counts["disk_readings"] else (b, a)
            assert other.engine.counts["disk_readings"] == 0 and not other.engine.drives
            flagged = _signal(reader, host, disk)  # flagged for days, then replaced
            assert flagged is not None and flagged.replaced_at is not None
            # ...and the other holds the same signal, from the drive-signals topic.
            assert await wait_until(lambda: _signal(other, host, disk) == _signal(reader, host, disk), timeout=30)
            assert other.engine.counts["disk_signals.applied"] >= 1
        finally:
            await b.app.stop()
            await a.app.stop()

    asyncio.run(run())
