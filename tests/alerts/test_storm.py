"""An alert storm on one service: tracker -> grouping -> pipeline -> fake Slack over HTTP."""

from __future__ import annotations

import random

from alerts.config import AlertingConfig
from alerts.lifecycle import AlertTracker
from alerts.model import Evidence
from alerts.notify.notifier import AlertNotifier
from alerts.notify.slack import SlackReceiver
from alerts.secret import Secret
from detectors.configfile import load_model_text
from detectors.diagnosis import Finding
from tests.alerts.conftest import T0

CFG = load_model_text("""
receivers:
  - {name: oncall, slack: {channel: alerts}}
route:
  receiver: oncall
  group_by: [service]
  group_wait: 30s
  group_interval: 5m
  repeat_interval: 4h
""", AlertingConfig)


def storm(n=1000, seconds=60.0, seed=7):
    """``n`` anomalies on one service in ``seconds``: unknown at first, then a clear attack."""
    rng = random.Random(seed)
    times = sorted(T0 + rng.uniform(0, seconds) for _ in range(n))
    for i, ts in enumerate(times):
        attack = ts - T0 >= 40
        yield Finding(
            labels={"service": "ent-grand-est", "host": None, "disk": None},
            cause="suspected_attack" if attack else "unknown",
            confidence=0.9 if attack else 0.4,
            severity="critical" if attack else "warning",
            title="Traffic 8x usual on ent-grand-est" + (": suspected attack" if attack else ""),
            evidence=[Evidence("request_rate", 800.0 + rng.random(), 99.0, "800 req/s against 99 usual")],
            anomalies=[f"an-{i}"],
            ts=ts,
        )


async def test_storm_of_1000_anomalies_makes_one_thread_of_at_most_3_messages(fake_slack):
    slack = SlackReceiver(Secret(fake_slack.token), "alerts", base_url=fake_slack.base_url, name="oncall")
    notifier = AlertNotifier(CFG, {"oncall": slack}, {}, groups={})
    tracker = AlertTracker(pending_for=0.0, keep_firing_for=300.0)
    changes = 0
    clock = T0
    for f in storm():
        while clock < f.ts:  # the worker's timer, once a second
            await notifier.flush(clock)
            clock += 1.0
        for a in tracker.observe(f):
            changes += 1
            await notifier.receive(a, f.ts)
    end = T0 + 1800
    while clock < end:
        for a in tracker.tick(clock):
            changes += 1
            await notifier.receive(a, clock)
        await notifier.flush(clock)
        clock += 1.0
    await slack.aclose()

    assert changes >= 3  # firing, an update (attack, critical), resolved
    posts = fake_slack.calls_to("chat.postMessage")
    assert 1 <= len(posts) <= 3, [p.json.get("text") for p in posts]
    roots = fake_slack.top_level()
    assert len(roots) == 1, "one thread per incident"
    root = roots[0]
    assert all(m.thread_ts == root.ts for m in fake_slack.messages.values() if m is not root)
    # The parent is kept up to date (edited with the cause update), and the
    # thread ends with its resolve edit.
    updates = fake_slack.calls_to("chat.update")
    assert 1 <= len(updates) <= 2 and all(u.json["ts"] == root.ts for u in updates)
    assert root.text.startswith("[RESOLVED")
    after = fake_slack.calls[fake_slack.calls.index(updates[-1]) + 1 :]
    assert all("resolved" in c.json.get("text", "").lower() for c in after)
    assert not [c for c in fake_slack.calls if c.outcome != "ok"]
    assert notifier.dispatcher.groups == {}  # the resolved incident left its group


async def test_a_storm_that_settles_within_group_wait_is_one_message(fake_slack, make_alert):
    import dataclasses

    slack = SlackReceiver(Secret(fake_slack.token), "alerts", base_url=fake_slack.base_url, name="oncall")
    notifier = AlertNotifier(CFG, {"oncall": slack}, {}, groups={})
    a = make_alert(severity="warning", cause="unknown", starts_at=T0)
    await notifier.receive(a, T0)
    await notifier.receive(dataclasses.replace(a, severity="critical", cause="suspected_attack"), T0 + 10)
    for t in range(0, 29):
        await notifier.flush(T0 + t)
    assert fake_slack.calls == []  # group_wait
    await notifier.flush(T0 + 30)
    assert len(fake_slack.calls_to("chat.postMessage")) == 1
    assert "SUSPECTED ATTACK" in fake_slack.top_level()[0].text.upper() or "suspected attack" in fake_slack.top_level()[0].text
    await slack.aclose()


async def test_a_restarted_worker_continues_the_thread_and_sends_nothing_twice(fake_slack, make_alert):
    deliveries: dict[str, bytes] = {}
    groups: dict[str, bytes] = {}
    slack = SlackReceiver(Secret(fake_slack.token), "alerts", base_url=fake_slack.base_url, name="oncall")
    first = AlertNotifier(CFG, {"oncall": slack}, deliveries, groups=groups)
    a = make_alert(starts_at=T0)
    await first.receive(a, T0)
    await first.flush(T0 + 30)
    assert len(fake_slack.top_level()) == 1
    await slack.aclose()
    # The worker dies; a new one restores groups and the log, and the alerts topic is replayed.
    slack2 = SlackReceiver(Secret(fake_slack.token), "alerts", base_url=fake_slack.base_url, name="oncall")
    second = AlertNotifier(CFG, {"oncall": slack2}, deliveries, groups=groups)
    assert second.restore() == 1
    await second.receive(a, T0 + 40)  # replayed
    await second.flush(T0 + 330)
    assert len(fake_slack.calls_to("chat.postMessage")) == 1
    await second.receive(a.resolved(T0 + 400), T0 + 400)
    await second.flush(T0 + 630)
    await slack2.aclose()
    assert len(fake_slack.top_level()) == 1
    assert len(fake_slack.calls_to("chat.update")) == 1
    assert fake_slack.top_level()[0].text.startswith("[RESOLVED")
    assert groups == {}
