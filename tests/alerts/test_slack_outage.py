"""Slack answers 429 for 30 s, then 500 for 30 s: everything is delivered afterwards,
in order, nothing twice, even with a worker restart in the middle."""

from __future__ import annotations

import asyncio
import time

from alerts.config import AlertingConfig
from alerts.notify.notifier import AlertNotifier
from alerts.notify.slack import SlackReceiver
from alerts.secret import Secret
from detectors.configfile import load_model_text

CFG = load_model_text("""
receivers:
  - {name: oncall, slack: {channel: alerts}}
route:
  receiver: oncall
  group_by: [service]
  group_wait: 0s
  group_interval: 1s
""", AlertingConfig)


def worker(fake, deliveries, groups):
    slack = SlackReceiver(Secret(fake.token), "alerts", base_url=fake.base_url, name="oncall", max_retries=1)
    return AlertNotifier(CFG, {"oncall": slack}, deliveries, groups=groups, backoff_initial=0.5, backoff_max=4.0), slack


async def test_429_then_500_for_a_minute_then_everything_once_in_order(fake_slack_factory, make_alert):
    fake = await fake_slack_factory(retry_after=2)
    incidents = [make_alert(labels={"service": f"svc-{i}", "host": None, "disk": None}, title=f"incident {i}")
                 for i in range(3)]
    changes = [*incidents, *(a.resolved(a.starts_at + 900) for a in incidents)]
    deliveries: dict[str, bytes] = {}
    groups: dict[str, bytes] = {}
    t0 = time.monotonic()

    async def outage() -> None:
        fake.set_mode("ratelimited")
        await asyncio.sleep(30)
        fake.set_mode("error500")
        await asyncio.sleep(30)
        fake.set_mode("ok")

    def all_delivered() -> bool:
        return len(fake.calls_to("chat.update")) >= 3

    async def run(notifier, items, until: float) -> None:
        for a in items:
            await notifier.receive(a, time.time())
        while time.monotonic() < until and not all_delivered():
            await notifier.flush(time.time())
            await asyncio.sleep(0.5)

    outage_task = asyncio.create_task(outage())
    await asyncio.sleep(0.1)
    # Worker 1 takes the firing alerts and is stopped 20 s into the outage (nothing got through).
    w1, s1 = worker(fake, deliveries, groups)
    try:
        await asyncio.wait_for(run(w1, changes[:3], t0 + 20), timeout=25)
    except TimeoutError:
        pass  # killed in the middle of a retry
    await s1.aclose()
    # Worker 2 restarts from the same tables; at least once, it is handed everything again.
    w2, s2 = worker(fake, deliveries, groups)
    w2.restore()
    await run(w2, changes, t0 + 120)
    await outage_task
    await s2.aclose()

    ok_posts = fake.calls_to("chat.postMessage")
    roots = fake.top_level()
    assert len(roots) == 3, [m.text for m in roots]  # one root per incident
    assert {r.channel for r in roots} == {"C0ALERTS01"}
    # Nothing twice: 3 roots + 3 "resolved" thread replies, 3 root edits.
    assert len(ok_posts) == 6, [c.json.get("text") for c in ok_posts]
    assert len(fake.calls_to("chat.update")) == 3
    # In order: each incident's firing post comes before its resolve edit.
    order = [(c.method, c.json.get("ts") or "") for c in fake.calls if c.outcome == "ok"]
    for root in roots:
        edit = order.index(("chat.update", root.ts))
        posts = [i for i, c in enumerate(c for c in fake.calls if c.outcome == "ok")
                 if c.method == "chat.postMessage" and c.json.get("thread_ts") is None and i < edit]
        assert posts, f"the resolve of {root.ts} came before any post"
    # The outage was real: both failure modes were answered and retried.
    assert fake.calls_to("chat.postMessage", "ratelimited") and fake.calls_to("chat.postMessage", "error500")
