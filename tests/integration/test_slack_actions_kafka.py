"""Acting from Slack, end to end through Kafka: a worker, its request URL, the fake Slack.

A flood alert goes on the alerts topic; the worker notifies the fake Slack
(a thread with the action buttons on its parent); a signed "Silence 1 h"
click on the worker's ``POST /slack/actions`` makes a silence on the
silences topic, authored by the Slack user; the group's next change is not
notified; the silence is listed by ``GET /api/v2/silences`` (and by the real
``amtool silence query`` when installed); a "wrong cause: capacity
saturation" click lands on the ``labels`` topic, keyed by fingerprint; an
"Acknowledge" click lands on the ``acks`` topic and is read back by the
worker.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from alerts.config import AlertingConfig
from alerts.model import Alert
from alerts.notify.slack import SlackReceiver
from alerts.secret import Secret
from detectors.configfile import load_model_text
from stream.app import TocsinApp, wait_until
from stream.broker import free_port
from stream.settings import Config, SlackActionsConfig, TopicsConfig, WebConfig
from stream.worker import declare_topics
from tests.alerts.fake_slack_app import FORGED_SECRET, SIGNING_SECRET, FakeSlackApp, block_actions

ONCALL = "U024BE7LH"
AMTOOL = shutil.which("amtool")
ALERTING = """
receivers:
  - {name: oncall, slack: {channel: alerts, token_env: UNUSED_SLACK_TOKEN, actions: true}}
route:
  receiver: oncall
  group_by: [service]
  group_wait: 1s
  group_interval: 2s
  repeat_interval: 1h
"""



def test_slack_clicks_through_kafka(kafka_bootstrap, embedded_broker, unique_names, monkeypatch):
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    names = unique_names()
    topics = TopicsConfig(requests=f"{names}-r", disk_health=f"{names}-d", anomalies=f"{names}-a",
                          alerts=f"{names}-alerts", dead_letter=f"{names}-dl", silences=f"{names}-s",
                          labels=f"{names}-labels", acks=f"{names}-acks")
    port = free_port()

    async def run() -> None:
        fake = await FakeSlackApp().start()
        monkeypatch.setenv("SLACK_SIGNING_SECRET", SIGNING_SECRET)
        monkeypatch.setenv("SLACK_BOT_TOKEN", fake.token)
        cfg = Config(topics=topics, web=WebConfig(port=port), alerting=load_model_text(ALERTING, AlertingConfig),
                     slack_actions=SlackActionsConfig(enabled=True, api_url=fake.base_url, allowed_users=[ONCALL]))
        slack = SlackReceiver(Secret(fake.token), "alerts", base_url=fake.base_url, name="oncall", timeout=5, actions=True)
        tapp = TocsinApp(cfg, kafka_bootstrap, embedded=embedded_broker, receivers={"oncall": slack},
                         app_id=f"{names}-app", web=True)
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
        labels = AIOKafkaConsumer(topics.labels, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest",
                                  group_id=f"{names}-labels-reader")
        learned: list[tuple[str, str]] = []  # stands for the cause model's learn_label
        tapp.notifications.label_listeners.append(lambda rec: learned.append((rec["fingerprint"], rec["cause"])))
        base = f"http://127.0.0.1:{port}"
        try:
            declare_topics(cfg, kafka_bootstrap)
            await tapp.app.start()
            await producer.start()

            async def send(a: Alert) -> None:
                await producer.send_and_wait(topics.alerts, key=a.fingerprint.encode(), value=orjson.dumps(a.to_record()))

            now = time.time()
            flood = Alert({"service": "ent-grand-est", "host": None, "disk": None}, "firing", "critical",
                          "Traffic 8.2x usual on ent-grand-est: suspected attack", "suspected_attack", 0.86, now)
            await send(flood)
            assert await wait_until(lambda: len(fake.top_level()) == 1, timeout=40), fake.calls
            [root] = fake.top_level()
            assert await wait_until(lambda: tapp.app.web._runner is not None, timeout=20)

            # A forged click changes nothing; the signed one silences the group for 1 h.
            url = f"{base}/slack/actions"
            status, _ = await fake.click(url, block_actions(root, "tocsin_silence_1h", ONCALL), secret=FORGED_SECRET)
            assert status == 401 and len(tapp.silences) == 0
            status, answer = await fake.click(url, block_actions(root, "tocsin_silence_1h", ONCALL))
            assert status == 200, answer
            [silence] = list(tapp.silences)
            assert silence.created_by == ONCALL and [str(m) for m in silence.matchers] == ['service="ent-grand-est"']
            assert round(silence.ends_at - silence.starts_at) == 3600

            # The group changes (a second alert joins it): nothing more is notified.
            posted = len(fake.calls_to("chat.postMessage"))
            worse = Alert({"service": "ent-grand-est", "host": "web-3", "disk": None}, "firing", "critical",
                          "Latency 9x usual on ent-grand-est web-3", "suspected_attack", 0.9, time.time())
            await send(worse)
            assert await wait_until(lambda: tapp.notifier.counts["muted.oncall"] >= 2, timeout=30), \
                tapp.notifier.counts
            await asyncio.sleep(3)  # more than a group_interval
            receiver_posts = [c for c in fake.calls_to("chat.postMessage")[posted:]
                              if "silenced" not in (c.json.get("text") or "")]
            assert receiver_posts == [] and not root.edits, [c.json for c in receiver_posts]

            # Visible to Alertmanager's API, and so to amtool.
            async with aiohttp.ClientSession() as http, http.get(f"{base}/api/v2/silences") as r:
                listed = await r.json()
            assert [(s["id"], s["createdBy"], s["status"]["state"]) for s in listed] == [
                (silence.id, ONCALL, "active")]
            if AMTOOL:
                p = await asyncio.create_subprocess_exec(
                    AMTOOL, f"--alertmanager.url={base}", "silence", "query", "-q", "service=ent-grand-est",
                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                    env={**os.environ, "HOME": "/nonexistent"})
                out, err = await asyncio.wait_for(p.communicate(), timeout=60)
                assert p.returncode == 0 and out.decode().split() == [silence.id], err

            # "Wrong cause": capacity saturation, on the labels topic keyed by fingerprint.
            status, _ = await fake.click(url, block_actions(root, "tocsin_wrong_cause", ONCALL,
                                                            option="capacity_saturation"))
            assert status == 200
            await labels.start()
            got = await asyncio.wait_for(labels.getone(), timeout=30)
            assert got.key == flood.fingerprint.encode()
            rec = orjson.loads(got.value)
            assert {k: rec[k] for k in ("schema", "fingerprint", "cause", "author", "source")} == {
                "schema": "tocsin.label.v1", "fingerprint": flood.fingerprint, "cause": "capacity_saturation",
                "author": ONCALL, "source": "slack"}
            # Read back from the topic by the worker, handed to its label listeners.
            assert await wait_until(lambda: learned == [(flood.fingerprint, "capacity_saturation")], timeout=30)

            # Acknowledge: on the acks topic, read back by the worker (as every worker does).
            button = next(e for b in root.blocks if b["type"] == "actions" for e in b["elements"]
                          if e["action_id"] == "tocsin_ack")
            group_key = orjson.loads(button["value"])["g"]
            applied = tapp.counts["acks.applied"]
            status, _ = await fake.click(url, block_actions(root, "tocsin_ack", ONCALL))
            assert status == 200
            assert await wait_until(lambda: tapp.counts["acks.applied"] > applied, timeout=30)
            ack = tapp.notifications.acks.get(group_key, time.time())
            assert ack is not None and ack.author == ONCALL
            assert tapp.notifications.acks.mutes_reminder(group_key, time.time())
            assert "acknowledged by <@U024BE7LH>" in str(root.blocks)

            # "Until resolved": the worker that reads the flood resolving expires that silence and ends the ack.
            status, _ = await fake.click(url, block_actions(root, "tocsin_silence_resolved", ONCALL))
            assert status == 200
            [until] = [s for s in tapp.silences if s.id != silence.id]
            assert until.state(time.time()) == "active"
            await send(flood.resolved(time.time()))
            assert await wait_until(lambda: tapp.silences.get(until.id).state(time.time()) == "expired", timeout=30)
            assert await wait_until(lambda: not tapp.notifications.acks.mutes_reminder(group_key, time.time()),
                                    timeout=30)
            assert tapp.silences.get(silence.id).state(time.time()) == "active"  # the 1 h one runs on
        finally:
            await labels.stop()
            await producer.stop()
            await tapp.app.stop()
            await tapp.close_receivers()
            await fake.stop()
        crashed = [a._crash_reason for a in tapp.app.agents.values() if a._crash_reason]
        assert not crashed, crashed

    asyncio.run(run())


def test_socket_mode_worker_acts_without_an_inbound_port(kafka_bootstrap, embedded_broker, unique_names,
                                                         monkeypatch):
    """``socket_mode: true, http: false``: no request URL, the clicks come down the worker's own websocket."""
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    names = unique_names()
    topics = TopicsConfig(requests=f"{names}-r", disk_health=f"{names}-d", anomalies=f"{names}-a",
                          alerts=f"{names}-alerts", dead_letter=f"{names}-dl", silences=f"{names}-s",
                          labels=f"{names}-labels", acks=f"{names}-acks")
    port = free_port()

    async def run() -> None:
        fake = await FakeSlackApp(user_groups={"S0ONCALL": [ONCALL]}).start()
        monkeypatch.setenv("SLACK_APP_TOKEN", fake.app_token)
        monkeypatch.setenv("SLACK_BOT_TOKEN", fake.token)
        monkeypatch.delenv("SLACK_SIGNING_SECRET", raising=False)
        cfg = Config(topics=topics, web=WebConfig(port=port), alerting=load_model_text(ALERTING, AlertingConfig),
                     slack_actions=SlackActionsConfig(enabled=True, http=False, socket_mode=True,
                                                      api_url=fake.base_url, allowed_user_groups=["S0ONCALL"]))
        slack = SlackReceiver(Secret(fake.token), "alerts", base_url=fake.base_url, name="oncall", timeout=5, actions=True)
        tapp = TocsinApp(cfg, kafka_bootstrap, embedded=embedded_broker, receivers={"oncall": slack},
                         app_id=f"{names}-app", web=True)
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
        try:
            declare_topics(cfg, kafka_bootstrap)
            await tapp.app.start()
            await producer.start()
            flood = Alert({"service": "ent-idf", "host": None, "disk": None}, "firing", "critical",
                          "Traffic 6x usual on ent-idf: suspected attack", "suspected_attack", 0.8, time.time())
            await producer.send_and_wait(topics.alerts, key=flood.fingerprint.encode(),
                                         value=orjson.dumps(flood.to_record()))
            assert await wait_until(lambda: len(fake.top_level()) == 1 and bool(fake.sockets), timeout=40)
            [root] = fake.top_level()
            # No request URL on this worker.
            status, _ = await fake.click(f"http://127.0.0.1:{port}/slack/actions",
                                         block_actions(root, "tocsin_silence_4h", ONCALL))
            assert status == 404 and len(tapp.silences) == 0
            await fake.send_interactive(block_actions(root, "tocsin_silence_4h", ONCALL))
            assert await wait_until(lambda: len(tapp.silences) == 1, timeout=20)
            [silence] = list(tapp.silences)
            assert silence.created_by == ONCALL and round(silence.ends_at - silence.starts_at) == 4 * 3600
            assert tapp.notifier.silencer.mutes({"service": "ent-idf"}, time.time())
        finally:
            await producer.stop()
            await tapp.app.stop()
            await tapp.close_receivers()
            await fake.stop()

    asyncio.run(run())
