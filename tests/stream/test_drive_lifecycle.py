"""A failing drive, end to end: the Runner's alerts through the real AlertNotifier to the fake Slack.

Eight days of disk-health readings (every 6 h, eight drives on four hosts):
the drive ``S10`` of ``web-2`` starts reallocating sectors on day 2, stops for
two and a half days, climbs again, and is replaced on day 7.5 (either by its
failure record, or only by a new serial reporting in its place). On day 3
the service ``ent``, served by the four hosts, slows down on ``web-2`` alone
for half an hour, then recovers.

The router groups ``disk_failure`` by host and disk, so that every
notification about the drive goes to one thread: the drive's own alert
(``warning``: no user impact) opens it, the service's alert joins it and
escalates it to ``critical`` (broadcast), the service's recovery resolves
only that alert, and the thread closes when the drive is replaced.
Warnings are reminded at most daily, with the counters of the latest reading.

``TOCSIN_DUMP_SLACK=<file>`` writes the Slack calls with their event time to ``<file>.<replacement>``.
"""

from __future__ import annotations

import json
import os
import random
from datetime import UTC, datetime
from types import SimpleNamespace

import orjson
import pytest

from alerts.config import AlertingConfig
from alerts.model import Alert, alert_from_record, fingerprint
from alerts.notify.notifier import AlertNotifier
from alerts.notify.slack import SlackReceiver
from alerts.secret import Secret
from detectors.configfile import load_model_text
from stream.engine import Engine
from stream.runner import ListOutbox, Runner
from tests.alerts.fake_slack import FakeSlack

T0 = 1617580800.0  # Monday 2021-04-05 00:00 UTC
HOUR, DAY = 3600.0, 86400.0
HOSTS = ("web-1", "web-2", "web-3", "web-4")
SLOW_FROM, SLOW_TO = T0 + 3 * DAY + 9.5 * HOUR, T0 + 3 * DAY + 10 * HOUR  # Thursday 09:30-10:00 UTC
REPLACED = T0 + 7.5 * DAY

CFG = """
receivers:
  - {name: oncall, slack: {channel: alerts}}
route:
  receiver: oncall
  group_by: [service, host, disk]
  group_wait: 30s
  group_interval: 5m
  repeat_interval: 4h
  routes:
    - matchers: ['cause="disk_failure"']   # one thread per drive: its alert and the services it slows
      group_by: [host, disk]
"""


def reallocated(t: float) -> int:
    """SMART 5 of the failing drive: climbs on day 2-3.5, flat until day 6, climbs again."""
    d = (t - T0) / DAY
    if d < 2:
        return 0
    if d < 3.5:
        return int(40 * (d - 2))
    if d < 6:
        return 60
    return 60 + int(80 * (d - 6))


def disk_readings(replacement: str) -> list[tuple[float, bytes]]:
    out = []
    for k in range(8 * 4 + 1):
        t = T0 + k * 6 * HOUR
        for i, host in enumerate(HOSTS):
            for j in range(2):
                disk = f"S{i}{j}"
                rec: dict = {"ts": t, "host": host, "disk": disk, "model": "ST4000DM000",
                             "smart": {"5": 0, "197": 0, "9": 1000 + 6 * k}}
                if disk == "S10":
                    if t > REPLACED:
                        disk = rec["disk"] = "N10"  # the new drive, in the same host
                    else:
                        rec["smart"] |= {"5": reallocated(t), "197": reallocated(t) // 4}
                        if t == REPLACED and replacement == "failure":
                            rec["failure"] = True
                out.append((t, orjson.dumps(rec)))
    return out


def request_minutes() -> list[tuple[float, list[bytes]]]:
    """Thursday 08:00-11:00 UTC, 30 requests a minute on each host; web-2 slow 09:30-10:00."""
    rng = random.Random(16)
    out = []
    start = T0 + 3 * DAY + 8 * HOUR
    for m in range(180):
        t0 = start + 60 * m
        batch = []
        for i in range(120):
            host = HOSTS[i % 4]
            ts = t0 + i * 0.5
            slow = host == "web-2" and SLOW_FROM <= ts < SLOW_TO
            latency = rng.lognormvariate(4.6, 0.25) * (9.0 if slow else 1.0)
            batch.append(orjson.dumps({
                "ts": ts, "service": "ent", "status": 200, "latency_ms": round(latency, 1), "host": host,
                "endpoint": "/login", "client_ip": f"90.1.{rng.randrange(250)}.{rng.randrange(250)}",
                "country": "FR"}))
        out.append((t0, batch))
    return out


def alerts_of(box: ListOutbox, seen: int) -> list[Alert]:
    return [alert_from_record(orjson.loads(v)) for _, v in box.alerts[seen:]]


async def replay(replacement: str, fake_slack) -> tuple[list[Alert], list[tuple[float, object]]]:
    """Runs the events in event-time order; returns the alert records and the Slack calls with their event time."""
    cfg = load_model_text(CFG, AlertingConfig)
    slack = SlackReceiver(Secret(fake_slack.token), "alerts", base_url=fake_slack.base_url, name="oncall")
    notifier = AlertNotifier(cfg, {"oncall": slack}, {}, groups={})
    box = ListOutbox()
    runner = Runner(Engine(alerting=cfg), box)
    events = [(t, 0, v) for t, v in disk_readings(replacement)] + [(t, 1, b) for t, b in request_minutes()]
    events.sort(key=lambda e: (e[0], e[1]))
    alerts: list[Alert] = []
    calls: list[tuple[float, object]] = []
    clock = T0
    offset = 0

    async def tick(until: float) -> None:
        nonlocal clock
        while clock + 300 <= until:
            clock += 300
            await notifier.flush(clock)
            calls.extend((clock, c) for c in fake_slack.calls[len(calls):])

    try:
        for t, kind, value in events:
            await tick(t)
            seen = len(box.alerts)
            if kind == 0:
                runner.process_disk_value(0, offset, value)
            else:
                runner.process_request_records(0, [SimpleNamespace(offset=offset + i, value=v)
                                                   for i, v in enumerate(value)])
                offset += len(value)
            offset += 1
            for a in alerts_of(box, seen):
                alerts.append(a)
                await notifier.receive(a, t)
                calls.extend((t, c) for c in fake_slack.calls[len(calls):])
        await tick(T0 + 8.5 * DAY)
    finally:
        await slack.aclose()
    return alerts, calls


def when(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%a %H:%M")


@pytest.fixture
async def fake_slack(monkeypatch):
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(name, raising=False)  # slack-sdk reads them; the fake is local
    async with FakeSlack() as server:
        yield server


@pytest.mark.parametrize("replacement", ["failure", "new_serial"])
async def test_a_failing_drive_is_one_thread_warning_then_critical_until_it_is_replaced(replacement, fake_slack):
    alerts, calls = await replay(replacement, fake_slack)
    drive_fp = fingerprint({"service": None, "host": "web-2", "disk": "S10"})
    service_fp = fingerprint({"service": "ent", "host": "web-2", "disk": "S10"})

    # The alert records: the drive's is a warning, open until the replacement; the service's is critical.
    drive = [a for a in alerts if a.fingerprint == drive_fp]
    service = [a for a in alerts if a.fingerprint == service_fp]
    assert drive and all(a.severity == "warning" for a in drive)
    assert [a.status for a in drive].count("resolved") == 1 and drive[-1].status == "resolved"
    replaced_at = REPLACED if replacement == "failure" else REPLACED + 6 * HOUR  # the new serial's first reading
    assert drive[-1].ends_at == replaced_at
    assert service and service[0].severity == "critical" and service[-1].status == "resolved"
    assert service[-1].ends_at < T0 + 3 * DAY + 11 * HOUR  # latency recovered that morning...
    # ... and the counters climbed again afterwards: the drive's alert went on, refreshed with them.
    assert any("to 140" in a.evidence[0].text for a in drive if a.status == "firing")

    # One top-level message: every notification about the drive is in its thread.
    ok = [(t, c) for t, c in calls if c.outcome == "ok" and c.method != "auth.test"]
    posts = [(t, c) for t, c in ok if c.method == "chat.postMessage"]
    [(t_parent, parent)] = [(t, c) for t, c in posts if not c.json.get("thread_ts")]
    replies = [(t, c) for t, c in posts if c.json.get("thread_ts")]
    thread = fake_slack.top_level()[0].ts
    assert all(c.json["thread_ts"] == thread for _, c in replies)
    assert parent.json["text"].startswith("[WARNING] Drive S10 on web-2 shows failure signals")
    assert t_parent < SLOW_FROM

    # Escalated to critical in the same thread when the drive slowed ent, said in the channel.
    [(t_up, up)] = [(t, c) for t, c in replies if "Escalated" in c.json["text"]]
    assert SLOW_FROM <= t_up < SLOW_TO and up.json.get("reply_broadcast") is True
    assert "warning → *critical*" in up.json["text"] and "slows ent" in up.json["text"]
    edits = [(t, c) for t, c in ok if c.method == "chat.update"]
    assert any(c.json["text"].startswith("[CRITICAL] Failing drive S10 on web-2 slows ent")
               and c.json["attachments"][0]["color"] == "#D0021B" for t, c in edits if t == t_up)

    # Latency recovered: ent's alert resolves in the thread, the drive's does not, and the incident
    # goes back to a warning.
    [(t_down, down)] = [(t, c) for t, c in replies if "Resolved:" in c.json["text"] and "slows ent" in c.json["text"]]
    assert SLOW_TO <= t_down < T0 + 3 * DAY + 11 * HOUR
    assert "Still firing:* Drive S10 on web-2" in down.json["text"] and "critical → *warning*" in down.json["text"]
    assert not any("RESOLVED" in c.json["text"] for t, c in edits if t < replaced_at)

    # Reminders: while the incident is a warning, at most one a day, each with the latest counters.
    rem = [(t, c) for t, c in replies if "Reminder" in c.json["text"]]
    assert len(rem) >= 3
    assert all(b - a >= DAY for (a, _), (b, _) in zip(rem, rem[1:], strict=False))
    for t, c in rem:  # the drive's alert was refreshed: the counters of its latest reading, not of the first
        latest = T0 + (t - T0) // (6 * HOUR) * 6 * HOUR
        assert "still failing" in c.json["text"] and f"counters now: SMART 5 (reallocated sectors) rose from 0 " \
            f"to {reallocated(latest)} in" in c.json["text"]
    assert {reallocated(T0 + (t - T0) // (6 * HOUR) * 6 * HOUR) for t, _ in rem} >= {50, 60, 160}

    # Replaced: the parent turns RESOLVED and one reply closes the thread; nothing after. A new serial
    # counts once the old drive has missed a reading (1.5 of its intervals after its last one).
    [(t_end, end)] = [(t, c) for t, c in replies if "Resolved:* Drive S10 on web-2 shows failure" in c.json["text"]]
    told = REPLACED if replacement == "failure" else REPLACED + 12 * HOUR
    assert told <= t_end < told + HOUR
    assert f"replaced {when(replaced_at)}" in end.json["text"].replace("Mon 12 Apr ", "Mon ")
    assert fake_slack.top_level()[0].text.startswith("[RESOLVED] Drive S10 on web-2 shows failure signals: replaced")
    assert all(t <= t_end for t, _ in ok)

    if os.environ.get("TOCSIN_DUMP_SLACK"):
        with open(f"{os.environ['TOCSIN_DUMP_SLACK']}.{replacement}", "w", encoding="utf-8") as f:
            json.dump([{"event_time": when(t), "method": c.method, **c.json} for t, c in ok], f, indent=1,
                      ensure_ascii=False)
