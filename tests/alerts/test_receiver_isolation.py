"""Receivers are isolated: a broken one fails alone, loudly, and hands its notifications on.

Real HTTP throughout: the fake Slack Web API and a local endpoint that plays
both the webhook and the Alertmanager (``/api/v2/alerts``), on 127.0.0.1
port 0. Time is passed in (``now``): nothing sleeps.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import random

import pytest

from alerts.config import AlertingConfig
from alerts.notify.alertmanager import AlertmanagerReceiver
from alerts.notify.console import ConsoleReceiver
from alerts.notify.notifier import AlertNotifier
from alerts.notify.slack import SlackReceiver
from alerts.notify.webhook import WebhookReceiver
from alerts.secret import Secret
from detectors.configfile import load_model_text
from detectors.timeutil import format_ts
from tests.alerts.conftest import T0
from tests.alerts.fake_http import HTTPServer

CFG = load_model_text("""
receivers:
  - {name: oncall, fallback: [hook-backup], slack: {channel: alerts}}
  - {name: hook, webhook: {url_env: HOOK_URL}}
  - {name: hook-backup, webhook: {url_env: BACKUP_URL}}
  - {name: am, alertmanager: {url: "http://127.0.0.1:9"}}
route:
  receiver: oncall
  group_by: [service]
  group_wait: 10s
  group_interval: 60s
  repeat_interval: 4h
  routes:
    - {receiver: oncall, continue: true}
    - {receiver: hook, continue: true}
    - {receiver: am}
""", AlertingConfig)

GROUP_WAIT, GROUP_INTERVAL = 10.0, 60.0


@pytest.fixture
async def http(no_proxy_env):
    s = await HTTPServer().start()
    yield s
    await s.stop()


def receivers(fake, http):
    return {
        "oncall": SlackReceiver(Secret(fake.token), "alerts", base_url=fake.base_url, name="oncall", max_retries=0),
        "hook": WebhookReceiver(Secret(http.base + "/hook"), name="hook"),
        "hook-backup": WebhookReceiver(Secret(http.base + "/backup"), name="hook-backup"),
        "am": AlertmanagerReceiver(http.base, name="am"),
    }


def incident_changes(make_alert):
    """Seven critical state changes of three incidents (as in the report on issue 15), by event time."""
    out = []
    for i, svc in enumerate(("ent-grand-est", "ent-bretagne", "pronote-lyon")):
        start = T0 + 120 * i
        a = make_alert(labels={"service": svc, "host": None, "disk": None}, starts_at=start,
                       title=f"Traffic 8.2x usual on {svc}", severity="critical")
        out.append((start, a))
        if i == 0:
            a = dataclasses.replace(a, cause="capacity_saturation", confidence=0.9)
            out.append((start + 200, a))
        out.append((start + 600 + 30 * i, a.resolved(start + 600 + 30 * i)))
    return sorted(out, key=lambda x: x[0])


async def run(notifier, changes, end, http, step=1.0):
    """Feed the changes at their times and flush every ``step`` s; tag each POST with the ``now`` it left at."""
    sent_at: list[float] = []
    now, i = changes[0][0], 0
    while now <= end:
        while i < len(changes) and changes[i][0] <= now:
            await notifier.receive(changes[i][1], now)
            i += 1
        await notifier.flush(now)
        sent_at.extend([now] * (len(http.requests) - len(sent_at)))
        now += step
    return sent_at


async def test_slack_invalid_auth_fails_alone_while_webhook_and_alertmanager_get_every_change_in_time(
        fake_slack, http, make_alert, caplog):
    caplog.set_level(logging.INFO)
    fake_slack.set_mode("invalid_auth")
    rs = receivers(fake_slack, http)
    console = io.StringIO()
    n = AlertNotifier(CFG, rs, {}, groups={}, console=ConsoleReceiver(console, color=False),
                      recheck_after=600.0, rng=random.Random(3))
    changes = incident_changes(make_alert)
    assert len(changes) == 7
    end = changes[-1][0] + 2 * GROUP_INTERVAL
    sent_at = await run(n, changes, end, http)
    for r in rs.values():
        await r.aclose()

    # Every state change reached the webhook within group_wait (new group) or group_interval (later changes).
    hook = [(at, body) for at, (path, body, _) in zip(sent_at, http.requests, strict=True) if path == "/hook"]
    am = [(at, body) for at, (path, body, _) in zip(sent_at, http.requests, strict=True) if path == "/api/v2/alerts"]
    for t, change in changes:
        def told(at_body, change=change):
            at, body = at_body
            return any(x["fingerprint"] == change.fingerprint and x["status"] == change.status
                       and x["labels"]["cause"] == change.cause for x in body["alerts"])
        at = min(at for at, _ in filter(told, hook))
        assert t <= at <= t + GROUP_INTERVAL + 1, (change.status, change.cause, at - t)

        def am_told(at_body, change=change):
            at, body = at_body
            end = format_ts(change.ends_at) if change.status == "resolved" else None
            return any(x["labels"].get("service") == change.labels["service"] and x["labels"]["cause"] == change.cause
                       and (x["endsAt"] == end if end else x["endsAt"] > format_ts(at)) for x in body)
        at = min(at for at, _ in filter(am_told, am))
        assert t <= at <= t + GROUP_INTERVAL + 1
    # Slack failed for good at once and was not hammered: no retry loop, one probe per recheck_after.
    assert 1 <= len(fake_slack.calls) <= 1 + (end - changes[0][0]) // 600
    assert {c.outcome for c in fake_slack.calls} == {"invalid_auth"} and n.counts["failed.oncall"] == len(fake_slack.calls)
    assert n.counts["receiver_failed.oncall"] == 1 and n.counts["retried.oncall"] == 0
    failed = n.failed_receivers()
    assert list(failed) == ["oncall"] and "valid bot token" in failed["oncall"].fix
    assert "receiver oncall FAILED" in caplog.text and "To fix: the bot token is not valid" in caplog.text
    assert fake_slack.token not in caplog.text

    # Its notifications were not dropped: counted, on the fallback webhook and on the console.
    assert n.counts["fallback.oncall"] == 7
    backup = http.posts("/backup")
    told_backup = {(x["fingerprint"], x["status"], x["labels"]["cause"]) for b in backup for x in b["alerts"]}
    assert {(c.fingerprint, c.status, c.cause) for _, c in changes} <= told_backup
    text = console.getvalue()
    assert text.count("[FIRING") >= 4 and text.count("[RESOLVED]") == 3


async def test_a_failed_receiver_is_probed_again_and_recovers(fake_slack, http, make_alert):
    fake_slack.set_mode("invalid_auth")
    rs = receivers(fake_slack, http)
    n = AlertNotifier(CFG, rs, {}, groups={}, console=ConsoleReceiver(io.StringIO(), color=False),
                      recheck_after=300.0, rng=random.Random(3))
    a = make_alert(severity="critical")
    await n.receive(a, T0)
    await n.flush(T0 + GROUP_WAIT)
    assert "oncall" in n.failed_receivers()
    fake_slack.set_mode("ok")  # someone fixed the token
    b = dataclasses.replace(a, cause="capacity_saturation")
    await n.receive(b, T0 + 100)
    await n.flush(T0 + GROUP_WAIT + GROUP_INTERVAL)
    assert len(fake_slack.calls) == 1  # not before recheck_after
    for t in range(int(GROUP_WAIT), 400, 60):
        await n.flush(T0 + t)
    for r in rs.values():
        await r.aclose()
    assert not n.failed_receivers() and n.counts["receiver_recovered.oncall"] == 1
    # The recovered Slack is told the incident's current state in a thread of its own.
    [root] = fake_slack.top_level()
    assert "capacity saturation" in root.text


@pytest.mark.parametrize(("mode", "fails"), [("401", True), ("404", True), ("400", True), ("408", False), ("429", False)])
async def test_webhook_client_errors_fail_it_but_408_and_429_are_retried(fake_slack, http, make_alert, mode, fails):
    http.mode = mode
    rs = receivers(fake_slack, http)
    rs.pop("am")
    cfg = CFG.model_copy(update={"receivers": [r for r in CFG.receivers if r.name != "am"],
                                 "route": CFG.route.model_copy(update={"routes": CFG.route.routes[:2]})})
    n = AlertNotifier(cfg, rs, {}, groups={}, console=ConsoleReceiver(io.StringIO(), color=False),
                      rng=random.Random(5))
    await n.receive(make_alert(), T0)
    for t in range(int(GROUP_WAIT), 200, 1):
        await n.flush(T0 + t)
    for r in rs.values():
        await r.aclose()
    assert ("hook" in n.failed_receivers()) is fails
    assert len(fake_slack.top_level()) == 1  # Slack delivered all along
    hook_posts = len(http.posts("/hook"))
    if fails:
        assert hook_posts == 1 and n.counts["fallback.hook"] == 1
    else:
        assert 3 <= hook_posts <= 12 and n.counts["retried.hook"] == hook_posts  # backoff, not every second
