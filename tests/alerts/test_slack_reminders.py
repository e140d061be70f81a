"""Slack bot on repeat_interval: reminders in the incident's thread, the parent kept up to date.

Grouping, pipeline and SlackReceiver against the fake Slack over HTTP, time
passed in (the worker's one-second timer is a loop over ``now``).
"""

from __future__ import annotations

import dataclasses

import pytest

from alerts.config import AlertingConfig
from alerts.model import Alert
from alerts.notify.notifier import AlertNotifier
from alerts.notify.slack import SlackReceiver
from alerts.secret import Secret
from detectors.configfile import load_model_text
from tests.alerts.conftest import T0

HOUR = 3600.0

CFG = """
receivers:
  - {name: oncall, slack: {channel: alerts}}
route:
  receiver: oncall
  group_by: [service]
  group_wait: 30s
  group_interval: 5m
  repeat_interval: 1h
inhibit_rules:
  - source_matchers: ['cause="disk_failure"']
    target_matchers: ['cause="unknown"']
    equal: [host]
"""


def alert(host: str, cause: str = "capacity_saturation", severity: str = "critical", at: float = T0,
          service: str = "ent") -> Alert:
    return Alert({"service": service, "host": host, "disk": None}, "firing", severity,
                 f"{cause} on {service}/{host}", cause, 0.8, at)


@pytest.fixture
async def notifier_factory(fake_slack):
    made: list[SlackReceiver] = []

    def make(deliveries=None, groups=None, **slack_kw) -> AlertNotifier:
        slack = SlackReceiver(Secret(fake_slack.token), "alerts", base_url=fake_slack.base_url, name="oncall",
                              **slack_kw)
        made.append(slack)
        cfg = load_model_text(CFG, AlertingConfig)
        return AlertNotifier(cfg, {"oncall": slack}, {} if deliveries is None else deliveries,
                             groups={} if groups is None else groups)

    yield make
    for s in made:
        await s.aclose()


async def run(notifier: AlertNotifier, start: float, end: float, step: float = 60.0) -> None:
    t = start
    while t < end:
        await notifier.flush(t)
        t += step


def reminders(fake) -> list:
    return [c for c in fake.calls_to("chat.postMessage") if "Reminder" in c.json.get("text", "")]


async def test_a_group_firing_past_repeat_interval_gets_one_reminder_reply_per_interval_and_none_after_resolve(
        fake_slack, notifier_factory):
    n = notifier_factory()
    a, b = alert("web-1"), alert("web-2")  # one group (service ent), two fingerprints
    await n.receive(a, T0)
    await n.receive(b, T0 + 5)
    await run(n, T0, T0 + 3 * HOUR + 600)  # 3 h 10 min of an unchanged incident

    [root] = fake_slack.top_level()
    assert root.thread_ts is None and "(+1 more alerts)" in root.text
    got = reminders(fake_slack)
    # First flush at group_wait (T0+30); reminders when repeat_interval has passed,
    # at the next group_interval tick: 1 h, 2 h and 3 h later.
    assert len(got) == 3
    assert all(c.json["thread_ts"] == root.ts for c in got)
    assert all("reply_broadcast" not in c.json for c in got)  # stays in the thread by default
    assert "still firing after 1h" in got[0].json["text"] and "still firing after 3h" in got[2].json["text"]
    # The parent says how long it has been firing (edited before each reminder).
    edits = fake_slack.calls_to("chat.update")
    assert len(edits) == 3 and all(e.json["ts"] == root.ts for e in edits)
    assert "still firing after 3h" in str(root.all_blocks) and "3 reminders in the thread" in str(root.all_blocks)
    assert fake_slack.replies(root.ts) and len(fake_slack.top_level()) == 1

    # Resolved: the parent is edited, one reply closes the thread, and then silence.
    end = T0 + 3 * HOUR + 600
    await n.receive(a.resolved(end), end)
    await n.receive(b.resolved(end + 1), end + 1)
    before = len(fake_slack.calls)
    await run(n, end + 1, end + 5 * HOUR)
    closing = fake_slack.calls[before:]
    assert [c.method for c in closing] == ["chat.update", "chat.postMessage"]
    assert root.text.startswith("[RESOLVED")
    assert closing[1].json["thread_ts"] == root.ts and closing[1].json["text"].count("*Resolved:*") == 2
    assert len(reminders(fake_slack)) == 3
    assert n.dispatcher.groups == {}
    assert not [c for c in fake_slack.calls if c.outcome != "ok"]


async def test_a_change_is_one_reply_and_the_next_reminder_waits_a_full_repeat_interval(fake_slack, notifier_factory):
    n = notifier_factory()
    a = alert("web-1")
    await n.receive(a, T0)
    await run(n, T0, T0 + 1800)
    # 30 min in, another host of the service joins and the first alert's cause changes.
    await n.receive(alert("web-2", at=T0 + 1800), T0 + 1800)
    await n.receive(dataclasses.replace(a, cause="suspected_attack", title="attack on ent/web-1"), T0 + 1800)
    await run(n, T0 + 1800, T0 + 1800 + 900)
    [root] = fake_slack.top_level()
    [change] = [m for m in fake_slack.replies(root.ts)]
    assert "New in this incident" in change.text and "Update:" in change.text  # both in one reply
    assert "2 alerts firing in this incident" in str(root.all_blocks)
    assert reminders(fake_slack) == []
    # The change was the last message: the reminder comes 1 h after it, not 1 h after the first post.
    await run(n, T0 + 2700, T0 + 1800 + HOUR - 60)
    assert reminders(fake_slack) == []
    await run(n, T0 + 1800 + HOUR - 60, T0 + 1800 + HOUR + 301)
    assert len(reminders(fake_slack)) == 1


async def test_reminder_broadcast_is_opt_in(fake_slack, notifier_factory):
    n = notifier_factory(reminder_broadcast=True)
    await n.receive(alert("web-1"), T0)
    await run(n, T0, T0 + HOUR + 400)
    [r] = reminders(fake_slack)
    assert r.json["reply_broadcast"] is True
    assert len(fake_slack.top_level()) == 1  # a broadcast reply is still a reply in the thread
    assert "reply_broadcast" not in fake_slack.calls_to("chat.postMessage")[0].json


def test_reminder_broadcast_is_read_from_the_configuration():
    from alerts.notify.factory import build_receivers

    cfg = load_model_text("""
receivers: [{name: oncall, slack: {channel: alerts, token_file: /dev/null, reminder_broadcast: true}}]
route: {receiver: oncall}
""", AlertingConfig)
    assert build_receivers(cfg)["oncall"].reminder_broadcast is True


async def test_an_inhibited_alert_never_reaches_the_thread(fake_slack, notifier_factory):
    n = notifier_factory()
    disk = Alert({"service": "ent", "host": "web-1", "disk": "Z1"}, "firing", "critical", "disk Z1 failing",
                 "disk_failure", 0.9, T0)
    slow = alert("web-1", cause="unknown", severity="warning")
    await n.receive(disk, T0)
    await n.receive(slow, T0 + 1)
    await run(n, T0, T0 + 2 * HOUR)
    texts = [c.json.get("text", "") for c in fake_slack.calls]
    assert len(fake_slack.top_level()) == 1
    assert all("unknown on ent/web-1" not in t for t in texts)
    assert "more alerts" not in fake_slack.top_level()[0].text


async def test_a_restarted_worker_neither_reposts_nor_reminds_twice(fake_slack, notifier_factory):
    deliveries: dict[str, bytes] = {}
    groups: dict[str, bytes] = {}
    first = notifier_factory(deliveries, groups)
    a = alert("web-1")
    await first.receive(a, T0)
    await run(first, T0, T0 + HOUR + 400)
    assert len(reminders(fake_slack)) == 1
    second = notifier_factory(deliveries, groups)
    assert second.restore() == 1
    await second.receive(a, T0 + HOUR + 400)  # the alerts topic replayed
    await run(second, T0 + HOUR + 400, T0 + 2 * HOUR)
    assert len(fake_slack.top_level()) == 1
    assert len(reminders(fake_slack)) == 1  # the next one is due at 2 h 30 s (first post + 2 h)
    await run(second, T0 + 2 * HOUR, T0 + 2 * HOUR + 400)
    assert len(reminders(fake_slack)) == 2


async def test_the_same_group_firing_again_after_resolve_is_a_new_thread(fake_slack, notifier_factory):
    n = notifier_factory()
    a = alert("web-1")
    await n.receive(a, T0)
    await run(n, T0, T0 + 600)
    await n.receive(a.resolved(T0 + 600), T0 + 600)
    await run(n, T0 + 600, T0 + 1200)
    again = alert("web-1", at=T0 + 3000)
    await n.receive(again, T0 + 3000)
    await run(n, T0 + 3000, T0 + 3600)
    roots = fake_slack.top_level()
    assert len(roots) == 2 and roots[0].text.startswith("[RESOLVED") and not roots[1].text.startswith("[RESOLVED")
