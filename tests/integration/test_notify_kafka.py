"""Alert routing end to end through Kafka: alert records in the alerts topic, real TocsinApp
workers (one, or two in one consumer group), the fake Slack Web API over HTTP.

Several alerts of one group whose fingerprints hash to different partitions
of a 4-partition alerts topic must make one Slack thread (the notify agent
repartitions them by group key), an inhibited alert is never posted, and the
resolve edits the thread's parent.
"""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from alerts.config import AlertingConfig
from alerts.model import Alert
from alerts.notify.slack import SlackReceiver
from alerts.secret import Secret
from detectors.configfile import load_model_text
from stream.app import TocsinApp, wait_until
from stream.broker import default_partition
from stream.settings import Config, TopicsConfig
from stream.worker import declare_topics
from tests.alerts.fake_slack import FakeSlack

PARTITIONS = 4

ALERTING = """
receivers:
  - {name: oncall, slack: {channel: alerts, token_env: UNUSED_SLACK_TOKEN}}
route:
  receiver: oncall
  group_by: [service]
  group_wait: 2s
  group_interval: 2s
  repeat_interval: 1h
inhibit_rules:
  - source_matchers: ['cause="disk_failure"']
    target_matchers: ['cause="unknown"']
    equal: [host]
"""


def partition_of(fp: str) -> int:
    """The partition the default partitioner (murmur2, as Faust's and kafka-python's) picks."""
    return default_partition(fp.encode(), PARTITIONS)


def ent_alerts(now: float) -> list[Alert]:
    """Three alerts of the group service=ent, on at least two partitions of the alerts topic."""
    out, parts = [], set()
    for i in range(40):
        a = Alert({"service": "ent", "host": f"web-{i}", "disk": None}, "firing", "critical",
                  f"Saturation of ent on web-{i}", "capacity_saturation", 0.8, now)
        p = partition_of(a.fingerprint)
        if p not in parts or len(out) == 2 and len(parts) == 1:
            out.append(a)
            parts.add(p)
        if len(out) == 3 and len(parts) >= 2:
            return out
    raise AssertionError("no fingerprints on different partitions")


@pytest.mark.parametrize("workers", [1, 2])
def test_one_thread_per_group_through_kafka(kafka_bootstrap, embedded_broker, unique_names, monkeypatch, workers):
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    embedded = embedded_broker
    names = unique_names()
    topics = TopicsConfig(requests=f"{names}-r", disk_health=f"{names}-d", anomalies=f"{names}-a",
                          alerts=f"{names}-alerts", dead_letter=f"{names}-dl", silences=f"{names}-s")
    cfg = Config(topics=topics, alerting=load_model_text(ALERTING, AlertingConfig))
    assert cfg.kafka.partitions == PARTITIONS

    async def run() -> tuple[FakeSlack, list[Alert], Alert, Alert, float]:
        started = time.monotonic()
        fake = await FakeSlack().start()
        apps = []
        for _ in range(workers):
            slack = SlackReceiver(Secret(fake.token), "alerts", base_url=fake.base_url, name="oncall", timeout=5)
            apps.append(TocsinApp(cfg, kafka_bootstrap, embedded=embedded, receivers={"oncall": slack},
                                  app_id=f"{names}-app"))
        try:
            declare_topics(cfg, kafka_bootstrap)  # as `tocsin worker` does
            for tapp in apps:
                await tapp.app.start()
            groups_topic = apps[0].notifications.groups_topic.get_topic_name()

            def owned() -> list[set[int]]:
                return [{tp.partition for tp in t.app.consumer.assignment() if tp.topic == groups_topic}
                        for t in apps]

            # Every worker holds part of the group state before alerts come.
            assert await wait_until(lambda: all(owned()) and set().union(*owned()) == set(range(PARTITIONS)),
                                    timeout=120), owned()
            if workers == 2:
                assert not owned()[0] & owned()[1]

            now = time.time()
            ent = ent_alerts(now)
            disk = Alert({"service": "files", "host": "db-1", "disk": "Z1"}, "firing", "critical",
                         "Disk Z1 failing on db-1", "disk_failure", 0.9, now)
            muted = Alert({"service": "portal", "host": "db-1", "disk": None}, "firing", "warning",
                          "Slow portal on db-1", "unknown", 0.4, now)
            producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
            await producer.start()
            try:
                async def send(a: Alert) -> None:
                    # Exactly what TocsinApp.emit writes: key = fingerprint, the CONTRACT record.
                    await producer.send_and_wait(topics.alerts, key=a.fingerprint.encode(),
                                                 value=orjson.dumps(a.to_record()))

                await send(disk)  # the source first: every worker's inhibitor learns it
                for a in [muted, *ent]:
                    await send(a)
                assert await wait_until(lambda: len(fake.top_level()) >= 2, timeout=60)
                await asyncio.sleep(3)  # a group_interval more: nothing else may come
                end = time.time()
                for a in ent:
                    await send(a.resolved(end))
                assert await wait_until(lambda: any(m.edits and m.text.startswith("[RESOLVED")
                                                    for m in fake.top_level()), timeout=60)
                await asyncio.sleep(3)
            finally:
                await producer.stop()
        finally:
            for tapp in reversed(apps):
                await tapp.app.stop()
                await tapp.close_receivers()
            await fake.stop()
        crashed = [a._crash_reason for t in apps for a in t.app.agents.values() if a._crash_reason]
        assert not crashed, crashed
        return fake, ent, disk, muted, time.monotonic() - started

    fake, ent, disk, muted, took = asyncio.run(run())
    assert len({partition_of(a.fingerprint) for a in ent}) >= 2  # the group was split on the alerts topic

    roots = fake.top_level()
    assert len(roots) == 2, [m.text for m in roots]  # one thread per group: ent and files; portal muted
    [ent_root] = [m for m in roots if "ent on web" in m.text]
    [disk_root] = [m for m in roots if "Disk Z1" in m.text]
    assert "(+2 more alerts)" in (ent_root.edits[0]["text"] if ent_root.edits else ent_root.text)
    # Nothing in the ent thread but its resolve; nothing at all about the inhibited alert.
    ent_replies = fake.replies(ent_root.ts)
    assert len(ent_replies) == 1 and ent_replies[0].text.count("*Resolved:*") == 3
    assert ent_root.text.startswith("[RESOLVED") and len(ent_root.edits) == 1
    assert fake.replies(disk_root.ts) == [] and not disk_root.edits
    assert all(muted.title not in (c.json.get("text") or "") + str(c.json.get("blocks")) for c in fake.calls)
    assert not [c for c in fake.calls if c.outcome != "ok"]
    assert len(fake.calls_to("chat.postMessage")) == 3 and len(fake.calls_to("chat.update")) == 1
    assert took < 60, f"{took:.1f} s"
