"""AlertNotifier: the whole router behind two calls, ``receive(alert, now)`` and ``flush(now)``.

It wires Alertmanager's stages together for the stream layer: the
:class:`~alerts.inhibit.Inhibitor` learns every alert state change, the
:class:`~alerts.group.Dispatcher` groups it by route, and due groups go
through the :class:`~alerts.notify.pipeline.NotificationPipeline` (time
muting, inhibition, silences, send_resolved, notification log, retries).
A lock keeps the agent and the timer from delivering at the same time.

With several workers, every call takes a ``shard`` (the Kafka partition of
the repartitioned stream, one group per partition): a worker then delivers
only the groups of the partitions it owns, and :meth:`observe` feeds the
inhibitor with the alerts of every partition.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping

from alerts.config import AlertingConfig
from alerts.dispatch import Router
from alerts.group import Dispatcher
from alerts.inhibit import Inhibitor
from alerts.model import Alert
from alerts.silence import Silencer, SilenceStore

from .base import Receiver
from .pipeline import NotificationPipeline

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
    sleep, backoff_initial, backoff_max
        For the retry stage (see NotificationPipeline).
    """

    def __init__(
        self,
        config: AlertingConfig,
        receivers: dict[str, Receiver],
        deliveries: MutableMapping[str, bytes],
        *,
        groups: MutableMapping[str, bytes] | None = None,
        silences: SilenceStore | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        backoff_initial: float = 1.0,
        backoff_max: float = 60.0,
    ) -> None:
        self.config = config
        self.router = Router(config.route)
        self.inhibitor = Inhibitor(config.inhibit_rules)
        self.silences = silences if silences is not None else SilenceStore()
        self.silencer = Silencer(self.silences)
        self.dispatcher = Dispatcher(self.router, groups)
        self.pipeline = NotificationPipeline(
            receivers, self.router, deliveries,
            sleep=sleep, backoff_initial=backoff_initial, backoff_max=backoff_max,
            muters=(self.inhibitor, self.silencer), time_intervals=config.intervals(),
        )
        self._lock = asyncio.Lock()

    @property
    def counts(self):
        return self.pipeline.counts

    def restore(self, shard: int | None = None) -> int:
        """Reload the persisted groups (of ``shard``) and their firing alerts into the inhibitor; returns the groups."""
        n = self.dispatcher.restore(shard)
        for a in self.dispatcher.alerts():
            self.inhibitor.observe(a)
        return n

    def forget(self, shard: int) -> int:
        """Drop the groups of ``shard`` from memory (its partition was revoked)."""
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
        """Deliver the groups (of ``shard``) due at ``now`` (from a timer, ~every second); returns messages sent."""
        sent = 0
        async with self._lock:
            for n in self.dispatcher.flush(now, shard):
                sent += await self.pipeline.deliver_group(n)
                self.dispatcher.done(n)
        return sent

    def next_flush(self, shard: int | None = None) -> float | None:
        return self.dispatcher.next_flush(shard)
