"""SlackWebhookReceiver: a Slack incoming webhook, one message per group notification, no threads.

An incoming webhook cannot edit or thread (it returns no message ts), so each
group notification is a message of its own: a header with the count firing
and resolved and the group's labels, one section per alert (severity,
title, suspected cause and confidence, first evidence), within Slack's
limits (50 blocks, 3000 characters a section, 150 a header). The webhook
URL is the secret: a :class:`~alerts.secret.Secret`, redacted from errors.
"""

from __future__ import annotations

from typing import Any

from alerts.group import GroupNotification
from alerts.model import Alert
from alerts.secret import Secret

from .base import Memory, Receiver, labels_text
from .http import HTTPPoster
from .slack import (
    FALLBACK_MAX,
    HEADER_MAX,
    MAX_BLOCKS,
    RESOLVED_EMOJI,
    SECTION_TEXT_MAX,
    SEVERITY_EMOJI,
    _cause_line,
    _escape,
    _mrkdwn,
    _truncate,
)

__all__ = ["SlackWebhookReceiver", "group_blocks"]


def _alert_section(a: Alert) -> dict[str, Any]:
    emoji = RESOLVED_EMOJI if a.status == "resolved" else SEVERITY_EMOJI.get(a.severity, ":bell:")
    head = f"{emoji} *{_escape(a.title)}*" + (" (resolved)" if a.status == "resolved" else "")
    lines = [head, _cause_line(a)]
    if a.evidence:
        lines.append(_escape(a.evidence[0].text))
    labels = labels_text(a.labels)
    if labels:
        lines.append(f"`{_escape(labels)}`")
    return {"type": "section", "text": {"type": "mrkdwn", "text": _truncate("\n".join(lines), SECTION_TEXT_MAX)}}


def group_text(n: GroupNotification) -> str:
    firing, resolved = len(n.firing), len(n.resolved)
    parts = []
    if firing:
        parts.append(f"FIRING:{firing}")
    if resolved:
        parts.append(f"RESOLVED:{resolved}")
    labels = " ".join(f"{k}={v}" for k, v in n.labels.items())
    return f"[{', '.join(parts)}] {labels or 'tocsin alerts'}"


def group_blocks(n: GroupNotification, runbook_url: str | None = None, dashboard_url: str | None = None) -> list[dict[str, Any]]:
    """Block Kit blocks for one group notification, within Slack's limits."""
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _truncate(group_text(n), HEADER_MAX), "emoji": True}}
    ]
    buttons = [
        {"type": "button", "text": {"type": "plain_text", "text": label}, "url": url, "action_id": aid}
        for aid, label, url in (("runbook", "Runbook", runbook_url), ("dashboard", "Dashboard", dashboard_url))
        if url
    ]
    room = MAX_BLOCKS - len(blocks) - (1 if buttons else 0) - 1  # keep one for "and N more"
    alerts = list(n.alerts)
    blocks.extend(_alert_section(a) for a in alerts[:room])
    if len(alerts) > room:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": f"…and {len(alerts) - room} more alerts"}]})
    if buttons:
        blocks.append({"type": "actions", "elements": buttons})
    return blocks[:MAX_BLOCKS]


class SlackWebhookReceiver(Receiver):
    """Posts one message per group notification to a Slack incoming webhook."""

    groups = True

    def __init__(self, url: Secret | str, *, timeout: float = 10.0, runbook_url: str | None = None,
                 dashboard_url: str | None = None, send_resolved: bool = True, name: str = "slack-webhook") -> None:
        self.http = HTTPPoster(url, timeout=timeout, name=name, kind="slack webhook")
        self.runbook_url = runbook_url
        self.dashboard_url = dashboard_url
        self.send_resolved = send_resolved
        self.name = name

    def __repr__(self) -> str:
        return f"SlackWebhookReceiver(name={self.name!r}, url={self.http.url!r})"

    async def notify_group(self, notification: GroupNotification, memory: Memory | None) -> Memory | None:
        await self.http.post({
            "text": _mrkdwn(group_text(notification), FALLBACK_MAX),
            "blocks": group_blocks(notification, self.runbook_url, self.dashboard_url),
        })
        return None

    async def notify(self, alert: Alert, memory: Memory | None) -> Memory | None:
        n = GroupNotification(f"{{}}:{alert.fingerprint}", self.name, None, {}, (alert,), alert.starts_at)  # type: ignore[arg-type]
        return await self.notify_group(n, memory)

    async def aclose(self) -> None:
        await self.http.aclose()
