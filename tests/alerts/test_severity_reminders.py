"""Reminders per severity: a warning at most daily (``min_repeat_interval``), a critical at repeat_interval;
a reminder says whether its evidence is new. Through the AlertNotifier to the fake Slack over HTTP."""

from __future__ import annotations

import pytest

from alerts.config import AlertingConfig
from alerts.model import Alert, Evidence
from alerts.notify.notifier import AlertNotifier
from alerts.notify.slack import SlackReceiver
from alerts.secret import Secret
from detectors.configfile import load_model_text
from tests.alerts.conftest import T0

HOUR, DAY = 3600.0, 86400.0

CFG = """
receivers:
  - {name: oncall, slack: {channel: alerts}}
route: {receiver: oncall, group_by: [host, disk], group_wait: 30s, group_interval: 5m, repeat_interval: 4h}
"""


def drive(count: int, severity: str = "warning") -> Alert:
    return Alert({"service": None, "host": "web-2", "disk": "S10"}, "firing", severity,
                 "Drive S10 on web-2 shows failure signals: suspected disk failure", "disk_failure", 0.9, T0,
                 evidence=(Evidence("disk_failure_score", 0.97, 0.0,
                                    f"SMART 5 (reallocated sectors) rose from 0 to {count}"),))


async def run(fake_slack, extra: str, steps: list[tuple[float, Alert]], until: float) -> list[tuple[float, dict]]:
    slack = SlackReceiver(Secret(fake_slack.token), "alerts", base_url=fake_slack.base_url, name="oncall")
    n = AlertNotifier(load_model_text(CFG + extra, AlertingConfig), {"oncall": slack}, {}, groups={})
    out: list[tuple[float, dict]] = []
    todo = dict(steps)
    t = T0
    try:
        while t <= until:
            if t in todo:
                await n.receive(todo[t], t)
            await n.flush(t)
            out.extend((t, c.json) for c in fake_slack.calls_to("chat.postMessage")[len(out):])
            t += 300
    finally:
        await slack.aclose()
    return [(t, c) for t, c in out if "Reminder" in c.get("text", "")]


async def test_a_warning_is_reminded_once_a_day_and_says_when_its_evidence_is_not_new(fake_slack):
    # The drive's alert is refreshed on day 1 (its counters rose), not on day 2.
    got = await run(fake_slack, "", [(T0, drive(8)), (T0 + 20 * HOUR, drive(40))], T0 + 3 * DAY + HOUR)
    assert [round((t - T0) / HOUR) for t, _ in got] == [24, 48, 72]
    assert "still failing after 1d" in got[0][1]["text"] and "counters now: SMART 5 (reallocated sectors) " \
        "rose from 0 to 40" in got[0][1]["text"]
    assert "as reported Wed 7 Apr 08:09 UTC, nothing newer: SMART 5 (reallocated sectors) rose from 0 to 40" \
        in got[1][1]["text"]


async def test_a_critical_keeps_its_repeat_interval(fake_slack):
    got = await run(fake_slack, "", [(T0, drive(8, "critical"))], T0 + 13 * HOUR)
    assert [round((t - T0) / HOUR) for t, _ in got] == [4, 8, 12]


async def test_the_floor_is_configurable(fake_slack):
    got = await run(fake_slack, "min_repeat_interval: {warning: 6h}\n", [(T0, drive(8))], T0 + 13 * HOUR)
    assert [round((t - T0) / HOUR) for t, _ in got] == [6, 12]


def test_a_floor_names_a_severity():
    with pytest.raises(Exception, match="'info' is not a severity"):
        load_model_text(CFG + "min_repeat_interval: {info: 1d}\n", AlertingConfig)
    cfg = load_model_text(CFG + "min_repeat_interval: {warning: 1d12h}\n", AlertingConfig)
    assert cfg.min_repeat_interval == {"warning": 1.5 * DAY}
