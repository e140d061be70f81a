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

:meth:`SlackReceiver.notify` is the per-alert conversation (one fingerprint):

- first firing: ``chat.postMessage`` with Block Kit blocks (header with a
  severity emoji and the title, suspected cause and confidence, evidence,
  start time and labels, runbook and dashboard buttons);
- later firing updates: a reply in that message's thread (``thread_ts``);
- resolved: ``chat.update`` of the original message, marked resolved with
  the duration, and a "resolved" reply in the thread.

The receiver keeps no state: :meth:`SlackReceiver.notify` returns
``{"channel": <channel id>, "ts": <root message ts>}`` and gets it back as
``memory`` next time; :meth:`SlackReceiver.notify_group` also keeps the
state id told per fingerprint, whether the thread is open and when it last
posted in it.

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

from alerts.errors import NotifyError
from alerts.model import Alert
from alerts.notify.base import Memory, Receiver, cause_text, format_duration, labels_text
from alerts.notify.http import classify_status, retry_after_seconds
from alerts.notify.pipeline import state_id
from alerts.secret import Secret, redact
from detectors.timeutil import format_ts

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
# Readability, not a Slack limit: more evidence than this is summarised.
MAX_EVIDENCE = 20
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
# Block Kit


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _mrkdwn(text: str, limit: int) -> str:
    """Escape user text for mrkdwn and cut it to ``limit`` without splitting an entity."""
    text = _escape(text)
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    amp = cut.rfind("&", max(0, len(cut) - 5))
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]
    return cut + "…"


def _num(x: float) -> str:
    return f"{x:,.4g}" if abs(x) < 1e6 else f"{x:,.0f}"


def _date(ts: float) -> str:
    """A Slack date token, shown in the reader's time zone, with the UTC time as fallback."""
    return f"<!date^{int(ts)}^{{date_short_pretty}} {{time_secs}}|{format_ts(ts)}>"


def _cause_line(alert: Alert) -> str:
    return (
        f"*Suspected cause:* {_escape(cause_text(alert.cause))} "
        f"({round(alert.confidence * 100)}% confidence)   *Severity:* {_escape(alert.severity)}"
    )


def _evidence_blocks(alert: Alert, budget: int) -> list[dict[str, Any]]:
    """Sections of evidence fields, at most ``budget`` blocks, at most MAX_EVIDENCE items."""
    if budget <= 0 or not alert.evidence:
        return []
    shown = list(alert.evidence[:MAX_EVIDENCE])
    fields = [
        {
            "type": "mrkdwn",
            "text": _mrkdwn(
                f"{ev.signal}: {_num(ev.value)} (usual {_num(ev.expected)})\n{ev.text}", FIELD_MAX
            ),
        }
        for ev in shown
    ]
    blocks: list[dict[str, Any]] = []
    hidden = len(alert.evidence) - len(shown)
    room = budget - (1 if hidden else 0)
    for i in range(0, len(fields), FIELDS_PER_SECTION):
        if len(blocks) >= room:
            hidden += len(fields) - i
            break
        block: dict[str, Any] = {"type": "section", "fields": fields[i : i + FIELDS_PER_SECTION]}
        if i == 0:
            block["text"] = {"type": "mrkdwn", "text": "*Evidence*"}
        blocks.append(block)
    if hidden and len(blocks) < budget:
        blocks.append(
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": f"…and {hidden} more evidence items"}],
            }
        )
    return blocks


def _context_block(alert: Alert, note: str | None = None) -> dict[str, Any]:
    elements = [{"type": "mrkdwn", "text": f"Started {_date(alert.starts_at)}"}]
    labels = labels_text(alert.labels)
    if labels:
        elements.append({"type": "mrkdwn", "text": _mrkdwn(labels, CONTEXT_TEXT_MAX)})
    elements.append({"type": "mrkdwn", "text": f"fingerprint `{_escape(alert.fingerprint)}`"})
    if note:
        elements.append({"type": "mrkdwn", "text": _mrkdwn(note, CONTEXT_TEXT_MAX)})
    return {"type": "context", "elements": elements}


def _actions_block(runbook_url: str | None, dashboard_url: str | None) -> dict[str, Any] | None:
    buttons = []
    for action_id, label, url in (
        ("runbook", "Runbook", runbook_url),
        ("dashboard", "Dashboard", dashboard_url),
    ):
        if url and len(url) <= BUTTON_URL_MAX:
            buttons.append(
                {
                    "type": "button",
                    "action_id": action_id,
                    "text": {"type": "plain_text", "text": label},
                    "url": url,
                }
            )
    return {"type": "actions", "elements": buttons} if buttons else None


def build_blocks(
    alert: Alert,
    *,
    kind: str = "new",
    runbook_url: str | None = None,
    dashboard_url: str | None = None,
    note: str | None = None,
) -> list[dict[str, Any]]:
    """Block Kit blocks for one alert state, within Slack's limits.

    ``kind`` is ``new`` (the root message), ``update`` (a thread reply while
    firing) or ``resolved`` (the edited root message); ``note`` is added to
    the context line (the other alerts of a group, how long it fires).
    """
    blocks: list[dict[str, Any]] = []
    if kind == "update":
        head = f"*Update:* still firing, {_escape(alert.severity)}"
        blocks.append(
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": _mrkdwn_join(head, _cause_line(alert))},
            }
        )
    else:
        if kind == "resolved":
            header = f"{RESOLVED_EMOJI} RESOLVED: {alert.title}"
        else:
            header = f"{SEVERITY_EMOJI.get(alert.severity, ':bell:')} {alert.title}"
        blocks.append(
            {
                "type": "header",
                "text": {
                    "type": "plain_text",
                    "text": _truncate(header, HEADER_MAX),
                    "emoji": True,
                },
            }
        )
        text = _cause_line(alert)
        if kind == "resolved":
            end = alert.ends_at if alert.ends_at is not None else alert.starts_at
            text = (
                f"*Resolved* {_date(end)} after {format_duration(end - alert.starts_at)}\n"
                + text.replace("*Suspected cause:*", "*Suspected cause was:*")
            )
        blocks.append(
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": _truncate(text, SECTION_TEXT_MAX)},
            }
        )
    actions = _actions_block(runbook_url, dashboard_url)
    tail = 1 + (1 if actions else 0)  # context (+ actions)
    blocks.extend(_evidence_blocks(alert, MAX_BLOCKS - len(blocks) - tail))
    blocks.append(_context_block(alert, note))
    if actions:
        blocks.append(actions)
    return blocks[:MAX_BLOCKS]


def _mrkdwn_join(*parts: str) -> str:
    return _truncate("\n".join(parts), SECTION_TEXT_MAX)


def fallback_text(alert: Alert, *, kind: str = "new") -> str:
    """The plain ``text`` of a message: notifications and clients without blocks show it."""
    if kind == "resolved":
        end = alert.ends_at if alert.ends_at is not None else alert.starts_at
        text = f"[RESOLVED after {format_duration(end - alert.starts_at)}] {alert.title}"
    else:
        prefix = "[update] " if kind == "update" else ""
        text = (
            f"{prefix}[{alert.severity.upper()}] {alert.title}: "
            f"{cause_text(alert.cause)} ({round(alert.confidence * 100)}% confidence)"
        )
    return _mrkdwn(text, FALLBACK_MAX)


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
        Shown as buttons when set.
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
            retryable, fix = classify_status(status)
            return self._error(what, method, retryable=retryable, retry_after=retry_after if retryable else None,
                               fix=fix, **kw)
        # HTTP 200 with an error code we do not know: trying again sends the same request.
        return self._error(what, method, retryable=False, scope="message",
                           fix=f"Slack answered {code!r}: see https://docs.slack.dev/reference/methods/{method}", **kw)

    async def _post(
        self, alert: Alert, kind: str, channel: str, thread_ts: str | None = None
    ) -> AsyncSlackResponse:
        return await self._call(
            "chat.postMessage",
            channel=channel,
            text=fallback_text(alert, kind=kind),
            blocks=build_blocks(
                alert, kind=kind, runbook_url=self.runbook_url, dashboard_url=self.dashboard_url
            ),
            thread_ts=thread_ts,
            unfurl_links=False,
            unfurl_media=False,
        )

    async def check(self) -> dict[str, Any]:
        """Call ``auth.test``: who the token is, or a NotifyError (e.g. at startup)."""
        resp = await self._call("auth.test")
        return dict(resp.data) if isinstance(resp.data, dict) else {}

    # -- notify ------------------------------------------------------------

    async def notify(self, alert: Alert, memory: Memory | None) -> Memory | None:
        root = memory if memory and memory.get("channel") and memory.get("ts") else None
        fp = alert.fingerprint
        if alert.status == "resolved":
            if root is None:
                # The firing message was never delivered (or its memory is lost):
                # say it resolved in a message of its own.
                resp = await self._post(alert, "resolved", self.channel)
                log.debug(
                    "slack %s: resolved alert %s posted as new message %s",
                    self.name,
                    fp,
                    resp["ts"],
                )
                return {"channel": resp["channel"], "ts": resp["ts"]}
            try:
                await self._call(
                    "chat.update",
                    channel=root["channel"],
                    ts=root["ts"],
                    text=fallback_text(alert, kind="resolved"),
                    blocks=build_blocks(
                        alert,
                        kind="resolved",
                        runbook_url=self.runbook_url,
                        dashboard_url=self.dashboard_url,
                    ),
                )
            except SlackNotifyError as err:
                if err.error == "message_not_found":
                    # The original was deleted: say it resolved in a message of its own.
                    resp = await self._post(alert, "resolved", self.channel)
                    return {"channel": resp["channel"], "ts": resp["ts"]}
                if err.error not in ("cant_update_message", "edit_window_closed"):
                    raise
                # The original is frozen: the thread reply below still says resolved.
                log.info(
                    "slack %s: could not edit message of alert %s (%s)", self.name, fp, err.error
                )
            end = alert.ends_at if alert.ends_at is not None else alert.starts_at
            await self._call(
                "chat.postMessage",
                channel=root["channel"],
                thread_ts=root["ts"],
                text=f"{RESOLVED_EMOJI} resolved after {format_duration(end - alert.starts_at)}",
            )
            log.debug(
                "slack %s: alert %s resolved in %s/%s", self.name, fp, root["channel"], root["ts"]
            )
            return dict(root)
        if root is None:
            resp = await self._post(alert, "new", self.channel)
            log.debug(
                "slack %s: alert %s posted as %s/%s", self.name, fp, resp["channel"], resp["ts"]
            )
            return {"channel": resp["channel"], "ts": resp["ts"]}
        await self._post(alert, "update", root["channel"], thread_ts=root["ts"])
        log.debug(
            "slack %s: alert %s update in thread %s/%s", self.name, fp, root["channel"], root["ts"]
        )
        return dict(root)

    # -- groups: one thread per incident --------------------------------------

    async def notify_group(self, notification: GroupNotification, memory: Memory | None) -> Memory | None:
        n = notification
        mem = dict(memory) if memory else {}
        told: dict[str, str] = dict(mem.get("told") or {})
        open_ = bool(mem.get("open") and mem.get("channel") and mem.get("ts"))
        firing = sorted(n.firing, key=_lead_order)
        if not open_:
            if not firing:
                return memory  # resolves of alerts no open thread told: nothing to say
            return await self._open_thread(n, firing)
        lines: list[str] = []
        for a in firing:
            before = told.get(a.fingerprint)
            if before is None:
                lines.append(f":heavy_plus_sign: *New in this incident:* {_alert_line(a)}")
            elif before != state_id(a):
                lines.append(f":arrows_counterclockwise: *Update:* {_alert_line(a)}")
        resolved = [a for a in n.resolved if told.get(a.fingerprint) not in (None, state_id(a))]
        for a in resolved:
            end = a.ends_at if a.ends_at is not None else n.now
            lines.append(f"{RESOLVED_EMOJI} resolved after {format_duration(end - a.starts_at)}: {_escape(a.title)}")
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
            note, kind, shown = None, "resolved", [lead]
        else:
            note = _group_note(firing, n.now, since, reminders)
            kind, shown = "new", firing
        try:
            await self._call(
                "chat.update", channel=root["channel"], ts=root["ts"],
                text=_group_fallback(shown, kind), blocks=self._group_blocks(shown, kind, note),
            )
        except SlackNotifyError as err:
            if err.error == "message_not_found" and firing:
                # The parent was deleted: the incident goes on in a new thread.
                return await self._open_thread(n, firing)
            if err.error not in ("message_not_found", "cant_update_message", "edit_window_closed"):
                raise
            log.info("slack %s: could not edit the parent of group %s (%s)", self.name, n.key, err.error)
        if reminder:
            text = (f":bell: *Reminder:* still firing after {format_duration(n.now - since)}: "
                    + "; ".join(_escape(a.title) for a in firing[:5])
                    + (f" (+{len(firing) - 5} more)" if len(firing) > 5 else ""))
        else:
            text = "\n".join(lines)
        await self._call(
            "chat.postMessage", channel=root["channel"], thread_ts=root["ts"],
            text=_truncate(text, FALLBACK_MAX),
            reply_broadcast=True if reminder and self.reminder_broadcast else None,
            unfurl_links=False, unfurl_media=False,
        )
        log.debug("slack %s: group %s %s in %s/%s", self.name, n.key,
                  "reminder" if reminder else "closed" if closing else "update", root["channel"], root["ts"])
        if closing:
            return {**root, "open": False, "told": {}, "at": n.now}
        for a in firing:
            told[a.fingerprint] = state_id(a)
        for a in resolved:
            told.pop(a.fingerprint, None)
        return {**root, "open": True, "told": told, "since": since, "at": n.now, "reminders": reminders}

    async def _open_thread(self, n: GroupNotification, firing: list[Alert]) -> Memory:
        since = min(a.starts_at for a in firing)
        resp = await self._call(
            "chat.postMessage", channel=self.channel, text=_group_fallback(firing, "new"),
            blocks=self._group_blocks(firing, "new", _group_note(firing, n.now, since, 0)),
            unfurl_links=False, unfurl_media=False,
        )
        log.debug("slack %s: group %s posted as %s/%s", self.name, n.key, resp["channel"], resp["ts"])
        return {"channel": resp["channel"], "ts": resp["ts"], "open": True,
                "told": {a.fingerprint: state_id(a) for a in firing}, "since": since, "at": n.now, "reminders": 0}

    def _group_blocks(self, alerts: list[Alert], kind: str, note: str | None) -> list[dict[str, Any]]:
        return build_blocks(alerts[0], kind=kind, runbook_url=self.runbook_url,
                            dashboard_url=self.dashboard_url, note=note)


def _lead_order(a: Alert) -> tuple:
    """The lead alert of a group first: most severe, then earliest, then by fingerprint."""
    return (-_SEVERITY_RANK.get(a.severity, 0), a.starts_at, a.fingerprint)


def _alert_line(a: Alert) -> str:
    return (f"{_escape(a.title)} ({_escape(cause_text(a.cause))}, {round(a.confidence * 100)}% confidence, "
            f"{_escape(a.severity)})")


def _group_note(firing: list[Alert], now: float, since: float, reminders: int) -> str | None:
    """Context of a group's parent: its other alerts, and how long it fires once reminded."""
    parts = []
    if len(firing) > 1:
        others = "; ".join(a.title for a in firing[1:6])
        more = f" (+{len(firing) - 6} more)" if len(firing) > 6 else ""
        parts.append(f"{len(firing)} alerts firing in this incident, also: {others}{more}")
    if reminders:
        parts.append(f"still firing after {format_duration(now - since)} "
                     f"({reminders} reminder{'s' if reminders > 1 else ''} in the thread)")
    return " · ".join(parts) or None


def _group_fallback(alerts: list[Alert], kind: str) -> str:
    text = fallback_text(alerts[0], kind=kind)
    return text if len(alerts) == 1 else _truncate(f"{text} (+{len(alerts) - 1} more alerts)", FALLBACK_MAX)
