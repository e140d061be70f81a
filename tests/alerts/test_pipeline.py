"""Notification pipeline against the fake Slack Web API over real HTTP: retries in passed-in time."""

import dataclasses
import io
import random

from alerts.config import AlertingConfig
from alerts.notify.console import ConsoleReceiver
from alerts.notify.notifier import AlertNotifier
from alerts.notify.slack import SlackReceiver
from alerts.secret import Secret
from detectors.configfile import load_model_text
from tests.alerts.conftest import T0

CFG = load_model_text("""
receivers:
  - {name: slack, slack: {channel: alerts}}
route: {receiver: slack, group_by: [service], group_wait: 0s, group_interval: 1s}
""", AlertingConfig)


def make_notifier(fake, deliveries, groups, console=None):
    slack = SlackReceiver(Secret(fake.token), "alerts", base_url=fake.base_url, max_retries=0, name="slack")
    n = AlertNotifier(CFG, {"slack": slack}, deliveries, groups=groups, rng=random.Random(7),
                      console=console or ConsoleReceiver(io.StringIO(), color=False))
    return n, slack


async def drive(n, start, end, step=0.5):
    now = start
    while now <= end:
        await n.flush(now)
        now += step


async def test_failures_are_retried_in_order_and_nothing_is_sent_twice(fake_slack, make_alert):
    deliveries: dict[str, bytes] = {}
    groups: dict[str, bytes] = {}
    n, slack = make_notifier(fake_slack, deliveries, groups)
    a = make_alert()
    changes = [a, dataclasses.replace(a, cause="capacity_saturation", title="update"), a.resolved(a.starts_at + 600)]
    fake_slack.fail_next(3, "ratelimited")
    fake_slack.fail_next(3, "error500")
    for i, c in enumerate(changes):
        await n.receive(c, T0 + 200 * i)
        await drive(n, T0 + 200 * i, T0 + 200 * i + 150)
    assert n.counts["retried.slack"] == 6 and n.counts["fallback.slack"] == 0
    assert len(fake_slack.top_level()) == 1
    root = fake_slack.top_level()[0]
    assert "resolved" in [m.text for m in fake_slack.replies(root.ts)][-1].lower()
    assert len(fake_slack.calls_to("chat.update")) == 2  # the update, then the resolve
    # A restarted worker replays the last state change (its offset was not committed): nothing is posted.
    calls = len(fake_slack.calls)
    n2, slack2 = make_notifier(fake_slack, deliveries, groups)
    n2.restore()
    await n2.receive(changes[-1], T0 + 400)
    await drive(n2, T0 + 400, T0 + 405)
    assert len(fake_slack.calls) == calls
    await slack.aclose()
    await slack2.aclose()


async def test_backoff_is_jittered_exponential_and_honours_retry_after(fake_slack, make_alert):
    n, slack = make_notifier(fake_slack, {}, {})
    p = n.pipeline
    p.backoff_initial, p.backoff_max = 1.0, 60.0
    delays = [p.backoff(k) for k in range(1, 10)]
    for k, d in enumerate(delays, start=1):
        base = min(60.0, 2.0 ** (k - 1))
        assert base / 2 <= d <= base
    assert len({round(d, 6) for d in delays}) == len(delays)  # jittered, not a fixed ladder
    assert p.backoff(1, retry_after=30.0) == 30.0
    await slack.aclose()


async def test_token_never_reaches_the_delivery_records_or_logs(fake_slack, make_alert, caplog):
    caplog.set_level("DEBUG")
    deliveries: dict[str, bytes] = {}
    out = io.StringIO()
    n, slack = make_notifier(fake_slack, deliveries, {}, console=ConsoleReceiver(out, color=False))
    fake_slack.fail_next(1, "invalid_auth")
    await n.receive(make_alert(), T0)
    blob = b"".join(deliveries.values()).decode() + caplog.text + out.getvalue()
    assert fake_slack.token not in blob
    assert "FAILED" in caplog.text and "valid bot token" in caplog.text
    assert "[FIRING]" in out.getvalue()  # the console took the notification
    await slack.aclose()
