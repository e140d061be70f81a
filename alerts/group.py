"""Aggregation groups (Alertmanager's dispatcher): alerts batched per route and label values.

Each matched route (see :meth:`alerts.dispatch.Router.routes`) puts an alert
into the group of that route whose ``group_by`` label values are the
alert's. ``cause`` and ``severity`` group like labels; ``group_by: ['...']``
makes every label set its own group; ``group_by: []`` (the default) puts all
the route's alerts in one group.

Timing, driven by the ``now`` passed in (never a clock):

* a new group is flushed ``group_wait`` after its first alert (at once when
  that alert started more than ``group_wait`` ago, as in Alertmanager);
* then every ``group_interval``, with all its alerts (latest state of each);
  the notification pipeline decides from its log whether anything changed
  or ``repeat_interval`` has passed (:meth:`NotificationPipeline.deliver_group`);
* a resolved alert leaves its group once a flush that carried it has been
  delivered (:meth:`Dispatcher.done`); an empty group is dropped.

One incident per drive: a failing drive has an alert of its own (labels
host and disk, a warning) and, when the diagnosis ties a service's slowdown
to it, the service has one too (service, host and disk, critical). They are
two alerts, because CONTRACT says an alert that links a service and a
machine carries both labels and routes may send a service's alerts to its
team; they are one incident when the route that takes them groups by
``[host, disk]`` (``matchers: ['cause="disk_failure"']``, ``group_by: [host,
disk]``: the README's example), and a receiver that threads groups then
tells the escalation in the drive's thread. Nothing here special-cases
drives: grouping is what the route tree says, as in Alertmanager, so a
configuration read by Alertmanager users means the same here, and
Alertmanager fed with tocsin's alerts (the ``alertmanager`` receiver)
groups them the same way.

Groups are kept in an optional ``store`` (a mapping of group key to JSON
bytes: a Faust table in the worker), so a restarted worker continues the
same groups: :meth:`Dispatcher.restore` reads them back.

Several workers: each group can carry a ``shard`` (the worker passes the
Kafka partition its alerts were read from, all alerts of one group being
sent to one partition keyed by :meth:`Dispatcher.keys`); ``flush``,
``next_flush``, ``restore`` and ``forget`` then work on one shard, so a
worker only ever times and delivers the groups of the partitions it owns.

>>> from alerts.config import AlertingConfig, RouteConfig
>>> from alerts.dispatch import Router
>>> from alerts.model import Alert
>>> d = Dispatcher(Router(RouteConfig(receiver="r", group_by=["service"], group_wait=30)))
>>> a = Alert({"service": "ent", "host": None, "disk": None}, "firing", "warning", "t", "unknown", 0.5, 0.0)
>>> d.add(a, now=0.0)
>>> d.flush(now=10.0)
[]
>>> [(n.receiver, n.labels, len(n.alerts)) for n in d.flush(now=30.0)]
[('r', {'service': 'ent'}, 1)]
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass, field

import orjson

from .dispatch import RouteOpts, Router
from .model import Alert, alert_from_record

__all__ = ["AggregationGroup", "Dispatcher", "GroupNotification", "group_labels"]

_SCHEMA = "tocsin.group.v1"


def group_labels(alert: Alert, group_by: tuple[str, ...]) -> dict[str, str]:
    """The values of ``group_by`` for ``alert`` (unset labels left out; ``...``: all)."""
    labels = {k: v for k, v in alert.labels.items() if v is not None}
    labels["cause"] = alert.cause
    labels["severity"] = alert.severity
    if group_by == ("...",):
        return dict(sorted(labels.items()))
    return {k: labels[k] for k in sorted(group_by) if labels.get(k) is not None}


def _group_key(route: RouteOpts, labels: dict[str, str]) -> str:
    inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return f"{route.path or '/'}:{route.receiver}:{{{inner}}}"


@dataclass(frozen=True, slots=True)
class GroupNotification:
    """One flush of one group: what its receiver is to be told.

    ``alerts`` holds the latest state of each alert in the group, firing and
    resolved, ordered by start time; muting and the choice of what is new are
    the notification pipeline's.
    """

    key: str
    receiver: str
    route: RouteOpts
    labels: dict[str, str]
    alerts: tuple[Alert, ...]
    now: float

    @property
    def firing(self) -> tuple[Alert, ...]:
        return tuple(a for a in self.alerts if a.status == "firing")

    @property
    def resolved(self) -> tuple[Alert, ...]:
        return tuple(a for a in self.alerts if a.status == "resolved")


@dataclass(slots=True)
class AggregationGroup:
    key: str
    route: RouteOpts
    labels: dict[str, str]
    next_flush: float
    alerts: dict[str, Alert] = field(default_factory=dict)
    shard: int | None = None

    def to_bytes(self) -> bytes:
        return orjson.dumps({
            "schema": _SCHEMA,
            "key": self.key,
            "labels": self.labels,
            "next_flush": self.next_flush,
            "shard": self.shard,
            "alerts": [a.to_record() for a in self.alerts.values()],
        })


class Dispatcher:
    """Alerts in (:meth:`add`), group notifications out when due (:meth:`flush`).

    Parameters
    ----------
    router
        The route tree.
    store
        Optional persistence of the groups (group key to JSON bytes).
    """

    def __init__(self, router: Router, store: MutableMapping[str, bytes] | None = None) -> None:
        self.router = router
        self.store = store
        self.groups: dict[str, AggregationGroup] = {}

    def keys(self, alert: Alert) -> list[str]:
        """The keys of the groups ``alert`` belongs to (one per matched route)."""
        return [_group_key(r, group_labels(alert, r.group_by)) for r in self.router.routes(alert)]

    def add(self, alert: Alert, now: float, *, key: str | None = None, shard: int | None = None) -> None:
        """Put one alert state change into the groups of its routes.

        ``key``: only into that group (the worker's repartitioned stream
        carries one record per group); ``shard``: the shard of a new group.
        """
        for route in self.router.routes(alert):
            labels = group_labels(alert, route.group_by)
            k = _group_key(route, labels)
            if key is not None and k != key:
                continue
            g = self.groups.get(k)
            if g is None:
                if alert.status == "resolved":
                    # A resolve for an alert this route never grouped (or already
                    # told): nothing to batch it with, nothing to announce.
                    continue
                wait = 0.0 if alert.starts_at + route.group_wait < now else route.group_wait
                g = self.groups[k] = AggregationGroup(k, route, labels, now + wait, shard=shard)
            old = g.alerts.get(alert.fingerprint)
            if old is not None and old.status == "resolved" and alert.status == "firing" and alert.starts_at < old.starts_at:
                continue  # an older state replayed after the resolve
            g.alerts[alert.fingerprint] = alert
            self._save(g)

    def _of(self, shard: int | None) -> list[AggregationGroup]:
        gs = list(self.groups.values())
        return gs if shard is None else [g for g in gs if g.shard in (shard, None)]

    def flush(self, now: float, shard: int | None = None) -> list[GroupNotification]:
        """Notifications of the groups (of ``shard``) due at ``now``; each group's next flush is set."""
        out = []
        for g in self._of(shard):
            if g.next_flush > now or not g.alerts:
                continue
            g.next_flush = now + g.route.group_interval
            alerts = tuple(sorted(g.alerts.values(), key=lambda a: (a.starts_at, a.fingerprint)))
            out.append(GroupNotification(g.key, g.route.receiver, g.route, dict(g.labels), alerts, now))
            self._save(g)
        return out

    def done(self, n: GroupNotification) -> None:
        """The notification was delivered: its resolved alerts leave the group (unless changed since)."""
        g = self.groups.get(n.key)
        if g is None:
            return
        for a in n.resolved:
            if g.alerts.get(a.fingerprint) == a:
                del g.alerts[a.fingerprint]
        if g.alerts:
            self._save(g)
        else:
            del self.groups[n.key]
            self._drop(n.key)

    def next_flush(self, shard: int | None = None) -> float | None:
        """When the next group (of ``shard``) is due (None: no group), for a timer."""
        return min((g.next_flush for g in self._of(shard) if g.alerts), default=None)

    def forget(self, shard: int) -> int:
        """Drop the groups of ``shard`` from memory (not from the store): its partition went elsewhere."""
        gone = [k for k, g in self.groups.items() if g.shard == shard]
        for k in gone:
            del self.groups[k]
        return len(gone)

    def alerts(self) -> Iterator[Alert]:
        """Every alert held in a group (latest state), each once."""
        seen: set[str] = set()
        for g in self.groups.values():
            for fp, a in g.alerts.items():
                if fp not in seen:
                    seen.add(fp)
                    yield a

    # -- persistence ------------------------------------------------------

    # The store is used through get / set / del / iter only (a Faust table view).

    def _save(self, g: AggregationGroup) -> None:
        if self.store is not None:
            self.store[g.key] = g.to_bytes()

    def _drop(self, key: str) -> None:
        if self.store is not None and self.store.get(key) is not None:
            del self.store[key]

    def restore(self, shard: int | None = None) -> int:
        """Read the groups (of ``shard``: None for all) back from the store; returns how many.

        A group whose route no longer exists in the configuration is dropped
        and its alerts are re-added through the current routes.
        """
        if self.store is None:
            return 0
        routes: dict[str, RouteOpts] = {}
        orphans: list[Alert] = []
        n = 0
        for key in list(self.store):
            raw = self.store.get(key)
            if raw is None:
                continue
            rec = orjson.loads(raw)
            rec_shard = rec.get("shard")
            if shard is not None and rec_shard not in (shard, None):
                continue
            alerts = [alert_from_record(r) for r in rec["alerts"]]
            route = None
            for a in alerts:
                for r in self.router.routes(a):
                    routes[_group_key(r, group_labels(a, r.group_by))] = r
                route = routes.get(key)
                if route is not None:
                    break
            if route is None:
                self._drop(key)
                orphans.extend(alerts)
                continue
            self.groups[key] = AggregationGroup(
                key, route, dict(rec["labels"]), float(rec["next_flush"]), {a.fingerprint: a for a in alerts},
                shard=rec_shard,
            )
            n += 1
        for a in orphans:
            self.add(a, now=a.starts_at, shard=shard)
        return n
