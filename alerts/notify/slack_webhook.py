"""SlackWebhookReceiver: a Slack incoming webhook, one message per group notification, no threads.

An incoming webhook cannot edit or thread (it returns no message ts), so each
group notification is a message of its own: a header with the count firing
and resolved and the group's labels, one section per alert (severity,
title, suspected cause and confidence, first evidence), within Slack's
limits (50 blocks, 3000 characters a section, 150 a header). The webhook
URL is the secret: a :class:`~alerts.secret.Secret`, redacted from errors
and kept out of slack-sdk's debug log.
"""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
from slack_sdk.webhook.async_client import AsyncWebhookClient

from alerts.group import GroupNotification
from alerts.model import Alert
from alerts.secret import Secret

from .base import Memory, Receiver, format_duration, labels_text
from .http import receiver_error, refusal, retry_after_seconds, transport_failure
from .message import Presentation, ended, evidence_line, headline
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



def _alert_section(a: Alert, pres: Presentation) -> dict[str, Any]:
    emoji = RESOLVED_EMOJI if a.status == "resolved" else SEVERITY_EMOJI.get(a.severity, ":bell:")
    state = "RESOLVED" if a.status == "resolved" else a.severity.upper()
    lines = [f"{emoji} *{state}* · *{_escape(headline(a))}*", _cause_line(a)]
    if a.status == "resolved" and a.ends_at is not None:
        lines.append(f"*{ended(a).capitalize()}:* {pres.time(a.ends_at)} after {format_duration(a.ends_at - a.starts_at)}")
    else:
        lines.append(f"*Since:* {pres.time(a.starts_at)}")
    if a.evidence:
        lines.append("• " + _escape(evidence_line(a.evidence[0])))
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


def group_blocks(n: GroupNotification, pres: Presentation | None = None) -> list[dict[str, Any]]:
    """Block Kit blocks for one group notification, within Slack's limits.

    The lead alert (the first firing one) gives the next step and the links.
    """
    pres = pres or Presentation()
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _truncate(group_text(n), HEADER_MAX), "emoji": True}}
    ]
    lead = next(iter(n.firing), None)
    buttons = [
        {"type": "button", "text": {"type": "plain_text", "text": label}, "url": url, "action_id": aid}
        for aid, label, url in (pres.links(lead) if lead is not None else [])
    ]
    room = MAX_BLOCKS - len(blocks) - (1 if buttons else 0) - (1 if lead else 0) - 1  # keep one for "and N more"
    alerts = list(n.alerts)
    blocks.extend(_alert_section(a, pres) for a in alerts[:room])
    if len(alerts) > room:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": f"…and {len(alerts) - room} more alerts"}]})
    if lead is not None:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _truncate(
            f"*Next step:* {_escape(pres.next_step(lead))}", SECTION_TEXT_MAX)}})
    if buttons:
        blocks.append({"type": "actions", "elements": buttons})
    return blocks[:MAX_BLOCKS]


#: slack-sdk's webhook client logs the URL (the secret) at DEBUG: it gets a logger that never does.
_SDK_LOG = logging.getLogger("tocsin.slack_webhook.sdk")
_SDK_LOG.setLevel(logging.WARNING)
_SDK_LOG.propagate = False

#: Slack's incoming-webhook answers that refuse one message only.
_MESSAGE_ERRORS = frozenset({"invalid_payload", "no_text", "invalid_blocks", "invalid_blocks_format",
                             "too_many_attachments", "msg_too_long"})
#: What to fix, by Slack's incoming-webhook answer.
_WEBHOOK_FIX = {
    "no_service": "the webhook was removed or its URL is wrong: create a new incoming webhook and update url_env/url_file",
    "no_team": "the webhook's workspace is gone: create a new incoming webhook",
    "team_disabled": "the webhook's workspace is disabled: create a new incoming webhook",
    "invalid_token": "the webhook's URL is not valid: copy it again from the Slack app and update url_env/url_file",
    "action_prohibited": "a Slack admin restricts posting to this channel: ask them or use another channel",
    "channel_not_found": "the webhook's channel was deleted: create a new incoming webhook",
    "channel_is_archived": "the webhook's channel is archived: unarchive it or create a new incoming webhook",
    "posting_to_general_channel_denied": "only admins may post to this channel: use another channel",
}


class SlackWebhookReceiver(Receiver):
    """Posts one message per group notification to a Slack incoming webhook.

    Sent with slack-sdk's :class:`~slack_sdk.webhook.async_client.AsyncWebhookClient`,
    one attempt per call (the pipeline retries); answers are classified as
    for the other HTTP receivers (:func:`~alerts.notify.http.classify_status`),
    Slack's error body (``no_service``, ``invalid_payload``...) naming what to fix.
    """

    groups = True

    def __init__(self, url: Secret | str, *, timeout: float = 10.0, runbook_url: str | None = None,
                 dashboard_url: str | None = None, send_resolved: bool = True, name: str = "slack-webhook",
                 presentation: Presentation | None = None) -> None:
        self.url = url if isinstance(url, Secret) else Secret(url)
        self.timeout = timeout
        self.presentation = Presentation.of(presentation, runbook_url, dashboard_url)
        self.send_resolved = send_resolved
        self.name = name
        self._session: aiohttp.ClientSession | None = None
        self._client: AsyncWebhookClient | None = None

    def __repr__(self) -> str:
        return f"SlackWebhookReceiver(name={self.name!r}, url={self.url!r})"

    def _get_client(self) -> AsyncWebhookClient:
        if self._client is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
            self._client = AsyncWebhookClient(self.url.get(), timeout=int(max(1, round(self.timeout))),
                                              session=self._session, logger=_SDK_LOG, retry_handlers=[])
        return self._client

    async def send(self, text: str, blocks: list[dict[str, Any]]) -> None:
        """One message; raises NotifyError (classified, URL redacted) when Slack does not take it."""
        label = f"slack webhook receiver {self.name!r}"
        try:
            resp = await self._get_client().send(text=text, blocks=blocks, unfurl_links=False, unfurl_media=False)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise receiver_error(label, transport_failure(exc, self.timeout) or repr(exc), [self.url],
                                 retryable=True) from None
        if resp.status_code < 300:
            return
        body = (resp.body or "").strip()[:200]
        what, retryable, wait, fix = refusal(resp.status_code, body, retry_after_seconds(resp.headers))
        if retryable:
            raise receiver_error(label, what, [self.url], retryable=True, retry_after=wait)
        if body in _MESSAGE_ERRORS:
            raise receiver_error(label, what, [self.url], retryable=False, scope="message",
                                 fix="Slack refused this message: report it with the log line")
        raise receiver_error(label, what, [self.url], retryable=False, fix=_WEBHOOK_FIX.get(body, fix))

    async def notify_group(self, notification: GroupNotification, memory: Memory | None) -> Memory | None:
        await self.send(_mrkdwn(group_text(notification), FALLBACK_MAX),
                        group_blocks(notification, self.presentation))
        return None

    async def notify(self, alert: Alert, memory: Memory | None) -> Memory | None:
        n = GroupNotification(f"{{}}:{alert.fingerprint}", self.name, None, {}, (alert,), alert.starts_at)  # type: ignore[arg-type]
        return await self.notify_group(n, memory)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
            self._client = None
