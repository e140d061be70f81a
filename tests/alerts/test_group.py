"""Aggregation groups and the grouped pipeline, driven by passed-in time (no sleeping)."""

from __future__ import annotations

import dataclasses

import pytest

from alerts.config import AlertingConfig
from alerts.dispatch import Router
from alerts.group import Dispatcher
from alerts.model import Alert
from alerts.notify.base import Receiver
from alerts.notify.notifier import AlertNotifier
from detectors.configfile import load_model_text

T = 1_000_000.0

CFG = load_model_text("""
receivers:
  - {name: default, console: {}}
  - {name: storage, console: {}}
  - {name: audit, console: {}}
route:
  receiver: default
  group_by: [service]
  group_wait: 30s
  group_interval: 5m
  repeat_interval: 1h
  routes:
    - matchers: ['cause="disk_failure"']
      receiver: storage
      group_by: [host]
      group_wait: 10s
      continue: true
    - matchers: ['cause="disk_failure"']
      receiver: audit
      group_by: ['...']
""", AlertingConfig)


def alert(cause="unknown", service=None, host=None, disk=None, at=T, status="firing", severity="warning"):
    return Alert({"service": service, "host": host, "disk": disk}, status, severity, "t", cause, 0.5, at)


def test_route_options_are_inherited_and_paths_name_the_route():
    routes = Router(CFG.route).routes(alert("disk_failure", host="h1", disk="d1"))
    assert [(r.path, r.receiver, r.group_by, r.group_wait, r.group_interval, r.repeat_interval) for r in routes] == [
        ("0", "storage", ("host",), 10.0, 300.0, 3600.0),
        ("1", "audit", ("...",), 30.0, 300.0, 3600.0),
    ]
    assert Router(AlertingConfig().route).routes(alert())[0].group_wait == 30.0  # Alertmanager's default


def test_group_wait_then_group_interval():
    d = Dispatcher(Router(CFG.route))
    d.add(alert(service="a"), T)
    d.add(alert(service="a", host="h2"), T + 5)
    d.add(alert(service="b"), T + 5)
    assert d.flush(T + 29) == []
    first = d.flush(T + 30)
    assert [(n.labels, len(n.alerts)) for n in first] == [({"service": "a"}, 2)]
    assert [n.labels for n in d.flush(T + 35)] == [{"service": "b"}]
    assert d.flush(T + 30 + 299) == []
    assert d.next_flush() == T + 330  # a's group: 30 + group_interval (b's is at 335)
    assert [n.labels for n in d.flush(T + 330)] == [{"service": "a"}]


def test_next_flush_is_the_earliest_due_group():
    d = Dispatcher(Router(CFG.route))
    d.add(alert(service="a"), T)
    d.add(alert(service="b"), T + 5)
    assert d.next_flush() == T + 30
    d.flush(T + 30)
    assert d.next_flush() == T + 35


def test_an_alert_that_started_long_ago_is_flushed_at_once():
    d = Dispatcher(Router(CFG.route))
    d.add(alert(service="a", at=T - 3600), T)
    assert len(d.flush(T)) == 1


def test_continue_puts_an_alert_in_one_group_per_route_and_dots_group_by_every_label():
    d = Dispatcher(Router(CFG.route))
    d.add(alert("disk_failure", host="h1", disk="d1"), T)
    d.add(alert("disk_failure", host="h1", disk="d2"), T)
    out = d.flush(T + 30)
    got = sorted((n.receiver, tuple(n.labels.items()), len(n.alerts)) for n in out)
    assert got == [
        ("audit", (("cause", "disk_failure"), ("disk", "d1"), ("host", "h1"), ("severity", "warning")), 1),
        ("audit", (("cause", "disk_failure"), ("disk", "d2"), ("host", "h1"), ("severity", "warning")), 1),
        ("storage", (("host", "h1"),), 2),
    ]


def test_resolved_alerts_leave_after_delivery_and_empty_groups_go():
    store: dict[str, bytes] = {}
    d = Dispatcher(Router(CFG.route), store)
    a = alert(service="a")
    d.add(a, T)
    [n] = d.flush(T + 30)
    d.done(n)
    d.add(a.resolved(T + 100), T + 100)
    [n] = d.flush(T + 330)
    assert n.resolved and not n.firing
    assert store  # persisted until delivered
    d.done(n)
    assert d.groups == {} and store == {}


def test_a_resolve_for_an_unknown_group_is_not_a_new_group():
    d = Dispatcher(Router(CFG.route))
    d.add(alert(service="a").resolved(T), T)
    assert d.groups == {}


def test_groups_survive_a_restart():
    store: dict[str, bytes] = {}
    d = Dispatcher(Router(CFG.route), store)
    d.add(alert(service="a"), T)
    d.add(alert("disk_failure", host="h1", disk="d1"), T)
    d2 = Dispatcher(Router(CFG.route), store)
    assert d2.restore() == 3
    assert {n.key for n in d2.flush(T + 30)} == {n.key for n in d.flush(T + 30)}


class Recorder(Receiver):
    def __init__(self, name: str, groups: bool) -> None:
        self.name = name
        self.groups = groups
        self.sent: list = []

    async def notify(self, alert, memory):
        self.sent.append(("alert", alert.status, alert.cause))
        return {}

    async def notify_group(self, n, memory):
        self.sent.append(("group", tuple(sorted((a.fingerprint[:4], a.status) for a in n.alerts))))
        return {}


@pytest.mark.parametrize("groups", [False, True])
async def test_pipeline_sends_changes_once_and_repeats_groups_after_repeat_interval(groups):
    rec = Recorder("default", groups)
    cfg = load_model_text("""
receivers: [{name: default, console: {}}]
route: {receiver: default, group_by: [service], group_wait: 30s, group_interval: 5m, repeat_interval: 1h}
min_repeat_interval: {}  # Alertmanager's rule alone (warnings are otherwise reminded at most daily)
""", AlertingConfig)
    n = AlertNotifier(cfg, {"default": rec}, {})
    a = alert(service="a")
    await n.receive(a, T)
    for t in range(0, 3 * 3600, 60):
        await n.flush(T + t)
    if groups:
        # first flush, then a repeat every hour (at the group_interval tick after it)
        assert len(rec.sent) == 3
    else:
        assert rec.sent == [("alert", "firing", "unknown")]
    rec.sent.clear()
    await n.receive(dataclasses.replace(a, cause="capacity_saturation"), T + 3 * 3600)
    await n.receive(a.resolved(T + 3 * 3600 + 10), T + 3 * 3600 + 10)
    for t in range(3 * 3600, 4 * 3600, 60):
        await n.flush(T + t)
    if groups:
        assert [s[1][0][1] for s in rec.sent] == ["resolved"]
    else:
        assert rec.sent == [("alert", "resolved", "unknown")]
    assert n.dispatcher.groups == {}


async def test_send_resolved_false_tells_nothing_when_alerts_resolve():
    rec = Recorder("default", False)
    rec.send_resolved = False
    cfg = load_model_text("""
receivers: [{name: default, send_resolved: false, console: {}}]
route: {receiver: default, group_wait: 0s, group_interval: 1m}
""", AlertingConfig)
    n = AlertNotifier(cfg, {"default": rec}, {})
    a = alert(service="a")
    await n.receive(a, T)
    await n.receive(a.resolved(T + 10), T + 10)
    for t in range(0, 600, 10):
        await n.flush(T + t)
    assert rec.sent == [("alert", "firing", "unknown")]


def test_groups_of_one_shard_are_flushed_restored_and_forgotten_alone():
    store: dict[str, bytes] = {}
    d = Dispatcher(Router(CFG.route), store)
    a, b = alert(service="a"), alert(service="b")
    [ka] = d.keys(a)
    d.add(a, T, key=ka, shard=0)
    d.add(b, T, shard=1)
    d.add(alert(service="a", host="h2"), T, key="not-its-group", shard=0)  # another route's record: ignored
    assert [n.labels for n in d.flush(T + 30, shard=1)] == [{"service": "b"}]
    assert d.next_flush(shard=0) == T + 30 and d.next_flush(shard=1) == T + 330
    assert d.forget(0) == 1 and list(d.groups) == d.keys(b)
    other = Dispatcher(Router(CFG.route), store)  # the worker the partition moved to
    assert other.restore(0) == 1
    [n] = other.flush(T + 30, shard=0)
    assert n.labels == {"service": "a"} and len(n.alerts) == 1
