"""Webhook (Alertmanager payload v4), Alertmanager push and Slack incoming-webhook receivers over real HTTP."""

from __future__ import annotations

import dataclasses
import logging
import random

import pytest

from alerts.config import AlertingConfig
from alerts.errors import ConfigError, NotifyError
from alerts.group import GroupNotification
from alerts.notify.alertmanager import AlertmanagerReceiver
from alerts.notify.factory import build_receivers
from alerts.notify.notifier import AlertNotifier
from alerts.notify.slack_webhook import SlackWebhookReceiver
from alerts.notify.webhook import WebhookReceiver
from alerts.secret import Secret
from detectors.configfile import load_model_text
from tests.alerts.conftest import T0
from tests.alerts.fake_http import HTTPServer

SECRET_PATH = "/hooks/T0SECRET/B0SECRET/xyzSECRETxyz"  # noqa: S105 - a fake webhook path
TOKEN = "tok-SECRET-bearer-123"  # noqa: S105 - a fake token


@pytest.fixture
async def server(no_proxy_env):
    s = await HTTPServer().start()
    yield s
    await s.stop()


def group(alerts, receiver="hook"):
    from alerts.dispatch import Router

    route = Router(AlertingConfig().route).routes(alerts[0])[0]
    return GroupNotification('{}:{service="ent-grand-est"}', receiver, route, {"service": "ent-grand-est"}, tuple(alerts), T0 + 30)


async def test_webhook_sends_alertmanager_payload_version_4(server, make_alert):
    a = make_alert()
    b = make_alert(labels={"service": "ent-grand-est", "host": "web-3", "disk": None}, cause="unknown",
                   severity="warning").resolved(T0 + 60)
    hook = WebhookReceiver(Secret(server.base + SECRET_PATH), bearer_token=Secret(TOKEN), name="hook")
    await hook.notify_group(group([a, b]), None)
    await hook.aclose()
    path, body, headers = server.requests[0]
    assert path == SECRET_PATH and headers["Authorization"] == f"Bearer {TOKEN}"
    assert body["version"] == "4"
    assert set(body) == {"version", "groupKey", "truncatedAlerts", "status", "receiver", "groupLabels",
                         "commonLabels", "commonAnnotations", "externalURL", "alerts"}
    assert body["status"] == "firing" and body["receiver"] == "hook" and body["truncatedAlerts"] == 0
    assert body["groupLabels"] == {"service": "ent-grand-est"}
    assert body["commonLabels"] == {"alertname": "tocsin", "service": "ent-grand-est"}
    first, second = body["alerts"]
    assert first == {
        "status": "firing",
        "labels": {"alertname": "tocsin", "cause": "suspected_attack", "service": "ent-grand-est", "severity": "critical"},
        "annotations": first["annotations"],
        "startsAt": "2021-04-06T08:04:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "",
        "fingerprint": a.fingerprint,
    }
    assert first["annotations"]["summary"] == a.title
    assert second["status"] == "resolved" and second["endsAt"] == "2021-04-06T08:05:00Z"
    assert second["labels"]["host"] == "web-3"


@pytest.mark.parametrize(
    ("mode", "retryable", "retry_after"),
    [("429", True, 7.0), ("500", True, None), ("drop", True, None), ("400", False, None), ("slow", True, None)],
)
async def test_failures_are_classified_and_never_show_the_url_or_token(server, make_alert, caplog, mode, retryable, retry_after):
    caplog.set_level(logging.DEBUG)
    server.modes = [mode]
    hook = WebhookReceiver(Secret(server.base + SECRET_PATH), bearer_token=Secret(TOKEN), timeout=0.5, name="hook")
    with pytest.raises(NotifyError) as exc:
        await hook.notify_group(group([make_alert()]), None)
    await hook.aclose()
    assert exc.value.retryable is retryable
    assert exc.value.retry_after == retry_after
    text = str(exc.value) + caplog.text + repr(hook) + repr(exc.value.__cause__) + repr(exc.value.__context__)
    for secret in ("SECRET", TOKEN):
        assert secret not in text, text


async def test_pipeline_retries_a_webhook_until_it_answers_and_logs_no_secret(server, make_alert, caplog):
    caplog.set_level(logging.DEBUG)
    server.modes = ["429", "500", "drop"]
    cfg = load_model_text("""
receivers: [{name: hook, webhook: {url_env: HOOK_URL}}]
route: {receiver: hook, group_wait: 0s}
""", AlertingConfig)
    hook = WebhookReceiver(Secret(server.base + SECRET_PATH), name="hook")
    deliveries: dict[str, bytes] = {}
    n = AlertNotifier(cfg, {"hook": hook}, deliveries, rng=random.Random(1))
    await n.receive(make_alert(), T0)
    assert len(server.requests) == 1
    # The 429 said Retry-After: 7; nothing is tried before.
    assert n.next_flush() == pytest.approx(T0 + 7.0)
    await n.flush(T0 + 6.9)
    assert len(server.requests) == 1
    now = T0 + 7.0
    while len(server.requests) < 4:
        await n.flush(now)
        now = n.next_flush()
    await hook.aclose()
    assert len(server.requests) == 4 and n.counts["sent.hook"] == 1 and n.counts["retried.hook"] == 3
    assert not n.pipeline.retries
    blob = caplog.text + b"".join(deliveries.values()).decode()
    assert "SECRET" not in blob


def test_factory_reads_urls_and_tokens_from_env_and_files(tmp_path, monkeypatch):
    url_file = tmp_path / "url"
    url_file.write_text("http://127.0.0.1:1" + SECRET_PATH + "\n")
    monkeypatch.setenv("HOOK_URL", "http://127.0.0.1:2" + SECRET_PATH)
    monkeypatch.setenv("AM_TOKEN", TOKEN)
    cfg = load_model_text(f"""
receivers:
  - {{name: hook, webhook: {{url_env: HOOK_URL}}}}
  - {{name: hook2, send_resolved: false, slack_webhook: {{url_file: {url_file}}}}}
  - {{name: am, alertmanager: {{url: "http://127.0.0.1:9093", bearer_token_env: AM_TOKEN}}}}
route: {{receiver: hook}}
""", AlertingConfig)
    r = build_receivers(cfg)
    assert r["hook"].http.url.get().startswith("http://127.0.0.1:2")
    assert r["hook2"].url.get() == "http://127.0.0.1:1" + SECRET_PATH and r["hook2"].send_resolved is False
    assert r["am"].http.bearer_token.get() == TOKEN
    assert "SECRET" not in repr(r) and TOKEN not in repr(r)
    monkeypatch.delenv("HOOK_URL")
    with pytest.raises(ConfigError, match="HOOK_URL"):
        build_receivers(cfg)


async def test_alertmanager_receiver_posts_api_v2_alerts_and_resolves_a_replaced_label_set(server, make_alert):
    am = AlertmanagerReceiver(server.base, name="am")
    a = make_alert(cause="unknown", severity="warning")
    mem = await am.notify_group(group([a]), None)
    b = dataclasses.replace(a, cause="suspected_attack", severity="critical")
    await am.notify_group(group([b]), mem)
    await am.aclose()
    (p1, body1, _), (p2, body2, _) = server.requests
    assert p1 == p2 == "/api/v2/alerts"
    assert body1[0]["labels"]["cause"] == "unknown" and "endsAt" in body1[0]  # three group intervals ahead
    old, new = body2
    assert old["labels"]["cause"] == "unknown" and old["endsAt"] == "2021-04-06T08:04:30Z"
    assert new["labels"]["cause"] == "suspected_attack"


async def test_slack_incoming_webhook_one_message_per_group_within_limits(server, make_alert):
    alerts = [make_alert(labels={"service": f"s{i}", "host": None, "disk": None}, title="x" * 400) for i in range(80)]
    sw = SlackWebhookReceiver(Secret(server.base + SECRET_PATH), name="sw")
    await sw.notify_group(group(alerts), None)
    await sw.aclose()
    [(_, body, _)] = server.requests
    assert body["text"].startswith("[FIRING:80]")
    assert len(body["blocks"]) <= 50
    assert len(body["blocks"][0]["text"]["text"]) <= 150
    assert all(len(b["text"]["text"]) <= 3000 for b in body["blocks"] if b["type"] == "section")
    assert any("more alerts" in b["elements"][0]["text"] for b in body["blocks"] if b["type"] == "context")
    assert body["blocks"][-1]["text"]["text"].startswith("*Next step:* Rate-limit the endpoint under attack")


@pytest.mark.parametrize(
    ("mode", "retryable", "scope", "retry_after"),
    [("429", True, "receiver", 7.0), ("500", True, "receiver", None), ("drop", True, "receiver", None),
     ("408", True, "receiver", None), ("404", False, "receiver", None), ("401", False, "receiver", None),
     ("400", False, "message", None)],
)
async def test_slack_incoming_webhook_failures_are_classified_without_the_url(server, make_alert, caplog, mode,
                                                                              retryable, scope, retry_after):
    caplog.set_level(logging.DEBUG)
    server.modes = [mode]
    sw = SlackWebhookReceiver(Secret(server.base + SECRET_PATH), timeout=1, name="sw")
    with pytest.raises(NotifyError) as exc:
        await sw.notify_group(group([make_alert()]), None)
    await sw.aclose()
    assert (exc.value.retryable, exc.value.retry_after) == (retryable, retry_after)
    if not retryable:
        assert exc.value.scope == scope and exc.value.fix
    assert "SECRET" not in str(exc.value) + caplog.text + repr(sw)
