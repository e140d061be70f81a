"""Notification pipeline against the fake Slack Web API over real HTTP."""

import dataclasses

from alerts.config import AlertingConfig
from alerts.dispatch import Router
from alerts.notify.pipeline import NotificationPipeline
from alerts.notify.slack import SlackReceiver
from alerts.secret import Secret
from detectors.configfile import load_model_text

CFG = load_model_text("""
receivers:
  - {name: slack, slack: {channel: alerts}}
route: {receiver: slack}
""", AlertingConfig)


def make_pipeline(fake, deliveries, sleeps):
    slack = SlackReceiver(Secret(fake.token), "alerts", base_url=fake.base_url, max_retries=0, name="slack")

    async def sleep(s):
        sleeps.append(s)

    return NotificationPipeline({"slack": slack}, Router(CFG.route), deliveries, sleep=sleep), slack


async def test_failures_are_retried_in_order_and_nothing_is_sent_twice(fake_slack, make_alert):
    deliveries: dict[str, bytes] = {}
    sleeps: list[float] = []
    pipe, slack = make_pipeline(fake_slack, deliveries, sleeps)
    a = make_alert()
    changes = [a, dataclasses.replace(a, cause="capacity_saturation", title="update"), a.resolved(a.starts_at + 600)]
    fake_slack.fail_next(3, "ratelimited")
    fake_slack.fail_next(3, "error500")
    for c in changes:
        await pipe.deliver(c)
    assert len(sleeps) == 6 and sleeps[0] >= 1
    assert len(fake_slack.top_level()) == 1
    root = fake_slack.top_level()[0]
    assert [m.text for m in fake_slack.replies(root.ts)][-1].lower().count("resolved") >= 1
    assert len(fake_slack.calls_to("chat.update")) == 1
    # A restarted worker replays the same state changes: nothing new is posted.
    calls = len(fake_slack.calls)
    pipe2, slack2 = make_pipeline(fake_slack, deliveries, sleeps)
    for c in changes:
        await pipe2.deliver(c)
    assert len(fake_slack.calls) == calls
    await slack.aclose()
    await slack2.aclose()


async def test_token_never_reaches_the_delivery_records_or_logs(fake_slack, make_alert, caplog):
    caplog.set_level("DEBUG")
    deliveries: dict[str, bytes] = {}
    pipe, slack = make_pipeline(fake_slack, deliveries, [])
    fake_slack.fail_next(1, "invalid_auth")
    await pipe.deliver(make_alert())
    blob = b"".join(deliveries.values()).decode() + caplog.text
    assert fake_slack.token not in blob
    assert "needs attention" in caplog.text
    await slack.aclose()
