"""The notification pipeline: mute, deduplicate, send, and retry each receiver on its own.

:meth:`NotificationPipeline.send_group` takes one group notification
(:mod:`alerts.group`) through Alertmanager's stages: time muting of the
route (``mute_time_intervals`` / ``active_time_intervals``), inhibition,
silences, ``send_resolved``, deduplication against the notification log
(``deliveries``, a mapping the caller persists: a Faust table in the
worker), then one attempt at the receiver. A per-alert receiver (console)
gets each changed alert; a per-group receiver (Slack thread, webhook,
Alertmanager) gets the group when its firing set changed, something
resolved, or ``repeat_interval`` passed since it was last told; that
interval is at least the ``min_repeat_interval`` of the group's severity
(its most severe firing alert's: a group of warnings is reminded at most
daily by default), and the receiver is handed the route with the interval
in force, so that it tells a reminder apart the same way.

Nothing here sleeps, and one receiver never holds back another. What
happens after a failed attempt depends on what the receiver said
(:class:`~alerts.errors.NotifyError`):

- retryable (timeout, dropped connection, HTTP 408/429/5xx): the group is
  due again after a jittered exponential backoff (``backoff_initial``
  doubling up to ``backoff_max``, each delay drawn in its upper half; a
  longer ``Retry-After`` wins). The caller asks :meth:`due_retries` at each
  flush; until the group is delivered it is not marked done, so its
  resolved alerts stay in it and the retry carries the group's latest state.
- not retryable, scope ``receiver`` (Slack ``invalid_auth``,
  ``channel_not_found``, ``account_inactive``..., HTTP 4xx other than 408
  and 429): the receiver is marked failed, logged once at ERROR with what
  to fix, counted (``receiver_failed.<name>``); it is not tried again
  before ``recheck_after`` seconds (then one notification probes it: on
  success it is healthy again). Meanwhile its notifications go to its
  fallbacks (the configuration's ``fallback`` receivers) and to the console.
- not retryable, scope ``message`` (a message Slack refuses): counted
  (``refused.<name>``), logged, and that notification goes to the
  fallbacks; the receiver stays healthy.

Every notification is accounted for: delivered, retried, or handed to the
fallbacks and the console (``fallback.<name>`` counts the alert state changes handed over). The
``counts`` are what the metrics module reads: ``sent.<r>``,
``failed.<r>`` (each failed attempt), ``retried.<r>`` (each retry
scheduled), ``fallback.<r>``, ``refused.<r>``, ``receiver_failed.<r>``,
``receiver_recovered.<r>``, ``duplicate.<r>``, ``muted.<r>``...;
:meth:`failed_receivers` says which receivers are failed now. Errors never
carry secrets (receivers redact them).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import math
import random
from collections import Counter
from collections.abc import Iterable, Mapping, MutableMapping
from typing import Protocol

import orjson

from alerts.ack import ReminderMuter
from alerts.dispatch import RouteOpts
from alerts.errors import NotifyError
from alerts.group import GroupNotification
from alerts.matchers import alert_labels
from alerts.model import Alert
from alerts.timeinterval import TimeRange, in_any

from .base import Receiver

__all__ = ["Delivery", "Muter", "NotificationPipeline", "ReceiverHealth", "Retry", "group_severity", "state_id"]


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


@dataclasses.dataclass(slots=True)
class ReceiverHealth:
    """Whether a receiver is usable; a failed one waits for ``next_probe``."""

    failed: bool = False
    error: str | None = None
    fix: str | None = None
    since: float | None = None
    next_probe: float = 0.0


@dataclasses.dataclass(slots=True)
class Retry:
    """A group to try again at ``due`` (after its ``attempt``-th failure)."""

    receiver: str
    attempt: int
    due: float
    error: str
    #: The first notification that failed, sent before the group's latest state (None: only the latest).
    first: GroupNotification | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Delivery:
    """What :meth:`NotificationPipeline.send_group` did.

    ``accounted``: the notification was delivered, had nothing to say, or
    was handed to the fallbacks (the group may forget its resolved alerts);
    False: a retry is scheduled.
    """

    sent: int
    accounted: bool


class NotificationPipeline:
    """Delivers group notifications to receivers, at least once and never twice, each receiver on its own.

    Parameters
    ----------
    receivers
        Receivers by name.
    deliveries
        The notification log: ``"<receiver>|<fingerprint>"`` and
        ``"<receiver>|group|<group key>"`` to a small JSON document (the
        receiver's memory and what was delivered).
    backoff_initial, backoff_max
        Retry delays in seconds (doubling, capped, jittered); a receiver's
        ``retry_after`` wins when longer.
    muters
        Inhibitor, Silencer...: ``mutes(labels, now)``; a muted alert is left
        out of group notifications.
    time_intervals
        Named time intervals (``AlertingConfig.intervals()``) for the routes'
        ``mute_time_intervals`` and ``active_time_intervals``.
    fallbacks
        Receiver name to the receivers that get its notifications while it is
        failed (``fallback`` in the configuration).
    console
        The last fallback of every receiver (None: none).
    recheck_after
        Seconds before a failed receiver is tried again.
    attempt_timeout
        Longest one attempt at one receiver may take (its in-call retries
        included); longer counts as a retryable failure.
    rng
        The jitter's random source (seeded in tests).
    min_repeat_interval
        Per severity, a floor on the routes' ``repeat_interval`` for groups
        whose most severe firing alert has that severity
        (``AlertingConfig.min_repeat_interval``).
    """

    def __init__(
        self,
        receivers: dict[str, Receiver],
        deliveries: MutableMapping[str, bytes],
        *,
        backoff_initial: float = 1.0,
        backoff_max: float = 60.0,
        muters: Iterable[Muter] = (),
        reminder_muters: Iterable[ReminderMuter] = (),
        time_intervals: dict[str, list[TimeRange]] | None = None,
        fallbacks: Mapping[str, Iterable[str]] | None = None,
        console: Receiver | None = None,
        recheck_after: float = 600.0,
        attempt_timeout: float = 60.0,
        rng: random.Random | None = None,
        min_repeat_interval: Mapping[str, float] | None = None,
    ) -> None:
        self.receivers = receivers
        self.min_repeat_interval = dict(min_repeat_interval or {})
        self.deliveries = deliveries
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.counts: Counter[str] = Counter()
        self.muters = list(muters)
        self.reminder_muters = list(reminder_muters)
        self.time_intervals = time_intervals or {}
        self.fallbacks = {k: list(v) for k, v in (fallbacks or {}).items()}
        self.console = console
        self.recheck_after = recheck_after
        self.attempt_timeout = attempt_timeout
        self.rng = rng if rng is not None else random.Random()  # noqa: S311 - jitter, not security
        self.health: dict[str, ReceiverHealth] = {}
        #: Group key to its pending retry.
        self.retries: dict[str, Retry] = {}

    # -- health and retry schedule -------------------------------------------

    def health_of(self, name: str) -> ReceiverHealth:
        h = self.health.get(name)
        if h is None:
            h = self.health[name] = ReceiverHealth()
        return h

    def failed_receivers(self) -> dict[str, ReceiverHealth]:
        """The receivers marked failed now (for a metrics gauge and the logs)."""
        return {k: h for k, h in self.health.items() if h.failed}

    def backoff(self, attempt: int, retry_after: float | None = None) -> float:
        """Delay before retry number ``attempt`` (1, 2...): capped doubling, drawn in its upper half."""
        base = min(self.backoff_max, self.backoff_initial * 2.0 ** (attempt - 1))
        delay = base / 2 + self.rng.uniform(0.0, base / 2)
        return max(delay, retry_after or 0.0)

    def due_retries(self, now: float) -> list[str]:
        """Group keys whose retry is due at ``now``."""
        return [k for k, r in self.retries.items() if r.due <= now]

    def next_retry(self, keys: Iterable[str] | None = None) -> float | None:
        """When the next retry (of ``keys``, None: of all) is due."""
        if keys is None:
            return min((r.due for r in self.retries.values()), default=None)
        return min((self.retries[k].due for k in keys if k in self.retries), default=None)

    # -- muting --------------------------------------------------------------

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

    # -- delivery ------------------------------------------------------------

    async def deliver_group(self, n: GroupNotification) -> int:
        """Send one group notification; returns the messages sent (see :meth:`send_group`)."""
        return (await self.send_group(n)).sent

    async def send_group(self, n: GroupNotification) -> Delivery:
        """One attempt at one group notification, through the stages; never raises NotifyError."""
        name, now = n.receiver, n.now
        receiver = self.receivers.get(name)
        if receiver is None:
            self.counts[f"unknown_receiver.{name}"] += 1
            return Delivery(0, True)
        if self.time_muted(n.route, now):
            self.counts[f"muted_time.{name}"] += 1
            return Delivery(0, True)
        alerts = []
        for a in n.alerts:
            if self.muted(a, now):
                self.counts[f"muted.{name}"] += 1
            else:
                alerts.append(a)
        n = dataclasses.replace(n, alerts=tuple(alerts))
        health = self.health_of(name)
        retry = self.retries.get(n.key)
        # The oldest notification that failed goes first: a group that fired and
        # resolved during an outage is still told that it fired.
        todo = [dataclasses.replace(retry.first, now=now), n] if retry is not None and retry.first is not None else [n]
        if health.failed and now < health.next_probe:
            self.retries.pop(n.key, None)
            for m in todo:
                await self._fall_back(name, receiver, m, health.error or "failed")
            return Delivery(0, True)
        if retry is not None and retry.due > now and not health.failed:
            return Delivery(0, False)  # backing off; the retry carries the group's latest state
        sent = 0
        for i, m in enumerate(todo):
            try:
                sent += await asyncio.wait_for(self._send(name, receiver, m), self.attempt_timeout)
            except NotifyError as exc:
                return await self._failed(name, receiver, todo[i:], exc, now)
            except TimeoutError:
                err = NotifyError(f"receiver {name!r}: no answer within {self.attempt_timeout:g}s", retryable=True)
                return await self._failed(name, receiver, todo[i:], err, now)
            except Exception as exc:  # noqa: BLE001 - a bug in one receiver must not stop the others
                log.exception("receiver %s raised on group %s; its notification goes to the fallbacks", name, n.key)
                err = NotifyError(f"receiver {name!r}: {type(exc).__name__}: {exc}", retryable=False, scope="message")
                return await self._failed(name, receiver, todo[i:], err, now)
        self.retries.pop(n.key, None)
        if health.failed and not sent:
            # The probe had nothing to say to the failed receiver (it never heard of
            # these alerts): its fallbacks still need to hear.
            for m in todo:
                await self._fall_back(name, receiver, m, health.error or "failed")
        elif health.failed:
            self.health[name] = ReceiverHealth()
            self.counts[f"receiver_recovered.{name}"] += 1
            log.warning("receiver %s delivers again (it had failed since %s: %s)", name, health.since, health.error)
        return Delivery(sent, True)

    async def _failed(self, name: str, receiver: Receiver, left: list[GroupNotification], exc: NotifyError,
                      now: float) -> Delivery:
        """``left[0]`` failed with ``exc``; ``left[1:]`` (the group's latest state) was not tried."""
        self.counts[f"failed.{name}"] += 1
        health = self.health_of(name)
        key = left[0].key
        if exc.retryable and not health.failed:
            prev = self.retries.get(key)
            attempt = prev.attempt + 1 if prev else 1
            wait = self.backoff(attempt, exc.retry_after)
            first = left[0] if len(left) > 1 or left[0].firing else None
            self.retries[key] = Retry(name, attempt, now + wait, str(exc), first)
            self.counts[f"retried.{name}"] += 1
            log.warning("receiver %s failed on group %s (attempt %d), retrying in %.1f s: %s",
                        name, key, attempt, wait, exc)
            return Delivery(0, False)
        self.retries.pop(key, None)
        if health.failed:
            # A probe of a failed receiver failed: it stays failed.
            health.next_probe = now + self.recheck_after
            log.info("receiver %s still fails (%s); next try in %.0f s", name, exc, self.recheck_after)
        elif exc.scope == "receiver":
            self.health[name] = ReceiverHealth(True, str(exc), exc.fix, now, now + self.recheck_after)
            self.counts[f"receiver_failed.{name}"] += 1
            fallbacks = [*self._fallback_names(name), *(["console"] if self.console is not None else [])]
            log.error("receiver %s FAILED and is not retried: %s. To fix: %s. Its notifications go to: %s "
                      "(it is tried again in %.0f s)", name, exc, exc.fix or "see the error",
                      ", ".join(fallbacks) or "nowhere (no fallback configured)", self.recheck_after)
        else:
            self.counts[f"refused.{name}"] += 1
            log.error("receiver %s refused the notification of group %s: %s%s; it goes to the fallbacks",
                      name, key, exc, f". To fix: {exc.fix}" if exc.fix else "")
        for m in left:
            await self._fall_back(name, receiver, dataclasses.replace(m, now=now), str(exc))
        return Delivery(0, True)

    def _fallback_names(self, name: str) -> list[str]:
        return [f for f in self.fallbacks.get(name, ()) if f != name and f in self.receivers]

    async def _fall_back(self, name: str, receiver: Receiver, n: GroupNotification, reason: str) -> int:
        """Hand the notification that ``name`` could not take to its fallbacks and the console."""
        told = [a for a in n.alerts if a.status == "firing" or receiver.send_resolved]
        if not told:
            return 0
        sent = 0
        out = dataclasses.replace(n, key=f"{n.key}|fallback:{name}", alerts=tuple(told))
        for fb in self._fallback_names(name):
            if self.health_of(fb).failed:
                continue
            try:
                sent += await asyncio.wait_for(
                    self._send(fb, self.receivers[fb], dataclasses.replace(out, receiver=fb)), self.attempt_timeout)
            except (NotifyError, TimeoutError) as exc:
                self.counts[f"failed.{fb}"] += 1
                log.error("fallback receiver %s failed too on group %s: %s", fb, n.key, exc)
        new = sent
        if self.console is not None:
            # The console's log says which alerts are new to the fallbacks (a group is re-sent each flush).
            new = 0
            for a in told:
                new += await self._deliver_one(f"fallback:{name}", self.console, a)
        self.counts[f"fallback.{name}"] += new
        sent += new
        if sent:
            log.warning("receiver %s unavailable (%s): %d alert(s) of group %s handed to its fallbacks",
                        name, reason, len(told), n.key)
        return sent

    async def _send(self, name: str, receiver: Receiver, n: GroupNotification) -> int:
        """Deduplicate against the log and call the receiver (raises its NotifyError)."""
        firing = [a for a in n.alerts if a.status == "firing"]
        resolved = [a for a in n.alerts if a.status == "resolved"] if receiver.send_resolved else []
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
        floor = self.min_repeat_interval.get(group_severity(firing), 0.0) if receiver.resend_interval is None else 0.0
        if floor > repeat:
            repeat = floor
            n = dataclasses.replace(n, route=dataclasses.replace(n.route, repeat_interval=floor))
        if receiver.resend_interval is None and any(m.mutes_reminder(n.key, n.now) for m in self.reminder_muters):
            repeat = math.inf  # acknowledged: no reminders; changes and the resolve still go
        if not _needs_update(entry, firing_ids, resolved_ids, n.now, repeat):
            self.counts[f"duplicate.{name}"] += 1
            return 0
        memory = entry.get("memory") if entry else None
        sent = 0
        if firing or resolved:
            memory = await receiver.notify_group(dataclasses.replace(n, alerts=tuple(firing + resolved)), memory)
            self.counts[f"sent.{name}"] += 1
            sent = 1
        self.deliveries[key] = orjson.dumps(
            {"firing": firing_ids, "resolved": resolved_ids, "at": n.now, "memory": memory}
        )
        return sent

    async def _deliver_one(self, name: str, receiver: Receiver, alert: Alert, *, only_if_told: bool = False) -> int:
        sid = state_id(alert)
        key = f"{name}|{alert.fingerprint}"
        raw = self.deliveries.get(key)
        rec = orjson.loads(raw) if raw else {}
        done = rec.get("done", [])
        if sid in done:
            self.counts[f"duplicate.{name}"] += 1
            return 0
        if only_if_told and not done:
            # A resolve of an alert this receiver was never told about: nothing to say.
            self.counts[f"untold.{name}"] += 1
            return 0
        memory = await receiver.notify(alert, rec.get("memory"))
        self.deliveries[key] = orjson.dumps({"memory": memory, "done": [*done, sid][-_KEEP:]})
        self.counts[f"sent.{name}"] += 1
        return 1


_SEVERITY_RANK = {"warning": 1, "critical": 2}


def group_severity(firing: Iterable[Alert]) -> str:
    """The severity of a group (an incident): that of its most severe firing alert."""
    return max((a.severity for a in firing), key=lambda s: _SEVERITY_RANK.get(s, 0), default="warning")


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
