"""WebhookReceiver: Alertmanager's webhook payload (version 4), one POST per group notification.

Anything written for Alertmanager's webhook (``version``, ``groupKey``,
``status``, ``groupLabels``, ``commonLabels``, ``alerts[]`` with
``fingerprint``...) reads tocsin's unchanged. The URL (it often carries a
token) is a :class:`~alerts.secret.Secret`; failures are classified by
:class:`~alerts.notify.http.HTTPPoster`.
"""

from __future__ import annotations

from alerts.group import GroupNotification
from alerts.model import Alert
from alerts.secret import Secret

from .amformat import webhook_payload
from .base import Memory, Receiver
from .http import HTTPPoster

__all__ = ["WebhookReceiver"]


class WebhookReceiver(Receiver):
    """POSTs Alertmanager webhook payloads (v4) to one URL.

    Parameters
    ----------
    url
        Where to POST, as a Secret.
    timeout
        Seconds for one request.
    bearer_token
        Optional ``Authorization: Bearer`` token.
    max_alerts
        Alerts per payload (0: all); the rest are counted in ``truncatedAlerts``.
    """

    groups = True

    def __init__(self, url: Secret | str, *, timeout: float = 10.0, bearer_token: Secret | None = None,
                 max_alerts: int = 0, send_resolved: bool = True, name: str = "webhook") -> None:
        self.http = HTTPPoster(url, timeout=timeout, bearer_token=bearer_token, name=name, kind="webhook")
        self.max_alerts = max_alerts
        self.send_resolved = send_resolved
        self.name = name

    def __repr__(self) -> str:
        return f"WebhookReceiver(name={self.name!r}, url={self.http.url!r})"

    async def notify_group(self, notification: GroupNotification, memory: Memory | None) -> Memory | None:
        await self.http.post(webhook_payload(notification, max_alerts=self.max_alerts))
        return None

    async def notify(self, alert: Alert, memory: Memory | None) -> Memory | None:
        """One alert alone: a group of one, keyed by its fingerprint."""
        n = GroupNotification(f"{{}}:{alert.fingerprint}", self.name, None, {}, (alert,), alert.starts_at)  # type: ignore[arg-type]
        return await self.notify_group(n, memory)

    async def aclose(self) -> None:
        await self.http.aclose()
