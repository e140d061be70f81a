"""Acting on an alert from Slack: the buttons of a parent message, and what a click does.

The buttons (:func:`action_blocks`, one ``actions`` block for the parent
message of an incident):

- **Acknowledge** (``tocsin_ack``): an :class:`~alerts.ack.Ack` on the
  group, published through ``publish_ack``; the group's reminders stop until
  the acknowledged alert resolves, and the parent message is edited
  (``chat.update``) to say who acknowledged it and when;
- **Silence 1 h**, **Silence 4 h**, **Silence until resolved**
  (``tocsin_silence_1h`` ...): a real silence (:mod:`alerts.silence`,
  validated by :class:`~alerts.silence.SilenceAPI` against the worker's
  limits) matching the group's labels, ``created_by`` the Slack user id,
  published through ``publish_silence`` (the ``silences`` topic) and only
  then kept in the store; "until resolved" lasts the longest silence allowed
  and is expired when the alert resolves (:func:`until_resolved_expiries`);
- **Wrong cause?** (``tocsin_wrong_cause``, a ``static_select`` of the right
  cause): a ``tocsin.label.v1`` record (source ``slack``, author the Slack
  user, keyed by fingerprint) published through ``publish_label``, for the
  ``labels`` topic and the cause model.

The context a click needs travels in the buttons' ``value`` (group key,
lead fingerprint, the matchers of the silence) and in the select's option
values (``<cause>|<fingerprint>``): Slack sends back what tocsin put there,
in a request that Slack signs.

Two ways in, as Slack offers them: HTTP request URLs
(:meth:`SlackActions.handle_http`: the body verified with
``slack_sdk.signature.SignatureVerifier``, requests older than
``max_age`` or already seen refused) and Socket Mode
(:mod:`stream.slack_socket`, an outbound websocket authenticated by the app
token: :meth:`SlackActions.handle`). Either way only the users and user
groups on the :class:`AllowList` may act; everyone else is told so, and
nothing changes.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import orjson
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from alerts.ack import Ack, AckStore, ack_text
from alerts.errors import AlertsError
from alerts.matchers import Matcher
from alerts.model import Alert
from alerts.secret import Secret
from alerts.silence import (
    Silence,
    SilenceAPI,
    SilenceError,
    SilenceLimits,
    SilenceStore,
    matches_every_alert,
)
from detectors.timeutil import format_ts

__all__ = [
    "ACK",
    "LABEL_CAUSES",
    "LABEL_SCHEMA",
    "SILENCE",
    "WRONG_CAUSE",
    "ActionError",
    "AllowList",
    "Interaction",
    "Outcome",
    "RequestVerifier",
    "SlackActions",
    "action_blocks",
    "label_record",
    "parent_actions",
    "parse_interaction",
    "silence_matchers",
    "until_resolved_expiries",
]

log = logging.getLogger(__name__)

ACK = "tocsin_ack"
SILENCE = "tocsin_silence_"  #: prefix: tocsin_silence_1h, tocsin_silence_4h, tocsin_silence_resolved
WRONG_CAUSE = "tocsin_wrong_cause"
BLOCK_ID = "tocsin_actions"
LABEL_SCHEMA = "tocsin.label.v1"
#: What a person may say the cause was (the CONTRACT's label causes).
LABEL_CAUSES = ("capacity_saturation", "suspected_attack", "disk_failure", "benign")
_CAUSE_NAMES = {
    "capacity_saturation": "Capacity saturation",
    "suspected_attack": "Suspected attack",
    "disk_failure": "Disk failure",
    "benign": "Nothing wrong (benign)",
}
#: The silences offered, (name in the action id, button text, seconds; None: until resolved).
DEFAULT_SILENCES: tuple[tuple[str, str, float | None], ...] = (
    ("1h", "Silence 1 h", 3600.0),
    ("4h", "Silence 4 h", 4 * 3600.0),
    ("resolved", "Silence until resolved", None),
)
_VALUE_MAX = 2000  # Slack's limit on a button value
_UNTIL = "until alert {fp} resolves"
Publish = Callable[[dict[str, Any]], Awaitable[None]]


class ActionError(AlertsError):
    """A request refused; ``status`` is the HTTP status to answer, the message what to tell."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


# -- the buttons --------------------------------------------------------------------


def silence_matchers(group_labels: Mapping[str, str], alert: Alert) -> list[str]:
    """Matchers of a silence of this group: its labels, or the alert's when they do not narrow it down.

    A route with ``group_by: []`` groups every alert in one group with no
    labels; a silence of that would mute everything, so the lead alert's own
    labels (service, host, disk) are used instead.

    >>> a = Alert({"service": "ent", "host": "web-1", "disk": None}, "firing", "warning", "t", "unknown", 0.5, 0.0)
    >>> silence_matchers({"service": "ent"}, a), silence_matchers({}, a)
    (['service="ent"'], ['host="web-1"', 'service="ent"'])
    """
    def build(labels: Mapping[str, str | None]) -> list[Matcher]:
        return [Matcher(k, "=", str(v)) for k, v in sorted(labels.items()) if v is not None]

    ms = build(group_labels)
    if not ms or matches_every_alert(ms):
        ms = build(alert.labels) + [m for m in ms if m.name not in alert.labels]
    return [str(m) for m in ms]


def action_blocks(
    group_key: str,
    group_labels: Mapping[str, str],
    alert: Alert,
    *,
    silences: tuple[tuple[str, str, float | None], ...] = DEFAULT_SILENCES,
) -> list[dict[str, Any]]:
    """The ``actions`` block of a parent message (a list of one block; empty when it cannot be built).

    ``group_key`` and ``group_labels`` are the group notification's
    (``n.key``, ``n.labels``); ``alert`` is the lead alert the message shows.
    """
    context = orjson.dumps({"g": group_key, "f": alert.fingerprint,
                            "m": silence_matchers(group_labels, alert)}).decode()
    if len(context) > _VALUE_MAX:
        log.warning("slack actions: group %s has labels too long for a button value, no buttons", group_key[:100])
        return []
    elements: list[dict[str, Any]] = [
        {"type": "button", "action_id": ACK, "text": {"type": "plain_text", "text": "Acknowledge"},
         "style": "primary", "value": context},
    ]
    for name, text, _ in silences:
        elements.append({"type": "button", "action_id": SILENCE + name,
                         "text": {"type": "plain_text", "text": text}, "value": context})
    options = [{"text": {"type": "plain_text", "text": _CAUSE_NAMES[c]}, "value": f"{c}|{alert.fingerprint}"}
               for c in LABEL_CAUSES if c != alert.cause]
    elements.append({"type": "static_select", "action_id": WRONG_CAUSE,
                     "placeholder": {"type": "plain_text", "text": "Wrong cause? Pick the right one"},
                     "options": options})
    return [{"type": "actions", "block_id": BLOCK_ID, "elements": elements}]


def parent_actions(
    group_key: str,
    group_labels: Mapping[str, str],
    alert: Alert,
    now: float,
    acks: AckStore | None = None,
) -> list[dict[str, Any]]:
    """The blocks a receiver appends to a firing parent: the buttons, and who acknowledged it if someone did.

    An acknowledged group shows ``:eyes: acknowledged by <@U…> at 08:20 UTC``
    above its buttons, and no Acknowledge button.
    """
    blocks = action_blocks(group_key, group_labels, alert)
    ack = acks.get(group_key, now) if acks is not None else None
    return acknowledged_blocks(blocks, ack) if blocks and ack is not None else blocks


def label_record(fingerprint: str, cause: str, author: str, now: float, source: str = "slack") -> dict[str, Any]:
    """A ``tocsin.label.v1`` record (the ``labels`` topic, keyed by fingerprint).

    >>> label_record("04b95f564b704143", "capacity_saturation", "U024BE7LH", 1617697200.0)["ts"]
    '2021-04-06T08:20:00Z'
    """
    if cause not in LABEL_CAUSES:
        raise ActionError(400, f"cause {cause[:60]!r} is not one of {', '.join(LABEL_CAUSES)}")
    return {"schema": LABEL_SCHEMA, "fingerprint": fingerprint, "cause": cause, "author": author,
            "source": source, "ts": format_ts(now)}


def until_resolved_expiries(store: SilenceStore, alert: Alert, now: float) -> list[Silence]:
    """The "until resolved" silences that ``alert`` resolving ends, as expiries to publish."""
    if alert.status != "resolved":
        return []
    api = SilenceAPI(store)
    mark = _UNTIL.format(fp=alert.fingerprint)
    return [api.expiry(s.id, now) for s in store
            if s.state(now) != "expired" and s.comment.endswith(mark)]


# -- requests ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Interaction:
    """One click of a ``block_actions`` payload, what tocsin needs of it."""

    user: str
    action_id: str
    value: str | None
    channel: str | None
    message_ts: str | None
    message: dict[str, Any] | None


def parse_interaction(payload: Any) -> Interaction:
    """The click in a ``block_actions`` payload; ActionError 400 when it is not one tocsin understands."""
    if not isinstance(payload, dict) or payload.get("type") != "block_actions":
        kind = payload.get("type") if isinstance(payload, dict) else type(payload).__name__
        raise ActionError(400, f"not a block_actions payload (type {str(kind)[:40]!r})")
    user = payload.get("user")
    uid = user.get("id") if isinstance(user, dict) else None
    if not isinstance(uid, str) or not uid:
        raise ActionError(400, "block_actions payload without user.id")
    actions = payload.get("actions")
    if not isinstance(actions, list) or not actions or not isinstance(actions[0], dict):
        raise ActionError(400, "block_actions payload without actions")
    act = actions[0]
    action_id = act.get("action_id")
    if not isinstance(action_id, str):
        raise ActionError(400, "action without action_id")
    value = act.get("value")
    if act.get("type") == "static_select":
        opt = act.get("selected_option")
        value = opt.get("value") if isinstance(opt, dict) else None
    container = payload.get("container")
    if not isinstance(container, dict):
        container = {}
    where = payload.get("channel")
    channel = container.get("channel_id") or (where.get("id") if isinstance(where, dict) else None)
    message = payload.get("message") if isinstance(payload.get("message"), dict) else None
    ts = container.get("message_ts") or (message or {}).get("ts")
    return Interaction(uid, action_id, value if isinstance(value, str) else None,
                       channel if isinstance(channel, str) else None, ts if isinstance(ts, str) else None, message)


def http_payload(body: bytes) -> Any:
    """The JSON ``payload`` field of Slack's form-encoded interactivity request."""
    try:
        form = parse_qs(body.decode("utf-8"), strict_parsing=False)
    except UnicodeDecodeError:
        raise ActionError(400, "the body is not UTF-8") from None
    raw = form.get("payload")
    if not raw:
        raise ActionError(400, "the body has no payload field (Slack sends payload=<JSON>, form-encoded)")
    try:
        return orjson.loads(raw[0])
    except orjson.JSONDecodeError as exc:
        raise ActionError(400, f"the payload is not JSON: {exc}") from None


class RequestVerifier:
    """Slack's request signature (``X-Slack-Signature``, ``X-Slack-Request-Timestamp``), checked.

    ``SignatureVerifier`` checks the HMAC and refuses timestamps more than
    five minutes off; this also refuses a request older than ``max_age``
    and one whose signature was already accepted (a replay), remembering
    the signatures of the last ``max_age`` seconds.
    """

    def __init__(self, signing_secret: Secret, clock: Callable[[], float] = time.time, max_age: float = 300.0,
                 ) -> None:
        self.clock = clock
        self.max_age = max_age

        class _Clock:
            def now(self) -> float:
                return clock()

        self._verifier = SignatureVerifier(signing_secret.get(), clock=_Clock())  # type: ignore[arg-type]
        self._seen: OrderedDict[str, float] = OrderedDict()

    def check(self, body: bytes, headers: Mapping[str, str]) -> None:
        h = {k.lower(): v for k, v in headers.items()}
        stamp, signature = h.get("x-slack-request-timestamp"), h.get("x-slack-signature")
        if not stamp or not signature:
            raise ActionError(401, "unsigned request (no X-Slack-Signature / X-Slack-Request-Timestamp)")
        try:
            sent = int(stamp)
        except ValueError:
            raise ActionError(401, "X-Slack-Request-Timestamp is not a Unix time") from None
        now = self.clock()
        if abs(now - sent) > self.max_age:
            raise ActionError(401, f"request timestamp {sent} is more than {self.max_age:.0f} s from now")
        if not self._verifier.is_valid(body, stamp, signature):
            raise ActionError(401, "bad request signature")
        while self._seen and next(iter(self._seen.values())) < now - self.max_age:
            self._seen.popitem(last=False)
        if signature in self._seen:
            raise ActionError(401, "request already received (a replay)")
        self._seen[signature] = now


class AllowList:
    """Who may act: Slack user ids, and members of Slack user groups (``S...``).

    Group members are read with ``usergroups.users.list`` (scope
    ``usergroups:read``) and kept ``ttl`` seconds; when Slack cannot say,
    the user is refused (fail closed). Empty lists: nobody may act.
    """

    def __init__(self, users: tuple[str, ...] = (), groups: tuple[str, ...] = (),
                 client: AsyncWebClient | None = None, ttl: float = 300.0) -> None:
        self.users = frozenset(users)
        self.groups = tuple(groups)
        self.client = client
        self.ttl = ttl
        self._members: dict[str, tuple[float, frozenset[str]]] = {}

    async def allows(self, user: str, now: float) -> bool:
        if user in self.users:
            return True
        for g in self.groups:
            if user in await self._group(g, now):
                return True
        return False

    async def _group(self, group: str, now: float) -> frozenset[str]:
        cached = self._members.get(group)
        if cached is not None and now - cached[0] < self.ttl:
            return cached[1]
        if self.client is None:
            return frozenset()
        try:
            resp = await self.client.usergroups_users_list(usergroup=group)
            members = frozenset(str(u) for u in resp.get("users") or ())
        except (SlackApiError, SlackClientError, OSError) as exc:
            log.warning("slack actions: cannot read the members of user group %s (%s): its members are refused",
                        group, type(exc).__name__)
            return cached[1] if cached is not None else frozenset()
        self._members[group] = (now, members)
        return members


# -- the actions ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a click did: ``status`` (HTTP), ``text`` (what the user is told), the records published."""

    status: int
    text: str
    records: tuple[dict[str, Any], ...] = ()


class SlackActions:
    """Does what a click asks, once the request is known to come from Slack.

    Parameters
    ----------
    silences, limits
        The worker's silence store, and the bounds of a new silence (the web API's).
    publish_silence, publish_label, publish_ack
        Ports to the ``silences`` topic (key: id), the ``labels`` topic (key:
        fingerprint; the coordinator also feeds the cause model) and the
        acks topic (key: group key). Each raises when the record was not
        written; nothing is kept then.
    acks
        The worker's ack store (applied after a publish).
    allow
        Who may act.
    client
        A Slack Web client (the bot token) for the visible answers: the
        parent edited on acknowledge, a thread reply on silence and label,
        an ephemeral refusal. None: no answer in Slack (the records still go).
    verifier
        Checks HTTP requests (None: :meth:`handle_http` refuses them all).
    clock
        Wall time.
    """

    def __init__(
        self,
        *,
        silences: SilenceStore,
        limits: SilenceLimits,
        publish_silence: Publish,
        publish_label: Publish,
        publish_ack: Publish,
        acks: AckStore,
        allow: AllowList,
        client: AsyncWebClient | None = None,
        verifier: RequestVerifier | None = None,
        clock: Callable[[], float] = time.time,
        choices: tuple[tuple[str, str, float | None], ...] = DEFAULT_SILENCES,
    ) -> None:
        self.silences = silences
        self.api = SilenceAPI(silences, limits)
        self.publish_silence = publish_silence
        self.publish_label = publish_label
        self.publish_ack = publish_ack
        self.acks = acks
        self.allow = allow
        self.client = client
        self.verifier = verifier
        self.clock = clock
        self.choices = {name: seconds for name, _, seconds in choices}
        self.counts: dict[str, int] = {}

    def _count(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1

    async def handle_http(self, body: bytes, headers: Mapping[str, str]) -> Outcome:
        """A request to the HTTP request URL: verified, then handled. ActionError when refused."""
        if self.verifier is None:
            raise ActionError(403, "Slack interactivity over HTTP is off: no signing secret is configured")
        try:
            self.verifier.check(body, headers)
        except ActionError:
            self._count("refused.signature")
            raise
        return await self.handle(http_payload(body))

    async def handle(self, payload: Any) -> Outcome:
        """A ``block_actions`` payload from a trusted channel (verified HTTP, or Socket Mode)."""
        i = parse_interaction(payload)
        now = self.clock()
        if not (i.action_id in (ACK, WRONG_CAUSE) or i.action_id.startswith(SILENCE)):
            self._count("ignored")  # e.g. the Runbook link button: Slack reports those clicks too
            return Outcome(200, f"action {i.action_id[:60]!r} is not tocsin's")
        if not await self.allow.allows(i.user, now):
            self._count("refused.user")
            log.warning("slack actions: user %s may not act (not on slack_actions.allowed_users "
                        "or in allowed_user_groups): %s refused", i.user, i.action_id)
            await self._ephemeral(i, "You are not allowed to act on tocsin alerts: ask to be added "
                                     "to slack_actions.allowed_users or one of its user groups.")
            return Outcome(403, "not allowed")
        if i.action_id == ACK:
            out = await self._acknowledge(i, now)
        elif i.action_id.startswith(SILENCE):
            out = await self._silence(i, now)
        else:
            out = await self._relabel(i, now)
        self._count(f"done.{i.action_id}")
        return out

    @staticmethod
    def _context(i: Interaction) -> dict[str, Any]:
        try:
            ctx = orjson.loads(i.value or "")
        except orjson.JSONDecodeError:
            ctx = None
        if (not isinstance(ctx, dict) or not isinstance(ctx.get("g"), str) or not isinstance(ctx.get("f"), str)
                or not isinstance(ctx.get("m"), list)):
            raise ActionError(400, f"{i.action_id}: the button carries no alert context")
        return ctx

    async def _publish(self, port: Publish, record: dict[str, Any], what: str) -> None:
        try:
            await port(record)
        except Exception as exc:  # noqa: BLE001 - any producer failure: tell the user, keep nothing
            log.error("slack actions: could not publish the %s: %r", what, exc)
            raise ActionError(503, f"the {what} could not be written; nothing was changed, try again") from None

    async def _silence(self, i: Interaction, now: float) -> Outcome:
        ctx = self._context(i)
        name = i.action_id[len(SILENCE):]
        if name not in self.choices:
            raise ActionError(400, f"no silence {name[:20]!r} offered")
        seconds = self.choices[name]
        if seconds is None:
            seconds, comment = self.api.limits.max_duration, "from Slack: " + _UNTIL.format(fp=ctx["f"])
        else:
            comment = f"from Slack: {name}"
        try:
            s = self.api.new_silence({"matchers": ctx["m"], "duration": seconds, "created_by": i.user,
                                      "comment": comment}, now)
        except SilenceError as exc:
            raise ActionError(exc.status, f"silence refused: {exc}") from None
        rec = s.to_record()
        await self._publish(self.publish_silence, rec, "silence")
        self.silences.apply(s)
        until = "until it resolves" if name == "resolved" else f"until {format_ts(s.ends_at)[11:16]} UTC"
        await self._reply(i, f":no_bell: <@{i.user}> silenced {', '.join(ctx['m'])} {until} "
                             f"(silence `{s.id}`)")
        return Outcome(200, "silenced", (rec,))

    async def _relabel(self, i: Interaction, now: float) -> Outcome:
        cause, _, fp = (i.value or "").partition("|")
        if not fp:
            raise ActionError(400, "wrong cause: the option carries no fingerprint")
        rec = label_record(fp, cause, i.user, now)
        await self._publish(self.publish_label, rec, "label")
        await self._reply(i, f":label: <@{i.user}> says the cause was *{_CAUSE_NAMES[cause]}*: "
                             "tocsin's cause model learns from it")
        return Outcome(200, "labelled", (rec,))

    async def _acknowledge(self, i: Interaction, now: float) -> Outcome:
        ctx = self._context(i)
        ack = Ack(ctx["g"], ctx["f"], i.user, now)
        rec = ack.to_record()
        await self._publish(self.publish_ack, rec, "acknowledgement")
        self.acks.apply(ack)
        await self._show_ack(i, ack)
        return Outcome(200, "acknowledged", (rec,))

    # -- answers in Slack: best effort, the records are what counts --------------

    async def _slack(self, method: str, **kwargs: Any) -> None:
        if self.client is None:
            return
        try:
            await self.client.api_call(method, json=kwargs)
        except (SlackApiError, SlackClientError, OSError) as exc:
            log.warning("slack actions: %s failed (%s); the action itself was done", method, type(exc).__name__)

    async def _reply(self, i: Interaction, text: str) -> None:
        if i.channel and i.message_ts:
            await self._slack("chat.postMessage", channel=i.channel, thread_ts=i.message_ts, text=text,
                              unfurl_links=False)

    async def _ephemeral(self, i: Interaction, text: str) -> None:
        if i.channel:
            await self._slack("chat.postEphemeral", channel=i.channel, user=i.user, text=text)

    async def _show_ack(self, i: Interaction, ack: Ack) -> None:
        """Edit the parent: who acknowledged and when, above the buttons, and no Acknowledge button."""
        if not (i.channel and i.message_ts and i.message and isinstance(i.message.get("blocks"), list)):
            return
        await self._slack("chat.update", channel=i.channel, ts=i.message_ts,
                          text=i.message.get("text") or "", blocks=acknowledged_blocks(i.message["blocks"], ack))


def acknowledged_blocks(blocks: list[dict[str, Any]], ack: Ack) -> list[dict[str, Any]]:
    """``blocks`` of a parent with a context line saying who acknowledged it, and no Acknowledge button.

    The receiver's next edit of the parent rebuilds its blocks, with the ack
    from the store (:func:`parent_actions`).
    """
    out: list[dict[str, Any]] = []
    for b in blocks:
        if b.get("block_id") == "tocsin_ack_note":
            continue
        if b.get("type") == "actions" and b.get("block_id") == BLOCK_ID:
            out.append(ack_context_block(ack))
            b = {**b, "elements": [e for e in b.get("elements", []) if e.get("action_id") != ACK]}
        out.append(b)
    return out


def ack_context_block(ack: Ack) -> dict[str, Any]:
    """A context block: ``:eyes: acknowledged by <@U…> at 08:20 UTC``."""
    return {"type": "context", "block_id": "tocsin_ack_note",
            "elements": [{"type": "mrkdwn", "text": f":eyes: {ack_text(ack)}"}]}
