"""The notification pipeline: route, deduplicate, send, retry.

For each alert state change, the router names the receivers; for each one
the pipeline looks up what was already delivered for this fingerprint (a
mapping the caller persists: a Faust table in the worker), skips a state
change it already delivered (so at-least-once replays never post twice),
and calls the receiver, retrying with capped exponential backoff until it
succeeds. Nothing is dropped: a receiver that keeps failing holds back the
alerts behind it, in order, and every failure is counted and logged
(without secrets: receivers never put them in their errors).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, MutableMapping

import orjson

from alerts.dispatch import Router
from alerts.errors import NotifyError
from alerts.model import Alert

from .base import Receiver

__all__ = ["NotificationPipeline", "state_id"]

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
    ) -> None:
        self.receivers = receivers
        self.router = router
        self.deliveries = deliveries
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.sleep = sleep
        self.counts: Counter[str] = Counter()

    async def deliver(self, alert: Alert) -> None:
        sid = state_id(alert)
        for name in self.router.match(alert):
            receiver = self.receivers.get(name)
            if receiver is None:
                continue
            key = f"{name}|{alert.fingerprint}"
            raw = self.deliveries.get(key)
            rec = orjson.loads(raw) if raw else {}
            done = rec.get("done", [])
            if sid in done:
                self.counts[f"duplicate.{name}"] += 1
                continue
            memory = await self._send(receiver, alert, rec.get("memory"))
            self.deliveries[key] = orjson.dumps({"memory": memory, "done": [*done, sid][-_KEEP:]})
            self.counts[f"sent.{name}"] += 1

    async def _send(self, receiver: Receiver, alert: Alert, memory: dict | None) -> dict | None:
        delay = self.backoff_initial
        attempt = 0
        while True:
            attempt += 1
            try:
                return await receiver.notify(alert, memory)
            except NotifyError as exc:
                self.counts[f"failed.{receiver.name}"] += 1
                wait = max(delay, exc.retry_after or 0.0)
                level = logging.WARNING if exc.retryable else logging.ERROR
                log.log(level, "receiver %s failed on alert %s (attempt %d, %s), retrying in %.0f s: %s",
                        receiver.name, alert.fingerprint, attempt,
                        "retryable" if exc.retryable else "needs attention", wait, exc)
                await self.sleep(wait)
                delay = min(self.backoff_max, delay * 2)
