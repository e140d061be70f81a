"""Alerts in Alertmanager's shapes: labels, annotations, API v2 alerts, webhook payload v4.

Labels sent: the alert's set labels, ``alertname="tocsin"``, ``cause`` and
``severity`` (so Alertmanager routes and inhibits on the same names as
tocsin). Annotations: ``summary`` (the title), ``confidence``,
``description`` (the evidence) and ``fingerprint`` (tocsin's).
"""

from __future__ import annotations

from typing import Any

from alerts.group import GroupNotification
from alerts.model import Alert
from detectors.timeutil import format_ts

__all__ = ["ZERO_TIME", "am_labels", "am_annotations", "api_alert", "webhook_payload"]

#: Go's zero time: Alertmanager's ``endsAt`` of a firing alert in webhook payloads.
ZERO_TIME = "0001-01-01T00:00:00Z"


def am_labels(alert: Alert) -> dict[str, str]:
    labels = {k: str(v) for k, v in alert.labels.items() if v is not None}
    labels.update(alertname="tocsin", cause=alert.cause, severity=alert.severity)
    return dict(sorted(labels.items()))


def am_annotations(alert: Alert) -> dict[str, str]:
    out = {"summary": alert.title, "confidence": f"{alert.confidence:.2f}", "fingerprint": alert.fingerprint}
    if alert.evidence:
        out["description"] = "\n".join(e.text for e in alert.evidence)
    return out


def api_alert(alert: Alert, *, ends_at: float | None = None, generator_url: str | None = None,
              labels: dict[str, str] | None = None) -> dict[str, Any]:
    """A postable alert for ``POST /api/v2/alerts``."""
    rec: dict[str, Any] = {
        "labels": labels if labels is not None else am_labels(alert),
        "annotations": am_annotations(alert),
        "startsAt": format_ts(alert.starts_at),
    }
    end = alert.ends_at if alert.status == "resolved" and alert.ends_at is not None else ends_at
    if end is not None:
        rec["endsAt"] = format_ts(end)
    if generator_url:
        rec["generatorURL"] = generator_url
    return rec


def _common(items: list[dict[str, str]]) -> dict[str, str]:
    if not items:
        return {}
    first = items[0]
    return {k: v for k, v in first.items() if all(i.get(k) == v for i in items[1:])}


def webhook_payload(n: GroupNotification, *, max_alerts: int = 0, external_url: str = "") -> dict[str, Any]:
    """Alertmanager's webhook payload, version 4, for one group notification."""
    alerts = list(n.alerts)
    shown = alerts[:max_alerts] if max_alerts else alerts
    labels = [am_labels(a) for a in alerts]
    annotations = [am_annotations(a) for a in alerts]
    return {
        "version": "4",
        "groupKey": n.key,
        "truncatedAlerts": len(alerts) - len(shown),
        "status": "firing" if any(a.status == "firing" for a in alerts) else "resolved",
        "receiver": n.receiver,
        "groupLabels": dict(n.labels),
        "commonLabels": _common(labels),
        "commonAnnotations": _common(annotations),
        "externalURL": external_url,
        "alerts": [
            {
                "status": a.status,
                "labels": am_labels(a),
                "annotations": am_annotations(a),
                "startsAt": format_ts(a.starts_at),
                "endsAt": format_ts(a.ends_at) if a.status == "resolved" and a.ends_at is not None else ZERO_TIME,
                "generatorURL": "",
                "fingerprint": a.fingerprint,
            }
            for a in shown
        ],
    }
