"""An acknowledged group gets no reminders, and still gets its changes (Slack bot, fake Slack over HTTP).

The pipeline asks ``AlertNotifier(..., acks=...)`` (alerts/ack.py) before a reminder.
"""

from __future__ import annotations

from alerts.ack import Ack, AckStore
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
"""


def alert(service: str, host: str, at: float = T0) -> Alert:
    return Alert({"service": service, "host": host, "disk": None}, "firing", "critical",
                 f"Saturation of {service} on {host}", "capacity_saturation", 0.8, at)


async def test_an_acknowledged_group_is_not_reminded_until_its_alert_resolves(fake_slack):
    slack = SlackReceiver(Secret(fake_slack.token), "alerts", base_url=fake_slack.base_url, name="oncall")
    acks = AckStore()
    n = AlertNotifier(load_model_text(CFG, AlertingConfig), {"oncall": slack}, {}, groups={}, acks=acks)
    try:
        ent, idf = alert("ent", "web-1"), alert("idf", "web-1")
        await n.receive(ent, T0)
        await n.receive(idf, T0)
        t = T0
        while t < T0 + 600:
            await n.flush(t)
            t += 60
        assert len(fake_slack.top_level()) == 2
        [key] = n.group_keys(ent)
        acks.apply(Ack(key, ent.fingerprint, "U024BE7LH", at=T0 + 600))
        while t < T0 + 3 * HOUR:
            await n.flush(t)
            t += 60
        [ent_root] = [m for m in fake_slack.top_level() if "ent" in (m.text or "")]
        [idf_root] = [m for m in fake_slack.top_level() if "idf" in (m.text or "")]
        assert fake_slack.replies(ent_root.ts) == []  # acknowledged: no reminder
        assert len(fake_slack.replies(idf_root.ts)) >= 2  # the other group is reminded hourly
        # A change is news, acknowledged or not.
        await n.receive(alert("ent", "web-2", at=t), t)
        await n.flush(t + 300)
        assert len(fake_slack.replies(ent_root.ts)) == 1
        # The acknowledged alert resolves (the worker then clears the ack): reminders come back.
        for a in acks.clears(ent.resolved(t + 300), t + 300):
            acks.apply(a)
        assert not acks.mutes_reminder(key, t + 301)
    finally:
        await slack.aclose()
