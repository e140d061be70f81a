"""The notification pipeline: route, deduplicate, send, retry.

For each alert state change, the router names the receivers; for each one
the pipeline looks up what was already delivered for this fingerprint (a
mapping the caller persists: a Faust table in the worker), skips a state
change it already delivered (so at-least-once replays never post twice),
and calls the receiver, retrying with capped exponential backoff until it
succeeds. Nothing is dropped: a receiver that keeps failing holds back the
alerts behind it, in order, and every failure is counted and logged
(without secrets: receivers never put them in their errors).

Two entry points:

- :meth:`NotificationPipeline.deliver` sends one alert state change to its
  receivers at once (no grouping, no muting);
- :meth:`NotificationPipeline.deliver_group` sends one group notification
  (:mod:`alerts.group`) through Alertmanager's stages: time muting of the
  route (``mute_time_intervals`` / ``active_time_intervals``), inhibition,
  silences, ``send_resolved``, then deduplication against the notification
  log (the same ``deliveries`` mapping) and the retry stage. A per-alert
  receiver (Slack bot) gets each changed alert; a per-group receiver
  (webhook) gets the group when its firing set changed, something resolved,
  or ``repeat_interval`` passed since it was last told.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any, Protocol

import orjson

from alerts.dispatch import RouteOpts, Router
from alerts.errors import NotifyError
from alerts.group import GroupNotification
from alerts.matchers import alert_labels
from alerts.model import Alert
from alerts.timeinterval import TimeRange, in_any

from .base import Receiver

__all__ = ["Muter", "NotificationPipeline", "state_id"]


class Muter(Protocol):
    """What the Inhibitor and the Silencer have in common."""

    def mutes(self, labels: dict[str, str | None], now: float) -> bool: ...

log = logging.getLogger(__name__)

#: State changes remembered per receiver and alert (an incident has a few).
_KEEP = 32


def state_id(alert: Alert) -> str:
    """Identifies one state change of one alert (same change replayed: same id)."""
    h = hashlib.blake2b(digest_size=8)
    h.update(f"{alert.fingerprint}|{alert.status}|{alert.cause}|{alert.severity}|{alert.starts_at!r}|{alert.ends_at!r}".encode())
    return h.hexdigest()


class NotificationPipeline:
    """Delivers alert state changes to receivers, at least once and never twice.

    Parameters
    ----------
    receivers
        Receivers by name.
    router
        Picks the receivers of each alert.
    deliveries
        ``"<receiver>|<fingerprint>"`` to a small JSON document: the
        receiver's memory and the ids of the state changes delivered.
    backoff_initial, backoff_max
        Retry delays in seconds (doubling, capped); a receiver's
        ``retry_after`` wins when longer.
    sleep
        Injected for tests.
    muters
        Inhibitor, Silencer...: ``mutes(labels, now)``; a muted alert is left
        out of group notifications (not of :meth:`deliver`).
    time_intervals
        Named time intervals (``AlertingConfig.intervals()``) for the routes'
        ``mute_time_intervals`` and ``active_time_intervals``.
    """

    def __init__(
        self,
        receivers: dict[str, Receiver],
        router: Router,
        deliveries: MutableMapping[str, bytes],
        *,
        backoff_initial: float = 1.0,
        backoff_max: float = 60.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        muters: Iterable[Muter] = (),
        time_intervals: dict[str, list[TimeRange]] | None = None,
    ) -> None:
        self.receivers = receivers
        self.router = router
        self.deliveries = deliveries
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.sleep = sleep
        self.counts: Counter[str] = Counter()
        self.muters = list(muters)
        self.time_intervals = time_intervals or {}

    async def deliver(self, alert: Alert) -> None:
        """Send one alert state change to each of its receivers now (no grouping, no muting)."""
        for name in self.router.match(alert):
            receiver = self.receivers.get(name)
            if receiver is None:
                continue
            if alert.status == "resolved" and not receiver.send_resolved:
                continue
            await self._deliver_one(name, receiver, alert)

    async def _deliver_one(self, name: str, receiver: Receiver, alert: Alert, *, only_if_told: bool = False) -> bool:
        sid = state_id(alert)
        key = f"{name}|{alert.fingerprint}"
        raw = self.deliveries.get(key)
        rec = orjson.loads(raw) if raw else {}
        done = rec.get("done", [])
        if sid in done:
            self.counts[f"duplicate.{name}"] += 1
            return False
        if only_if_told and not done:
            # A resolve of an alert this receiver was never told about: nothing to say.
            self.counts[f"untold.{name}"] += 1
            return False
        memory = await self._retry(receiver, lambda: receiver.notify(alert, rec.get("memory")), f"alert {alert.fingerprint}")
        self.deliveries[key] = orjson.dumps({"memory": memory, "done": [*done, sid][-_KEEP:]})
        self.counts[f"sent.{name}"] += 1
        return True

    # -- groups -------------------------------------------------------------

    def time_muted(self, route: RouteOpts, now: float) -> bool:
        """Is the route muted at ``now`` by its time intervals?"""
        if route.mute_time_intervals and any(
            in_any(self.time_intervals.get(n, ()), now) for n in route.mute_time_intervals
        ):
            return True
        return bool(route.active_time_intervals) and not any(
            in_any(self.time_intervals.get(n, ()), now) for n in route.active_time_intervals
        )

    def muted(self, alert: Alert, now: float) -> bool:
        """Is ``alert`` muted (inhibited or silenced) at ``now``?"""
        labels = alert_labels(alert)
        return any(m.mutes(labels, now) for m in self.muters)

    async def deliver_group(self, n: GroupNotification) -> int:
        """Send one group notification through the stages; returns the messages sent (0 or more)."""
        receiver = self.receivers.get(n.receiver)
        if receiver is None:
            return 0
        name, now = n.receiver, n.now
        if self.time_muted(n.route, now):
            self.counts[f"muted_time.{name}"] += 1
            return 0
        alerts = []
        for a in n.alerts:
            if self.muted(a, now):
                self.counts[f"muted.{name}"] += 1
            else:
                alerts.append(a)
        firing = [a for a in alerts if a.status == "firing"]
        resolved = [a for a in alerts if a.status == "resolved"] if receiver.send_resolved else []
        if not receiver.groups:
            sent = 0
            for a in firing + resolved:
                sent += await self._deliver_one(name, receiver, a, only_if_told=a.status == "resolved")
            return sent
        key = f"{name}|group|{n.key}"
        raw = self.deliveries.get(key)
        entry = orjson.loads(raw) if raw else None
        firing_ids = sorted(state_id(a) for a in firing)
        resolved_ids = sorted(state_id(a) for a in resolved)
        repeat = n.route.repeat_interval if receiver.resend_interval is None else receiver.resend_interval
        if not _needs_update(entry, firing_ids, resolved_ids, now, repeat):
            self.counts[f"duplicate.{name}"] += 1
            return 0
        memory = entry.get("memory") if entry else None
        sent = 0
        if firing or resolved:
            out = dataclasses.replace(n, alerts=tuple(firing + resolved))
            memory = await self._retry(receiver, lambda: receiver.notify_group(out, memory), f"group {n.key}")
            self.counts[f"sent.{name}"] += 1
            sent = 1
        self.deliveries[key] = orjson.dumps(
            {"firing": firing_ids, "resolved": resolved_ids, "at": now, "memory": memory}
        )
        return sent

    # -- retry stage ----------------------------------------------------------

    async def _retry(self, receiver: Receiver, call: Callable[[], Awaitable[Any]], what: str) -> Any:
        delay = self.backoff_initial
        attempt = 0
        while True:
            attempt += 1
            try:
                return await call()
            except NotifyError as exc:
                self.counts[f"failed.{receiver.name}"] += 1
                wait = max(delay, exc.retry_after or 0.0)
                level = logging.WARNING if exc.retryable else logging.ERROR
                log.log(level, "receiver %s failed on %s (attempt %d, %s), retrying in %.0f s: %s",
                        receiver.name, what, attempt,
                        "retryable" if exc.retryable else "needs attention", wait, exc)
                await self.sleep(wait)
                delay = min(self.backoff_max, delay * 2)


def _needs_update(entry: dict | None, firing: list[str], resolved: list[str], now: float, repeat: float) -> bool:
    """Alertmanager's dedup rule over the notification log entry of a group."""
    if entry is None:
        return bool(firing)
    if not set(firing) <= set(entry["firing"]):
        return True
    if not firing:
        return bool(entry["firing"])
    if not set(resolved) <= set(entry["resolved"]):
        return True
    return now - entry["at"] >= repeat
