"""AlertNotifier: the whole router behind two calls, ``receive(alert, now)`` and ``flush(now)``.

It wires Alertmanager's stages together for the stream layer: the
:class:`~alerts.inhibit.Inhibitor` learns every alert state change, the
:class:`~alerts.group.Dispatcher` groups it by route, and due groups go
through the :class:`~alerts.notify.pipeline.NotificationPipeline` (time
muting, inhibition, silences, send_resolved, notification log, retries).
A lock keeps the agent and the timer from delivering at the same time.

Each flush delivers the due groups of different receivers concurrently (the
groups of one receiver in order), and a receiver that fails never waits in
the flush: the pipeline schedules its retry (jittered backoff, in the time
passed in) or, when the receiver is broken for good, hands its
notifications to its fallbacks and the console. :meth:`next_flush` includes
the retries, so the caller's timer comes back when one is due.

With several workers, every call takes a ``shard`` (the Kafka partition of
the repartitioned stream, one group per partition): a worker then delivers
only the groups of the partitions it owns, and :meth:`observe` feeds the
inhibitor with the alerts of every partition.
"""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from collections.abc import Mapping, MutableMapping

from alerts.ack import ReminderMuter
from alerts.config import AlertingConfig
from alerts.dispatch import Router
from alerts.group import Dispatcher, GroupNotification
from alerts.inhibit import Inhibitor
from alerts.model import Alert
from alerts.silence import Silencer, SilenceStore

from .base import Receiver
from .console import ConsoleReceiver
from .pipeline import NotificationPipeline, ReceiverHealth

__all__ = ["AlertNotifier"]


class AlertNotifier:
    """Alert state changes in, grouped, muted and deduplicated notifications out.

    Parameters
    ----------
    config
        The ``alerting`` configuration.
    receivers
        Receivers by name (``build_receivers(config)``).
    deliveries
        The notification log (receiver memory and what was sent), persisted.
    groups
        The aggregation groups, persisted (None: in memory only).
    silences
        The silence store shared with the silence API (None: an empty one).
    backoff_initial, backoff_max, recheck_after, attempt_timeout, rng
        For the retry stage (see NotificationPipeline).
    console
        The last fallback of every receiver: None takes the configuration's
        console receiver if it has one, else a console on stdout.
    """

    def __init__(
        self,
        config: AlertingConfig,
        receivers: dict[str, Receiver],
        deliveries: MutableMapping[str, bytes],
        *,
        groups: MutableMapping[str, bytes] | None = None,
        silences: SilenceStore | None = None,
        backoff_initial: float = 1.0,
        backoff_max: float = 60.0,
        recheck_after: float = 600.0,
        attempt_timeout: float = 60.0,
        console: Receiver | None = None,
        rng: random.Random | None = None,
        acks: ReminderMuter | None = None,
    ) -> None:
        self.config = config
        self.router = Router(config.route)
        self.inhibitor = Inhibitor(config.inhibit_rules)
        self.silences = silences if silences is not None else SilenceStore()
        self.silencer = Silencer(self.silences)
        self.dispatcher = Dispatcher(self.router, groups)
        if console is None:
            console = next((receivers[r.name] for r in config.receivers
                            if r.console is not None and r.name in receivers), None) or ConsoleReceiver(name="console")
        self.pipeline = NotificationPipeline(
            receivers, deliveries,
            backoff_initial=backoff_initial, backoff_max=backoff_max,
            muters=(self.inhibitor, self.silencer), time_intervals=config.intervals(),
            fallbacks={r.name: r.fallback for r in config.receivers}, console=console,
            recheck_after=recheck_after, attempt_timeout=attempt_timeout, rng=rng,
            reminder_muters=(acks,) if acks is not None else (),
            min_repeat_interval=config.min_repeat_interval,
        )
        self._lock = asyncio.Lock()

    @property
    def counts(self):
        return self.pipeline.counts

    def failed_receivers(self) -> Mapping[str, ReceiverHealth]:
        """Receivers marked failed now, with their error and what to fix (a gauge for the metrics)."""
        return self.pipeline.failed_receivers()

    def restore(self, shard: int | None = None) -> int:
        """Reload the persisted groups (of ``shard``) and their firing alerts into the inhibitor; returns the groups."""
        n = self.dispatcher.restore(shard)
        for a in self.dispatcher.alerts():
            self.inhibitor.observe(a)
        return n

    def forget(self, shard: int) -> int:
        """Drop the groups of ``shard`` from memory (its partition was revoked)."""
        keys = [k for k, g in self.dispatcher.groups.items() if g.shard == shard]
        for k in keys:
            self.pipeline.retries.pop(k, None)
        return self.dispatcher.forget(shard)

    def observe(self, alert: Alert) -> None:
        """Learn an alert state change for inhibition only (it is grouped by another call or worker)."""
        self.inhibitor.observe(alert)

    def group_keys(self, alert: Alert) -> list[str]:
        """The keys of the groups ``alert`` goes to: what a repartition keys it by."""
        return self.dispatcher.keys(alert)

    async def receive(self, alert: Alert, now: float, *, key: str | None = None, shard: int | None = None) -> int:
        """Take one alert state change (as read from the ``alerts`` topic); deliver what is due.

        ``key``: only into that group (a repartitioned record); ``shard``:
        the partition it was read from (flush only that shard's groups).
        """
        self.inhibitor.observe(alert)
        self.dispatcher.add(alert, now, key=key, shard=shard)
        return await self.flush(now, shard)

    async def flush(self, now: float, shard: int | None = None) -> int:
        """Deliver the groups (of ``shard``) due at ``now`` and the retries due; returns messages sent.

        Called from a timer (~every second) and after each alert.
        """
        async with self._lock:
            due = self.dispatcher.flush(now, shard)
            keys = {n.key for n in due}
            for key in self.pipeline.due_retries(now):
                if key in keys:
                    continue  # the group's regular flush carries its latest state
                n = self._notification(key, now, shard)
                if n is None:
                    if key not in self.dispatcher.groups:
                        self.pipeline.retries.pop(key, None)  # the group is gone (delivered elsewhere)
                    continue
                due.append(n)
            by_receiver: dict[str, list[GroupNotification]] = defaultdict(list)
            for n in due:
                by_receiver[n.receiver].append(n)
            sent = await asyncio.gather(*(self._deliver(ns) for ns in by_receiver.values()))
            return sum(sent)

    async def _deliver(self, notifications: list[GroupNotification]) -> int:
        """One receiver's notifications, in order."""
        sent = 0
        for n in notifications:
            d = await self.pipeline.send_group(n)
            sent += d.sent
            if d.accounted:
                self.dispatcher.done(n)
        return sent

    def _notification(self, key: str, now: float, shard: int | None) -> GroupNotification | None:
        """The current state of group ``key`` (of ``shard``) as a notification, for a retry."""
        g = self.dispatcher.groups.get(key)
        if g is None or not g.alerts or (shard is not None and g.shard not in (shard, None)):
            return None
        alerts = tuple(sorted(g.alerts.values(), key=lambda a: (a.starts_at, a.fingerprint)))
        return GroupNotification(g.key, g.route.receiver, g.route, dict(g.labels), alerts, now)

    def next_flush(self, shard: int | None = None) -> float | None:
        """When the next group or retry (of ``shard``) is due (None: nothing pending), for a timer."""
        keys = [k for k, g in self.dispatcher.groups.items() if shard is None or g.shard in (shard, None)]
        times = [t for t in (self.dispatcher.next_flush(shard), self.pipeline.next_retry(keys)) if t is not None]
        return min(times, default=None)
