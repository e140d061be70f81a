"""What an on-call engineer reads: the Slack messages of one incident, as the router sends them.

A firing parent, an update (the cause changes), an escalation (warning ->
critical, broadcast to the channel) and the resolve, through the
AlertNotifier to the fake Slack over real HTTP, with a receiver configured
for Europe/Paris, runbooks per cause and per service, a dashboard and a
report link. The checks are on the notification text (what a phone's
notification shows) and on the blocks. ``TOCSIN_DUMP_SLACK=<file>`` writes
the messages as sent, to quote them.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import re

import pytest

from alerts.config import AlertingConfig
from alerts.model import Evidence
from alerts.notify.console import ConsoleReceiver
from alerts.notify.factory import build_receivers
from alerts.notify.notifier import AlertNotifier
from detectors.configfile import load_model_text
from tests.alerts.conftest import T0

CFG = """
receivers:
  - name: oncall
    slack:
      channel: alerts
      api_url: {api}
      time_zone: Europe/Paris
      runbook_url: https://runbooks.example/tocsin
      runbook_urls: {{suspected_attack: "https://runbooks.example/attack?service={{service}}"}}
      service_runbook_urls: {{ent-grand-est: {{capacity_saturation: https://runbooks.example/ent/scale}}}}
      dashboard_url: "https://grafana.example/d/tocsin?var-service={{service}}&from={{starts_at_ms}}"
      report_url: "https://tocsin.example/report/{{fingerprint}}"
route: {{receiver: oncall, group_by: [service], group_wait: 0s, group_interval: 60s}}
"""

RAW = re.compile(r"\d\.\d{3,}|\b\d+(?:\.\d+)?[eE][-+]?\d+\b")


def evidence(rate: float) -> tuple[Evidence, ...]:
    return (
        Evidence("request_rate", rate, 99.0, f"{rate:.0f} req/s against 99 usual for a Tuesday 10:00 (Europe/Paris)"),
        Evidence("hosting_share", 0.6633, 0.05, ""),  # no sentence: written from the numbers
        Evidence("requests_per_client", 30310.4, 12.0, "3.031e+04 requests per client against 12 usual"),
    )


@pytest.fixture
async def incident(fake_slack, make_alert, monkeypatch):
    monkeypatch.setenv("SLACK_BOT_TOKEN", fake_slack.token)
    cfg = load_model_text(CFG.format(api=fake_slack.base_url), AlertingConfig)
    receivers = build_receivers(cfg)
    n = AlertNotifier(cfg, receivers, {}, groups={}, console=ConsoleReceiver(io.StringIO(), color=False))
    base = make_alert(severity="warning", cause="unknown", confidence=0.45, evidence=evidence(430),
                      title="Traffic 4.3x usual on ent-grand-est: unknown cause")
    update = dataclasses.replace(base, cause="suspected_attack", confidence=0.86, evidence=evidence(820),
                                 title="Traffic 8.3x usual on ent-grand-est: suspected attack")
    escalation = dataclasses.replace(update, severity="critical", evidence=evidence(500),
                                     title="Traffic 5.1x usual on ent-grand-est: suspected attack")
    resolve = escalation.resolved(T0 + 3900)  # the lifecycle resolves with the state last reported
    steps = [(T0, base), (T0 + 360, update), (T0 + 720, escalation), (T0 + 3900, resolve)]
    sent = []
    for t, a in steps:
        await n.receive(a, t)
        await n.flush(t + 60)
        sent.append([m for m in fake_slack.calls if m.outcome == "ok" and m.method != "auth.test"][len(sent) and
                                                                                                  sum(len(x) for x in sent):])
    for r in receivers.values():
        await r.aclose()
    if os.environ.get("TOCSIN_DUMP_SLACK"):
        with open(os.environ["TOCSIN_DUMP_SLACK"], "w", encoding="utf-8") as f:
            json.dump([[{"method": c.method, **c.json} for c in calls] for calls in sent], f, indent=1,
                      ensure_ascii=False)
    return fake_slack, sent


def blocks_of(payload: dict) -> list[dict]:
    return [*payload.get("blocks", []), *(b for a in payload.get("attachments") or [] for b in a["blocks"])]


def shown(payload: dict) -> str:
    out = [payload.get("text", "")]
    for b in blocks_of(payload):
        if "text" in b:
            out.append(b["text"]["text"])
        out.extend(e["text"]["text"] if isinstance(e.get("text"), dict) else e.get("text", "")
                   for e in b.get("elements", []))
    return "\n".join(out)


async def test_firing_parent_reads_on_a_phone(incident):
    fake, sent = incident
    [post] = sent[0]
    p = post.json
    # The notification: severity, headline, the cause once, the time in the route's zone with its name.
    assert p["text"] == ("[WARNING] Traffic 4.3x usual on ent-grand-est: unknown cause (45% confidence), "
                         "since Tue 6 Apr 10:04 CEST")
    blocks = blocks_of(p)
    assert blocks[0]["text"]["text"] == ":warning: WARNING · Traffic 4.3x usual on ent-grand-est"
    assert p["attachments"][0]["color"] == "#F2A900"
    text = shown(p)
    assert text.count("unknown cause") == 2  # once in the notification, once in the message
    # One evidence list, human units, no raw floats or exponents.
    [ev] = [b["text"]["text"] for b in blocks if b["type"] == "section" and b["text"]["text"].startswith("*Evidence*")]
    assert ev.splitlines() == [
        "*Evidence*",
        "• 430 req/s against 99 usual for a Tuesday 10:00 (Europe/Paris)",
        "• share from hosting networks: 66% (usual 5%)",
        "• 30,310 requests per client against 12 usual",
    ]
    assert not RAW.search(re.sub(r"fingerprint `[0-9a-f]+`", "", text))
    assert all("fields" not in b for b in blocks)  # no two narrow columns
    # Times: the zone's, named; UTC only in the context line.
    assert "*Since:* Tue 6 Apr 10:04 CEST" in text
    context = next(b for b in blocks if b["type"] == "context")
    assert "started 2021-04-06 08:04 UTC" in [e["text"] for e in context["elements"]]
    # What to do next, and where to look.
    assert "*Next step:* Look at the dashboard" in text
    buttons = {e["action_id"]: e["url"] for b in blocks if b["type"] == "actions" for e in b["elements"]}
    assert buttons == {
        "runbook": "https://runbooks.example/tocsin",
        "dashboard": "https://grafana.example/d/tocsin?var-service=ent-grand-est&from=1617696240000",
        "report": f"https://tocsin.example/report/{_fp(p)}",
    }


def _fp(payload: dict) -> str:
    return re.search(r"fingerprint `([0-9a-f]+)`", shown(payload)).group(1)


async def test_update_reply_says_what_changed_and_the_parent_shows_now_and_peak(incident):
    fake, sent = incident
    edit, reply = sent[1]
    assert edit.method == "chat.update" and reply.method == "chat.postMessage"
    r = reply.json
    assert r["thread_ts"] == edit.json["ts"] and "reply_broadcast" not in r
    assert r["text"].splitlines()[:2] == [
        ":arrows_counterclockwise: *Update:* Traffic 8.3x usual on ent-grand-est",
        "*Cause:* unknown cause → *suspected attack* (86% confidence)",
    ]
    assert "*Now:* 820 req/s against 99 usual" in r["text"] and "*Next step:* Rate-limit" in r["text"]
    assert blocks_of(r)[0]["text"]["text"] == r["text"]
    # The parent, edited: the new cause once, the attack's runbook for this service.
    e = edit.json
    assert e["text"].startswith("[WARNING] Traffic 8.3x usual on ent-grand-est: suspected attack (86% confidence)")
    urls = [el["url"] for b in blocks_of(e) if b["type"] == "actions" for el in b["elements"]]
    assert urls[0] == "https://runbooks.example/attack?service=ent-grand-est"


async def test_escalation_is_broadcast_and_the_parent_turns_critical_with_current_and_peak_values(incident):
    fake, sent = incident
    edit, reply = sent[2]
    r = reply.json
    assert r["reply_broadcast"] is True  # shown in the channel, not only in the thread
    assert r["text"].splitlines()[1:3] == [
        ":arrow_up: *Escalated*: warning → *critical*",
        "*Title:* Traffic 8.3x usual on ent-grand-est → Traffic 5.1x usual on ent-grand-est"]
    e = edit.json
    assert e["attachments"][0]["color"] == "#D0021B"
    assert blocks_of(e)[0]["text"]["text"] == ":rotating_light: CRITICAL · Traffic 5.1x usual on ent-grand-est"
    [ev] = [b["text"]["text"] for b in blocks_of(e) if b["type"] == "section" and b["text"]["text"].startswith("*Evidence*")]
    # Current value, and the peak apart with its time in the route's zone.
    assert ev.splitlines()[:2] == ["*Evidence* (latest, peak beside it)",
                                   "• 500 req/s against 99 usual for a Tuesday 10:00 (Europe/Paris)  "
                                   "_(peak 820 req/s at 10:10 CEST)_"]
    assert [m.broadcast for m in fake.messages.values() if m.thread_ts] == [False, True, False]


async def test_resolve_says_what_recovered_and_when(incident):
    fake, sent = incident
    edit, reply = sent[3]
    e = edit.json
    assert e["text"] == ("[RESOLVED] Traffic 8.3x usual on ent-grand-est: recovered Tue 6 Apr 11:09 CEST "
                         "after 1h 5m (was suspected attack)")
    blocks = blocks_of(e)
    assert blocks[0]["text"]["text"] == ":white_check_mark: RESOLVED · Traffic 8.3x usual on ent-grand-est"
    assert e["attachments"][0]["color"] == "#2EB67D"
    assert blocks[1]["text"]["text"].splitlines() == [
        "*Recovered:* Tue 6 Apr 11:09 CEST, after 1h 5m",
        "*Back to usual:* request rate, share from hosting networks, requests per client",
        "*Cause was:* suspected attack (86% confidence)",
    ]
    # The peak is labelled as such, never shown as if it were still going on.
    assert blocks[2]["text"]["text"].splitlines()[:2] == [
        "*At its worst* (10:10 CEST)", "• 820 req/s against 99 usual for a Tuesday 10:00 (Europe/Paris)"]
    assert not any(b["text"]["text"].startswith("*Evidence*") for b in blocks if b["type"] == "section")
    assert "Next step" not in shown(e)
    assert reply.json["text"] == (":white_check_mark: *Resolved:* Traffic 8.3x usual on ent-grand-est: "
                                  "recovered Tue 6 Apr 11:09 CEST after 1h 5m")
    assert len(fake.top_level()) == 1
