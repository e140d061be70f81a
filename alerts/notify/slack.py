"""SlackReceiver: one Slack thread per incident (aggregation group), updates and reminders in it.

In the worker the receiver is told group notifications
(:meth:`SlackReceiver.notify_group`, ``groups = True``), and an incident is
one aggregation group (the route's ``group_by`` values):

- first notification with firing alerts: ``chat.postMessage`` of the parent
  message: Block Kit blocks of the lead alert (most severe, then earliest),
  and the other alerts of the group named in its context line;
- then, at most one thread reply per group notification (so at most one per
  ``group_interval``), listing what changed: alerts that joined, changed
  cause or severity, or resolved; the parent is edited (``chat.update``)
  first so it always shows the group's current state;
- nothing changed but the group still fires ``repeat_interval`` after the
  last message in the thread: a reminder reply in the thread (broadcast to
  the channel only with ``reminder_broadcast``), the parent edited to say
  how long it has been firing; never a new top-level message;
- every alert told in the thread resolved and none firing: the parent is
  edited to RESOLVED and a "resolved" reply closes the thread; the group
  firing again later is a new incident, a new thread.

The idempotent call (the edit) always goes first and the reply last, so the
pipeline's retry after a failed reply cannot post anything twice.

What a message says (:func:`build_message`), written to be read on a phone:
the notification ``text`` and a header with the severity and the headline
(the title with the cause said once); below, in an attachment coloured by
severity (green once resolved): the cause and confidence, the start time
in the receiver's time zone with the zone's name, one list of evidence
sentences in human units (the current value, and the peak beside it when it
was worse), the next step for the cause, and runbook, dashboard and report
buttons (:class:`~alerts.notify.message.Presentation`); the context line
keeps the labels, the UTC time and the fingerprint. A resolved parent says
when it recovered, after how long, which signals are back to usual, and
shows the worst reading labelled as such. A thread reply says what changed,
``from → to`` (severity, cause, confidence, title) with the value now; an
escalation (severity rising) is broadcast to the channel.

:meth:`SlackReceiver.notify` is the per-alert conversation (one fingerprint):
the parent message on the first firing, a reply saying what changed on
later ones, and on resolve the parent edited to RESOLVED and a reply.

The receiver keeps no state: what it needs to continue a thread (channel
and parent ts, what each alert was when last told, the peaks) comes back as
``memory``, which the pipeline persists.

Non-retryable failures say what to fix (:data:`RECEIVER_ERRORS`: the
receiver is unusable until then) or that only this message was refused
(:data:`MESSAGE_ERRORS`).

Transient failures (HTTP 429 honouring ``Retry-After``, 5xx, dropped
connections) are retried inside the call by slack-sdk's async retry handlers,
a bounded number of times and never waiting longer than ``max_retry_after``.
What is left raises :class:`SlackNotifyError` (a
:class:`~alerts.errors.NotifyError`) with ``retryable`` and ``retry_after``
for the pipeline's retry stage. The token is a :class:`~alerts.secret.Secret`
and never appears in an error message, a log line or a repr.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from alerts.ack import AckStore
from alerts.errors import NotifyError
from alerts.model import Alert
from alerts.notify.base import Memory, Receiver, cause_text, format_duration, labels_text
from alerts.notify.http import classify_status, retry_after_seconds
from alerts.notify.message import (
    Peaks,
    Presentation,
    ended,
    evidence_line,
    headline,
    human_value,
    is_drive_alert,
    signal_name,
    tidy_numbers,
)
from alerts.notify.pipeline import group_severity, state_id
from alerts.notify.slack_actions import parent_actions
from alerts.secret import Secret, redact

if TYPE_CHECKING:
    from alerts.group import GroupNotification

__all__ = ["SlackReceiver", "SlackNotifyError", "build_blocks", "FATAL_ERRORS"]

_SEVERITY_RANK = {"critical": 2, "warning": 1}

log = logging.getLogger(__name__)

# Block Kit limits (https://docs.slack.dev/reference/block-kit/blocks)
HEADER_MAX = 150
SECTION_TEXT_MAX = 3000
FIELD_MAX = 2000
FIELDS_PER_SECTION = 10
CONTEXT_TEXT_MAX = 3000
BUTTON_URL_MAX = 3000
MAX_BLOCKS = 50
# Readability, not Slack limits: more evidence than this is summarised, longer lines are cut.
MAX_EVIDENCE = 12
EVIDENCE_LINE_MAX = 400
FALLBACK_MAX = 3000

SEVERITY_EMOJI = {"critical": ":rotating_light:", "warning": ":warning:"}
RESOLVED_EMOJI = ":white_check_mark:"

#: Slack error codes that make the receiver unusable until someone fixes it, with what to fix.
RECEIVER_ERRORS: dict[str, str] = {
    "invalid_auth": "the bot token is not valid: set a valid bot token (xoxb-...) in the receiver's token_env or token_file",
    "not_authed": "no token was sent: set the bot token in the receiver's token_env or token_file",
    "account_inactive": "the token's user or bot was deactivated: reinstall the Slack app and update the token",
    "token_revoked": "the token was revoked: reinstall the Slack app and update the token",
    "token_expired": "the token expired: refresh it (or turn off token rotation) and update the token",
    "no_permission": "the token lacks a permission: check the Slack app's scopes (chat:write) and reinstall it",
    "missing_scope": "the Slack app lacks the chat:write scope: add it and reinstall the app",
    "not_allowed_token_type": "this is not a bot token: use the app's bot token (xoxb-...)",
    "ekm_access_denied": "the workspace's encryption keys refuse access: ask the Slack admins",
    "channel_not_found": "the channel does not exist or the bot cannot see it: check the receiver's channel (an id like C0123 is safest) and invite the bot",
    "not_in_channel": "the bot is not in the channel: invite it (/invite @<bot>) or add the chat:write.public scope",
    "is_archived": "the channel is archived: unarchive it or point the receiver at another channel",
    "restricted_action": "the workspace forbids the bot to post in this channel: ask the Slack admins",
    "team_access_not_granted": "the token has no access to this workspace: reinstall the Slack app there",
}
#: Slack error codes that refuse one message only: other messages may still get through.
MESSAGE_ERRORS = frozenset(
    {
        "invalid_blocks",
        "invalid_blocks_format",
        "invalid_attachments",
        "msg_too_long",
        "no_text",
        "too_many_attachments",
        "invalid_arguments",
        "invalid_arg_name",
        "message_not_found",
        "cant_update_message",
        "edit_window_closed",
        "thread_not_found",
    }
)
#: Slack error codes that no retry will fix.
FATAL_ERRORS = frozenset(RECEIVER_ERRORS) | MESSAGE_ERRORS
#: Slack error codes (with HTTP 200) that a later retry may fix.
TRANSIENT_ERRORS = frozenset(
    {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
)
_SERVER_ERROR_STATUSES = frozenset({500, 502, 503, 504})


class SlackNotifyError(NotifyError):
    """A Slack call failed; ``error`` is Slack's error code, ``status`` the HTTP status."""

    def __init__(
        self,
        message: str,
        *,
        retryable: bool = True,
        retry_after: float | None = None,
        error: str | None = None,
        status: int | None = None,
        scope: Literal["receiver", "message"] = "receiver",
        fix: str | None = None,
    ):
        super().__init__(message, retryable=retryable, retry_after=retry_after, scope=scope, fix=fix)
        self.error = error
        self.status = status


class _BoundedRateLimitRetryHandler(AsyncRateLimitErrorRetryHandler):
    """Retries HTTP 429 after Retry-After, only when that wait is at most ``max_wait``.

    A longer wait is not slept inside the call: the 429 comes back as a
    retryable error with ``retry_after`` for the pipeline to schedule.
    """

    def __init__(self, max_retry_count: int, max_wait: float):
        super().__init__(max_retry_count=max_retry_count)
        self.max_wait = max_wait

    async def _can_retry_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if response is None or response.status_code != 429:
            return False
        wait = retry_after_seconds(response.headers)
        return wait is None or wait <= self.max_wait

    async def prepare_for_next_attempt_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> None:
        wait = retry_after_seconds(response.headers if response is not None else None)
        if wait is None:
            wait = 1.0
        state.next_attempt_requested = True
        await asyncio.sleep(min(wait, self.max_wait) + random.uniform(0.0, 0.2))
        state.increment_current_attempt()


class _ServerErrorRetryHandler(AsyncServerErrorRetryHandler):
    """slack-sdk's server error handler, also for 502 and 504 (gateways in front of Slack)."""

    async def _can_retry_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        return response is not None and response.status_code in _SERVER_ERROR_STATUSES


# ---------------------------------------------------------------------------
# Block Kit: what the channel and a phone show


SEVERITY_COLOR = {"critical": "#D0021B", "warning": "#F2A900"}
RESOLVED_COLOR = "#2EB67D"
_SEVERITY_RANK_TEXT = {"critical": "CRITICAL", "warning": "WARNING"}


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _mrkdwn(text: str, limit: int) -> str:
    """Escape user text for mrkdwn and cut it to ``limit`` without splitting an entity."""
    return _mrkdwn_cut(_escape(text), limit)


def _cause(alert: Alert) -> str:
    return f"{cause_text(alert.cause)} ({round(alert.confidence * 100)}% confidence)"


def _cause_line(alert: Alert) -> str:
    return f"*Cause:* {_escape(_cause(alert))}"


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": _truncate(text, SECTION_TEXT_MAX)}}


def _evidence_text(alert: Alert, peaks: Peaks | None, pres: Presentation, *, resolved: bool) -> str | None:
    """One list: each sentence once; a firing alert's peak beside the current value, a resolved alert's peak alone."""
    shown = alert.evidence[:MAX_EVIDENCE]
    if not shown:
        return None
    lines = []
    peak_at = None
    for ev in shown:
        peak = peaks.peak_of(ev) if peaks is not None else None
        if resolved:
            text = tidy_numbers(peak[2]) if peak is not None and peak[2] else evidence_line(ev)
            lines.append(f"• {_escape(text)}")
            seen = peaks.by_signal.get(ev.signal) if peaks is not None else None
            if seen is not None:
                peak_at = max(peak_at or 0.0, float(seen[3]))
        elif peak is not None:
            lines.append(f"• {_escape(evidence_line(ev))}  _(peak {human_value(ev.signal, peak[0])}"
                         f" at {pres.time(peak[3], day=False)})_")
        else:
            lines.append(f"• {_escape(evidence_line(ev))}")
    if resolved:
        head = "*At its worst*" + (f" ({pres.time(peak_at, day=False)})" if peak_at else "")
    else:
        head = "*Evidence* (latest, peak beside it)" if any("_(peak" in line for line in lines) else "*Evidence*"
    # Whole lines within the section's limit, each at most a few lines on a phone, then a count.
    kept: list[str] = []
    size = len(head) + 40
    for line in lines:
        line = _mrkdwn_cut(line, EVIDENCE_LINE_MAX)
        if size + len(line) + 1 > SECTION_TEXT_MAX:
            break
        kept.append(line)
        size += len(line) + 1
    more = len(alert.evidence) - len(kept)
    if more:
        kept.append(f"…and {more} more")
    return head + "\n" + "\n".join(kept)


def _mrkdwn_cut(text: str, limit: int) -> str:
    """Cut escaped mrkdwn to ``limit`` without splitting an entity."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    amp = cut.rfind("&", max(0, len(cut) - 5))
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]
    return cut + "…"


def _links_block(alert: Alert, pres: Presentation) -> dict[str, Any] | None:
    buttons = [
        {"type": "button", "action_id": aid, "text": {"type": "plain_text", "text": label}, "url": url}
        for aid, label, url in pres.links(alert) if len(url) <= BUTTON_URL_MAX
    ]
    return {"type": "actions", "elements": buttons} if buttons else None


@dataclasses.dataclass(frozen=True)
class SlackMessage:
    """One Slack message: ``text`` (the push notification), top-level ``blocks`` and coloured ``attachments``."""

    text: str
    blocks: list[dict[str, Any]]
    attachments: list[dict[str, Any]]

    def kwargs(self) -> dict[str, Any]:
        return {"text": self.text, "blocks": self.blocks, "attachments": self.attachments}

    def all_blocks(self) -> list[dict[str, Any]]:
        return [*self.blocks, *(b for a in self.attachments for b in a.get("blocks", []))]


def build_message(
    alert: Alert,
    *,
    kind: str = "new",
    pres: Presentation | None = None,
    peaks: Peaks | None = None,
    note: str | None = None,
    now: float | None = None,
) -> SlackMessage:
    """The parent message of an incident led by ``alert``: ``kind`` ``new`` (firing) or ``resolved``.

    The header (severity and headline) is a top-level block; the details sit
    in an attachment whose colour is the severity's (green once resolved):
    cause once, times in the receiver's zone, one evidence list (current
    value and peak apart), the next step, links; the context line keeps UTC.
    """
    pres = pres or Presentation()
    resolved = kind == "resolved"
    # A resolved incident is summed up at its worst: the peak's headline beside the peak's evidence.
    head = (peaks.headline if resolved and peaks is not None and peaks.headline else None) or headline(alert)
    if resolved:
        header = f"{RESOLVED_EMOJI} RESOLVED · {head}"
    else:
        header = f"{SEVERITY_EMOJI.get(alert.severity, ':bell:')} {_SEVERITY_RANK_TEXT.get(alert.severity, alert.severity.upper())} · {head}"
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _truncate(header, HEADER_MAX), "emoji": True}}
    ]
    details: list[dict[str, Any]] = []
    end = alert.ends_at if alert.ends_at is not None else (now if now is not None else alert.starts_at)
    if resolved:
        recovered = ", ".join(dict.fromkeys(signal_name(ev.signal) for ev in alert.evidence)) or "the alert's signals"
        if is_drive_alert(alert):
            # A failing drive does not recover: its alert ends when the drive is replaced.
            details.append(_section(
                f"*Drive replaced:* {pres.time(end)}, after {format_duration(end - alert.starts_at)} failing\n"
                f"*Cause was:* {_escape(_cause(alert))}"))
        else:
            details.append(_section(
                f"*Recovered:* {pres.time(end)}, after {format_duration(end - alert.starts_at)}\n"
                f"*Back to usual:* {_escape(recovered)}\n"
                f"*Cause was:* {_escape(_cause(alert))}"))
    else:
        details.append(_section(f"{_cause_line(alert)}\n*Since:* {pres.time(alert.starts_at)}"))
    ev = _evidence_text(alert, peaks, pres, resolved=resolved)
    if ev:
        details.append(_section(ev))
    if not resolved:
        details.append(_section(f"*Next step:* {_escape(pres.next_step(alert))}"))
    context = [f"{labels_text(alert.labels) or 'tocsin'}",
               f"started {pres.utc(alert.starts_at)}" + (f", resolved {pres.utc(end)}" if resolved else ""),
               f"fingerprint `{_escape(alert.fingerprint)}`"]
    if note:
        context.append(note)
    details.append({"type": "context", "elements": [
        {"type": "mrkdwn", "text": _mrkdwn(c, CONTEXT_TEXT_MAX) if i != 2 else c} for i, c in enumerate(context)]})
    links = _links_block(alert, pres)
    if links:
        details.append(links)
    color = RESOLVED_COLOR if resolved else SEVERITY_COLOR.get(alert.severity, "#888888")
    text = fallback_text(alert, kind=kind, pres=pres, now=now, head=head)
    return SlackMessage(text, blocks, [{"color": color, "fallback": text, "blocks": details[: MAX_BLOCKS - 1]}])


def fallback_text(alert: Alert, *, kind: str = "new", pres: Presentation | None = None, now: float | None = None,
                  head: str | None = None) -> str:
    """The plain ``text`` of a message: what a phone's notification shows (cause once, zone shown)."""
    pres = pres or Presentation()
    if kind == "resolved":
        end = alert.ends_at if alert.ends_at is not None else (now if now is not None else alert.starts_at)
        text = (f"[RESOLVED] {head or headline(alert)}: {ended(alert)} {pres.time(end)} after "
                f"{format_duration(end - alert.starts_at)} (was {cause_text(alert.cause)})")
    else:
        prefix = "[update] " if kind == "update" else ""
        text = (f"{prefix}[{alert.severity.upper()}] {headline(alert)}: {_cause(alert)}, "
                f"since {pres.time(alert.starts_at)}")
    return _mrkdwn(text, FALLBACK_MAX)


def change_lines(before: Mapping[str, Any] | None, alert: Alert, pres: Presentation) -> tuple[list[str], bool]:
    """What changed in ``alert`` since ``before`` (its cause, severity, confidence, headline told last), as
    ``from -> to`` lines; and whether it escalated (severity rose)."""
    if before is None:
        return [f":heavy_plus_sign: *New in this incident:* {_escape(headline(alert))}: "
                f"{_escape(_cause(alert))}, {alert.severity}"], alert.severity == "critical"
    lines = [f":arrows_counterclockwise: *Update:* {_escape(headline(alert))}"]
    escalated = _SEVERITY_RANK.get(alert.severity, 0) > _SEVERITY_RANK.get(str(before.get("severity")), 0)
    if before.get("severity") != alert.severity:
        mark = ":arrow_up: *Escalated*" if escalated else ":arrow_down: *Severity*"
        lines.append(f"{mark}: {before.get('severity')} → *{alert.severity}*")
    if before.get("cause") != alert.cause:
        lines.append(f"*Cause:* {_escape(cause_text(str(before.get('cause'))))} → "
                     f"*{_escape(cause_text(alert.cause))}* ({round(alert.confidence * 100)}% confidence)")
    elif round(float(before.get("confidence", 0)) * 100) != round(alert.confidence * 100):
        lines.append(f"*Confidence:* {round(float(before.get('confidence', 0)) * 100)}% → "
                     f"{round(alert.confidence * 100)}%")
    if before.get("headline") not in (None, headline(alert)):
        lines.append(f"*Title:* {_escape(str(before['headline']))} → {_escape(headline(alert))}")
    if alert.evidence:
        lines.append(f"*Now:* {_escape(evidence_line(alert.evidence[0]))}")
    if len(lines) > 2 or escalated:
        lines.append(f"*Next step:* {_escape(pres.next_step(alert))}")
    return lines, escalated


def _told(alert: Alert, before: Mapping[str, Any] | None = None, now: float | None = None) -> dict[str, Any]:
    """What a thread remembers of an alert it told, to say what changed next time.

    ``ev`` is its lead evidence sentence and ``ev_at`` when the thread first
    had it (kept while it stays the same): a reminder says whether it is new.
    """
    out = {"sid": state_id(alert), "cause": alert.cause, "severity": alert.severity,
           "confidence": round(alert.confidence, 4), "headline": headline(alert)}
    if now is not None:
        ev = evidence_line(alert.evidence[0]) if alert.evidence else ""
        same = before is not None and before.get("ev") == ev and before.get("ev_at") is not None
        out["ev"], out["ev_at"] = ev, float(before["ev_at"]) if same and before is not None else now
    return out


def _reminder_lines(firing: list[Alert], told: Mapping[str, Any], since: float, now: float,
                    pres: Presentation) -> list[str]:
    """A reminder: how long it has been going on, and for each alert the evidence now, or, when
    nothing newer came since the thread had it, when that was (frozen evidence is not news).
    A drive's alert is refreshed with its latest reading (:mod:`alerts.lifecycle`): its
    counters now."""
    what = "still failing" if all(a.cause == "disk_failure" for a in firing) else "still firing"
    lines = [f":bell: *Reminder:* {what} after {format_duration(now - since)} (since {pres.time(since)})"]
    for a in firing[:5]:
        item = f"• {_escape(headline(a))}"
        if a.evidence:
            ev = evidence_line(a.evidence[0])
            before = told.get(a.fingerprint) or {}
            drive = a.cause == "disk_failure" and not a.labels.get("service")
            if before.get("ev") == ev and before.get("ev_at") is not None:
                item += f": as reported {pres.time(float(before['ev_at']))}, nothing newer: {_escape(ev)}"
            else:
                item += f": {'counters now' if drive else 'now'}: {_escape(ev)}"
        lines.append(item)
    if len(firing) > 5:
        lines.append(f"…and {len(firing) - 5} more")
    return lines


def build_blocks(alert: Alert, *, kind: str = "new", pres: Presentation | None = None, peaks: Peaks | None = None,
                 note: str | None = None, now: float | None = None) -> list[dict[str, Any]]:
    """Every block of :func:`build_message` (top level and attachment), for checks of Slack's limits."""
    return build_message(alert, kind=kind, pres=pres, peaks=peaks, note=note, now=now).all_blocks()


# ---------------------------------------------------------------------------
# The receiver


class SlackReceiver(Receiver):
    """Posts alerts to one Slack channel with the Web API (slack-sdk's AsyncWebClient).

    Parameters
    ----------
    token
        Bot token (``xoxb-...``), as a :class:`~alerts.secret.Secret`.
    channel
        Channel id (``C0123...``) or name (``#alerts``) for new alerts;
        updates follow the channel id in the memory.
    base_url
        Web API base URL; None for Slack's (tests point it at a fake).
    timeout
        Seconds for one HTTP request.
    runbook_url, dashboard_url
        Shown as buttons when set (shorthands for ``presentation``'s).
    presentation
        Time zone, next steps, runbooks per cause and service, links
        (:class:`~alerts.notify.message.Presentation`).
    client
        An ``AsyncWebClient`` to use as is (its own retry handlers and
        session); None builds one.
    max_retries
        In-call retries per handler (rate limit, server error, connection).
    max_retry_after
        Longest Retry-After slept inside the call; a longer one is returned
        as ``NotifyError.retry_after``.
    name
        The receiver's name in the configuration.
    reminder_broadcast
        Post ``repeat_interval`` reminders with ``reply_broadcast`` (also
        shown in the channel); off by default: reminders stay in the thread.
    """

    #: One thread per aggregation group (:meth:`notify_group`).
    groups = True

    def __init__(
        self,
        token: Secret,
        channel: str,
        *,
        base_url: str | None = None,
        timeout: float = 10,
        runbook_url: str | None = None,
        dashboard_url: str | None = None,
        client: AsyncWebClient | None = None,
        max_retries: int = 2,
        max_retry_after: float = 30.0,
        name: str = "slack",
        reminder_broadcast: bool = False,
        presentation: Presentation | None = None,
        actions: bool = False,
    ):
        if not isinstance(token, Secret):
            token = Secret(token)
        if not channel:
            raise ValueError("SlackReceiver needs a channel")
        self.token = token
        self.channel = channel
        self.base_url = base_url
        self.timeout = timeout
        self.runbook_url = runbook_url
        self.dashboard_url = dashboard_url
        self.client = client
        self.max_retries = max_retries
        self.max_retry_after = max_retry_after
        self.name = name
        self.reminder_broadcast = reminder_broadcast
        # Buttons on the parent (acknowledge, silence, wrong cause; alerts.notify.slack_actions),
        # and the acknowledgements to show on it (set by the worker).
        self.actions = actions
        self.acks: AckStore | None = None
        self.presentation = Presentation.of(presentation, runbook_url, dashboard_url)
        self._client: AsyncWebClient | None = client
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:
        return f"SlackReceiver(name={self.name!r}, channel={self.channel!r}, token={self.token!r})"

    # -- client ------------------------------------------------------------

    def retry_handlers(self) -> list[AsyncRetryHandler]:
        """The bounded slack-sdk retry handlers the built client uses."""
        return [
            _BoundedRateLimitRetryHandler(self.max_retries, self.max_retry_after),
            _ServerErrorRetryHandler(max_retry_count=self.max_retries),
            AsyncConnectionErrorRetryHandler(max_retry_count=self.max_retries),
        ]

    def _get_client(self) -> AsyncWebClient:
        if self._client is None:
            # One session for all calls (keep-alive); its timeout bounds each request.
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
            kwargs: dict[str, Any] = {}
            if self.base_url:
                kwargs["base_url"] = self.base_url
            self._client = AsyncWebClient(
                token=self.token.get(),
                timeout=int(max(1, round(self.timeout))),
                session=self._session,
                retry_handlers=self.retry_handlers(),
                **kwargs,
            )
        return self._client

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
            self._client = self.client

    # -- calls -------------------------------------------------------------

    async def _call(self, method: str, **kwargs: Any) -> AsyncSlackResponse:
        """Call ``method`` (e.g. ``chat.postMessage``); failures become SlackNotifyError."""
        client = self._get_client()
        fn = getattr(client, method.replace(".", "_"))
        try:
            return await fn(**kwargs)
        except SlackApiError as err:
            raise self._api_error(method, err) from None
        except TimeoutError:
            raise self._error(f"timed out after {self.timeout}s", method, retryable=True) from None
        except (aiohttp.ClientError, OSError) as err:
            raise self._error(
                f"connection failed ({type(err).__name__}: {err})", method, retryable=True
            ) from None
        except SlackClientError as err:
            raise self._error(f"{type(err).__name__}: {err}", method, retryable=False) from None

    def _error(
        self,
        what: str,
        method: str,
        *,
        retryable: bool,
        retry_after: float | None = None,
        error: str | None = None,
        status: int | None = None,
        scope: str = "receiver",
        fix: str | None = None,
    ) -> SlackNotifyError:
        message = redact(f"slack receiver {self.name!r}: {method} {what}", [self.token])
        log.info("%s (retryable=%s, retry_after=%s)", message, retryable, retry_after)
        return SlackNotifyError(
            message, retryable=retryable, retry_after=retry_after, error=error, status=status,
            scope="message" if scope == "message" else "receiver", fix=fix,
        )

    def _api_error(self, method: str, err: SlackApiError) -> SlackNotifyError:
        resp = err.response
        status = getattr(resp, "status_code", None)
        data = getattr(resp, "data", None)
        code = data.get("error") if isinstance(data, dict) else None
        retry_after = retry_after_seconds(getattr(resp, "headers", None))
        what = f"failed: HTTP {status}" + (f", error {code}" if code else "")
        kw: dict[str, Any] = {"error": code, "status": status}
        if status == 429 or code == "ratelimited":
            return self._error(what, method, retryable=True,
                               retry_after=retry_after if retry_after is not None else 1.0, **kw)
        if code in RECEIVER_ERRORS:
            fix = RECEIVER_ERRORS[code]
            if code in ("channel_not_found", "not_in_channel", "is_archived"):
                fix = f"channel {self.channel!r}: {fix}"
            return self._error(what, method, retryable=False, fix=fix, **kw)
        if code in MESSAGE_ERRORS:
            return self._error(what, method, retryable=False, scope="message",
                               fix="Slack refused this message: report it with the log line", **kw)
        if code in TRANSIENT_ERRORS or (status is not None and status >= 500):
            return self._error(what, method, retryable=True, retry_after=retry_after, **kw)
        if status is not None and 400 <= status < 500:
            retryable, status_fix = classify_status(status)
            return self._error(what, method, retryable=retryable, retry_after=retry_after if retryable else None,
                               fix=status_fix, **kw)
        # HTTP 200 with an error code we do not know: trying again sends the same request.
        return self._error(what, method, retryable=False, scope="message",
                           fix=f"Slack answered {code!r}: see https://docs.slack.dev/reference/methods/{method}", **kw)

    async def _send(self, msg: SlackMessage, channel: str, thread_ts: str | None = None,
                    broadcast: bool = False) -> AsyncSlackResponse:
        return await self._call(
            "chat.postMessage", channel=channel, thread_ts=thread_ts, **msg.kwargs(),
            reply_broadcast=True if broadcast and thread_ts else None, unfurl_links=False, unfurl_media=False,
        )

    async def _reply(self, root: Mapping[str, Any], lines: list[str], *, broadcast: bool = False) -> None:
        """A thread reply: the lines as one section (what changed), the same as its text."""
        text = _truncate("\n".join(lines), FALLBACK_MAX)
        await self._call(
            "chat.postMessage", channel=root["channel"], thread_ts=root["ts"], text=text,
            blocks=[_section(text)], reply_broadcast=True if broadcast else None,
            unfurl_links=False, unfurl_media=False,
        )

    async def check(self) -> dict[str, Any]:
        """Call ``auth.test``: who the token is, or a NotifyError (e.g. at startup)."""
        resp = await self._call("auth.test")
        return dict(resp.data) if isinstance(resp.data, dict) else {}

    # -- notify: one alert, one thread -----------------------------------------

    async def notify(self, alert: Alert, memory: Memory | None) -> Memory | None:
        root = memory if memory and memory.get("channel") and memory.get("ts") else None
        peaks = Peaks.load((memory or {}).get("peaks"))
        fp = alert.fingerprint
        pres = self.presentation
        if alert.status == "firing":
            peaks.update(alert, alert.starts_at if root is None else (alert.ends_at or alert.starts_at))
        if alert.status == "resolved":
            msg = build_message(alert, kind="resolved", pres=pres, peaks=peaks)
            if root is None:
                # The firing message was never delivered (or its memory is lost):
                # say it resolved in a message of its own.
                resp = await self._send(msg, self.channel)
                return {"channel": resp["channel"], "ts": resp["ts"]}
            try:
                await self._call("chat.update", channel=root["channel"], ts=root["ts"], **msg.kwargs())
            except SlackNotifyError as err:
                if err.error == "message_not_found":
                    # The original was deleted: say it resolved in a message of its own.
                    resp = await self._send(msg, self.channel)
                    return {"channel": resp["channel"], "ts": resp["ts"]}
                if err.error not in ("cant_update_message", "edit_window_closed"):
                    raise
                # The original is frozen: the thread reply below still says resolved.
                log.info("slack %s: could not edit message of alert %s (%s)", self.name, fp, err.error)
            await self._reply(root, [_resolved_line(alert, pres, head=peaks.headline)])
            return {"channel": root["channel"], "ts": root["ts"], "peaks": peaks.dump()}
        if root is None:
            resp = await self._send(build_message(alert, pres=pres, peaks=peaks), self.channel)
            log.debug("slack %s: alert %s posted as %s/%s", self.name, fp, resp["channel"], resp["ts"])
            return {"channel": resp["channel"], "ts": resp["ts"], "seen": _told(alert), "peaks": peaks.dump()}
        lines, escalated = change_lines((memory or {}).get("seen") or {}, alert, pres)
        await self._reply(root, lines, broadcast=escalated)
        return {"channel": root["channel"], "ts": root["ts"], "seen": _told(alert), "peaks": peaks.dump()}

    # -- groups: one thread per incident --------------------------------------

    async def notify_group(self, notification: GroupNotification, memory: Memory | None) -> Memory | None:
        n = notification
        pres = self.presentation
        mem = dict(memory) if memory else {}
        told: dict[str, Any] = {k: (v if isinstance(v, dict) else {"sid": v}) for k, v in (mem.get("told") or {}).items()}
        peaks = {fp: Peaks.load(p) for fp, p in (mem.get("peaks") or {}).items()}
        open_ = bool(mem.get("open") and mem.get("channel") and mem.get("ts"))
        firing = sorted(n.firing, key=_lead_order)
        for a in firing:
            peaks.setdefault(a.fingerprint, Peaks()).update(a, n.now)
        if not open_:
            if not firing:
                return memory  # resolves of alerts no open thread told: nothing to say
            return await self._open_thread(n, firing, peaks)
        lines: list[str] = []
        escalated = False
        for a in firing:
            before = told.get(a.fingerprint)
            if before is None or before.get("sid") != state_id(a):
                more, up = change_lines(before if before and "cause" in before else None, a, pres)
                lines.extend(more)
                escalated = escalated or up
        resolved = [a for a in n.resolved if a.fingerprint in told and told[a.fingerprint].get("sid") != state_id(a)]
        lines.extend(_resolved_line(a, pres, n.now, peaks[a.fingerprint].headline if a.fingerprint in peaks else None)
                     for a in resolved)
        if resolved and firing:
            # What resolved is part of the incident; say what is still open (a drive that
            # no longer slows a service still fails).
            lines.append(f"*Still firing:* {_escape('; '.join(headline(a) for a in firing[:3]))}"
                         + (f" (+{len(firing) - 3} more)" if len(firing) > 3 else ""))
        # The incident's severity is its most severe firing alert's: a new critical alert
        # (a failing drive that starts to slow a service) escalates it in this thread.
        was = str(mem.get("severity") or group_severity([a for a in firing if a.fingerprint in told]))
        now_sev = group_severity(firing)
        if firing and lines and now_sev != was:
            up = _SEVERITY_RANK.get(now_sev, 0) > _SEVERITY_RANK.get(was, 0)
            if up and not any("*Escalated" in line for line in lines):
                lines.insert(0, f":arrow_up: *Escalated:* {was} → *{now_sev}*: {_escape(headline(firing[0]))}")
            elif not up:
                lines.insert(0, f":arrow_down: *Severity:* {was} → *{now_sev}*: no {was} alert firing now")
            escalated = escalated or up
        closing = not firing and bool(resolved)
        since = float(mem.get("since", min((a.starts_at for a in firing), default=n.now)))
        reminder = not lines and bool(firing) and n.now - float(mem.get("at", 0.0)) >= n.route.repeat_interval
        if not lines and not reminder:
            return memory  # e.g. an alert resolved that this thread never told
        root = {"channel": mem["channel"], "ts": mem["ts"]}
        reminders = int(mem.get("reminders", 0)) + (1 if reminder else 0)
        if closing:
            lead = max(resolved, key=lambda a: (a.ends_at or n.now, a.fingerprint))
            lead = dataclasses.replace(lead, starts_at=min(since, lead.starts_at))
            msg = build_message(lead, kind="resolved", pres=pres, peaks=peaks.get(lead.fingerprint), now=n.now)
        else:
            msg = build_message(firing[0], pres=pres, peaks=peaks.get(firing[0].fingerprint),
                                note=_group_note(firing, n.now, since, reminders), now=n.now)
            msg = self._with_actions(msg, n, firing[0])
            if len(firing) > 1:
                msg = dataclasses.replace(msg, text=_truncate(f"{msg.text} (+{len(firing) - 1} more alerts)", FALLBACK_MAX))
        try:
            await self._call("chat.update", channel=root["channel"], ts=root["ts"], **msg.kwargs())
        except SlackNotifyError as err:
            if err.error == "message_not_found" and firing:
                # The parent was deleted: the incident goes on in a new thread.
                return await self._open_thread(n, firing, peaks)
            if err.error not in ("message_not_found", "cant_update_message", "edit_window_closed"):
                raise
            log.info("slack %s: could not edit the parent of group %s (%s)", self.name, n.key, err.error)
        if reminder:
            lines = _reminder_lines(firing, told, since, n.now, pres)
        # Escalations are shown in the channel, not only in the thread.
        await self._reply(root, lines, broadcast=escalated or (reminder and self.reminder_broadcast))
        log.debug("slack %s: group %s %s in %s/%s", self.name, n.key,
                  "reminder" if reminder else "closed" if closing else "update", root["channel"], root["ts"])
        if closing:
            return {**root, "open": False, "told": {}, "at": n.now}
        for a in firing:
            told[a.fingerprint] = _told(a, told.get(a.fingerprint), n.now)
        for a in resolved:
            told.pop(a.fingerprint, None)
            peaks.pop(a.fingerprint, None)
        return {**root, "open": True, "told": told, "since": since, "at": n.now, "reminders": reminders,
                "severity": now_sev, "peaks": {fp: p.dump() for fp, p in peaks.items() if fp in told}}

    def _with_actions(self, msg: SlackMessage, n: GroupNotification, lead: Alert) -> SlackMessage:
        """``msg`` with the action buttons (and who acknowledged) when this receiver offers them."""
        if not self.actions:
            return msg
        extra = parent_actions(n.key, n.labels, lead, n.now, self.acks)
        return dataclasses.replace(msg, blocks=[*msg.blocks, *extra])

    async def _open_thread(self, n: GroupNotification, firing: list[Alert], peaks: dict[str, Peaks]) -> Memory:
        since = min(a.starts_at for a in firing)
        msg = build_message(firing[0], pres=self.presentation, peaks=peaks.get(firing[0].fingerprint),
                            note=_group_note(firing, n.now, since, 0), now=n.now)
        msg = self._with_actions(msg, n, firing[0])
        if len(firing) > 1:
            msg = dataclasses.replace(msg, text=_truncate(f"{msg.text} (+{len(firing) - 1} more alerts)", FALLBACK_MAX))
        resp = await self._send(msg, self.channel)
        log.debug("slack %s: group %s posted as %s/%s", self.name, n.key, resp["channel"], resp["ts"])
        return {"channel": resp["channel"], "ts": resp["ts"], "open": True,
                "told": {a.fingerprint: _told(a, None, n.now) for a in firing}, "since": since, "at": n.now,
                "reminders": 0, "severity": group_severity(firing),
                "peaks": {a.fingerprint: peaks[a.fingerprint].dump() for a in firing if a.fingerprint in peaks}}


def _lead_order(a: Alert) -> tuple:
    """The lead alert of a group first: most severe, then earliest, then by fingerprint."""
    return (-_SEVERITY_RANK.get(a.severity, 0), a.starts_at, a.fingerprint)


def _resolved_line(a: Alert, pres: Presentation, now: float | None = None, head: str | None = None) -> str:
    end = a.ends_at if a.ends_at is not None else (now if now is not None else a.starts_at)
    return (f"{RESOLVED_EMOJI} *Resolved:* {_escape(head or headline(a))}: {ended(a)} {pres.time(end)} "
            f"after {format_duration(end - a.starts_at)}")


def _group_note(firing: list[Alert], now: float, since: float, reminders: int) -> str | None:
    """Context of a group's parent: its other alerts, and how long it fires once reminded."""
    parts = []
    if len(firing) > 1:
        others = "; ".join(headline(a) for a in firing[1:6])
        more = f" (+{len(firing) - 6} more)" if len(firing) > 6 else ""
        parts.append(f"{len(firing)} alerts firing in this incident, also: {others}{more}")
    if reminders:
        parts.append(f"still firing after {format_duration(now - since)} "
                     f"({reminders} reminder{'s' if reminders > 1 else ''} in the thread)")
    return " · ".join(parts) or None
