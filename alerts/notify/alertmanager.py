"""AlertmanagerReceiver: pushes tocsin's alerts to an Alertmanager (``POST /api/v2/alerts``).

For teams that already run Alertmanager: it does its own grouping,
inhibition and silencing, so tocsin sends it what Prometheus would.

- Labels are :func:`~alerts.notify.amformat.am_labels` (``cause`` and
  ``severity`` included, so Alertmanager routes on them).
- Like Prometheus, firing alerts are re-sent at every group flush
  (``resend_interval = 0``: the notification log does not hold them back)
  with ``endsAt`` three group intervals ahead: if tocsin stops, Alertmanager
  resolves them by itself.
- When an update changes an alert's labels (its cause or severity), the
  old label set is sent resolved, so Alertmanager does not keep two alerts.
  The memory (per group) holds the label set sent for each fingerprint.
"""

from __future__ import annotations

from alerts.config import DEFAULT_GROUP_INTERVAL
from alerts.group import GroupNotification
from alerts.model import Alert
from alerts.secret import Secret
from detectors.timeutil import format_ts

from .amformat import am_labels, api_alert
from .base import Memory, Receiver
from .http import HTTPPoster

__all__ = ["AlertmanagerReceiver"]


class AlertmanagerReceiver(Receiver):
    """Pushes alerts to Alertmanager's API v2.

    Parameters
    ----------
    url
        Alertmanager's base URL (``http://am:9093``); not a secret.
    bearer_token
        Optional ``Authorization: Bearer`` token (a Secret).
    timeout
        Seconds for one request.
    generator_url
        Link shown in Alertmanager (e.g. tocsin's dashboard).
    """

    groups = True
    resend_interval = 0.0

    def __init__(self, url: str, *, bearer_token: Secret | None = None, timeout: float = 10.0,
                 generator_url: str | None = None, send_resolved: bool = True, name: str = "alertmanager") -> None:
        self.url = url.rstrip("/")
        self.http = HTTPPoster(self.url + "/api/v2/alerts", timeout=timeout, bearer_token=bearer_token,
                               name=name, kind="alertmanager")
        self.generator_url = generator_url
        self.send_resolved = send_resolved
        self.name = name

    def __repr__(self) -> str:
        return f"AlertmanagerReceiver(name={self.name!r}, url={self.url!r})"

    def payload(self, alerts: tuple[Alert, ...], now: float, group_interval: float | None,
                memory: Memory | None) -> tuple[list[dict], Memory]:
        """The API body for ``alerts``, and the memory to keep.

        ``group_interval`` None: firing alerts go without ``endsAt``
        (Alertmanager's ``resolve_timeout`` applies).
        """
        sent: dict[str, dict[str, str]] = dict((memory or {}).get("labels", {}))
        out = []
        for a in alerts:
            labels = am_labels(a)
            old = sent.get(a.fingerprint)
            if old is not None and old != labels:
                out.append({"labels": old, "startsAt": format_ts(a.starts_at), "endsAt": format_ts(now)})
            out.append(api_alert(a, ends_at=None if group_interval is None else now + 3 * group_interval, generator_url=self.generator_url, labels=labels))
            if a.status == "firing":
                sent[a.fingerprint] = labels
            else:
                sent.pop(a.fingerprint, None)
        return out, {"labels": sent}

    async def notify_group(self, notification: GroupNotification, memory: Memory | None) -> Memory | None:
        interval = notification.route.group_interval if notification.route else DEFAULT_GROUP_INTERVAL
        body, memory = self.payload(notification.alerts, notification.now, interval, memory)
        await self.http.post(body)
        return memory

    async def notify(self, alert: Alert, memory: Memory | None) -> Memory | None:
        """One alert state change alone; a firing alert is left to Alertmanager's resolve_timeout."""
        now = alert.ends_at if alert.status == "resolved" and alert.ends_at is not None else alert.starts_at
        body, memory = self.payload((alert,), now, None, memory)
        await self.http.post(body)
        return memory

    async def aclose(self) -> None:
        await self.http.aclose()
