"""Alerting configuration (the ``alerting`` section of tocsin's YAML file).

Modelled on Alertmanager's: ``receivers``, a ``route`` tree (matchers,
``continue``, ``group_by``, ``group_wait``, ``group_interval``,
``repeat_interval``, ``mute_time_intervals``, ``active_time_intervals``, all
inherited by child routes), ``inhibit_rules`` and named ``time_intervals``.
Defaults are Alertmanager's (30s, 5m, 4h). tocsin's own addition:
``min_repeat_interval``, a floor on ``repeat_interval`` per severity (a
warning is reminded at most daily by default).

Secrets are never written in the file: a Slack token or webhook URL is named
by an environment variable (``token_env``, ``url_env``) or a file
(``token_file``, ``url_file``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from detectors.configfile import parse_duration

from .matchers import Matcher
from .model import CAUSES
from .timeinterval import TimeRange

__all__ = [
    "AlertingConfig",
    "AlertmanagerConfig",
    "InhibitRuleConfig",
    "MessageOptions",
    "ReceiverConfig",
    "RouteConfig",
    "SlackConfig",
    "SlackWebhookConfig",
    "TimeIntervalConfig",
    "WebhookConfig",
    "secret_problems",
    "DEFAULT_GROUP_WAIT",
    "DEFAULT_GROUP_INTERVAL",
    "DEFAULT_REPEAT_INTERVAL",
]

Duration = Annotated[float, BeforeValidator(parse_duration)]

#: Alertmanager's defaults for the root route.
DEFAULT_GROUP_WAIT = 30.0
DEFAULT_GROUP_INTERVAL = 300.0
DEFAULT_REPEAT_INTERVAL = 4 * 3600.0


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _refuse_clear_secret(v: Any) -> None:
    raise ValueError(
        "secrets are never written in the configuration file: name an environment "
        "variable (<field>_env) or a file (<field>_file) instead"
    )


#: A field that exists only to refuse a secret written in clear, with a clear message.
ClearSecret = Annotated[None, BeforeValidator(_refuse_clear_secret)]


_CAUSE_KEYS = CAUSES


def _check_causes(v: dict[str, str], where: str, extra: tuple[str, ...] = ()) -> dict[str, str]:
    for k in v:
        if k not in _CAUSE_KEYS + extra:
            raise ValueError(f"{where}: {k!r} is not a cause (one of: {', '.join(_CAUSE_KEYS + extra)})")
    return v


class MessageOptions(_Strict):
    """What a receiver that writes text shows: time zone, next steps, runbooks and links.

    URLs are templates: ``{service}``, ``{host}``, ``{disk}``, ``{cause}``,
    ``{fingerprint}``, ``{starts_at}`` and ``{starts_at_ms}`` are filled from the alert.
    """

    time_zone: str = "UTC"  # an IANA zone (Europe/Paris): every time shown in it, with its name
    runbook_url: str | None = None  # the default runbook
    runbook_urls: dict[str, str] = Field(default_factory=dict)  # per cause
    service_runbook_urls: dict[str, dict[str, str]] = Field(default_factory=dict)  # per service: cause (or "*")
    dashboard_url: str | None = None
    report_url: str | None = None  # where `tocsin report` output is served
    next_steps: dict[str, str] = Field(default_factory=dict)  # per cause, replaces the default line

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, v: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        if v.upper() in ("UTC", "Z"):
            return "UTC"
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{v!r} is not a time zone name (like Europe/Paris or UTC)") from None
        return v

    @field_validator("runbook_urls", "next_steps")
    @classmethod
    def _per_cause(cls, v: dict[str, str]) -> dict[str, str]:
        return _check_causes(v, "keys")

    @field_validator("service_runbook_urls")
    @classmethod
    def _per_service(cls, v: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        for service, urls in v.items():
            _check_causes(urls, f"service {service!r}", ("*",))
        return v

    def presentation(self) -> Any:
        """The :class:`alerts.notify.message.Presentation` of these options."""
        from .notify.message import Presentation

        return Presentation(self.time_zone, self.runbook_url, dict(self.runbook_urls),
                            {k: dict(v) for k, v in self.service_runbook_urls.items()},
                            self.dashboard_url, self.report_url, dict(self.next_steps))


class SlackConfig(MessageOptions):
    channel: str = Field(min_length=1)
    token: ClearSecret = None
    token_env: str | None = "SLACK_BOT_TOKEN"  # noqa: S105 - the name of a variable, not a secret
    token_file: str | None = None
    api_url: str | None = None  # for tests or Slack-compatible gateways
    timeout: Duration = 10.0
    reminder_broadcast: bool = False  # repeat_interval reminders also shown in the channel (reply_broadcast)
    actions: bool = False  # acknowledge / silence / wrong-cause buttons on the parent (needs slack_actions)


class ConsoleConfig(_Strict):
    color: bool | None = None


class WebhookConfig(_Strict):
    """A generic webhook: Alertmanager's webhook payload (version 4), one POST per group."""

    url: ClearSecret = None
    url_env: str | None = None
    url_file: str | None = None
    bearer_token: ClearSecret = None
    bearer_token_env: str | None = None
    bearer_token_file: str | None = None
    timeout: Duration = 10.0
    max_alerts: int = Field(0, ge=0)  # 0: all (Alertmanager's default)

    @model_validator(mode="after")
    def _has_url(self) -> WebhookConfig:
        if not (self.url_env or self.url_file):
            raise ValueError("a webhook needs url_env or url_file (the URL may carry a token)")
        return self


class SlackWebhookConfig(MessageOptions):
    """A Slack incoming webhook: one message per group notification, no threads."""

    url: ClearSecret = None
    url_env: str | None = None
    url_file: str | None = None
    timeout: Duration = 10.0

    @model_validator(mode="after")
    def _has_url(self) -> SlackWebhookConfig:
        if not (self.url_env or self.url_file):
            raise ValueError("a Slack incoming webhook needs url_env or url_file")
        return self


class AlertmanagerConfig(_Strict):
    """Pushes alerts to an Alertmanager's ``/api/v2/alerts`` (its base URL is not a secret)."""

    url: str = Field(pattern=r"^https?://[^\s]+$")
    bearer_token: ClearSecret = None
    bearer_token_env: str | None = None
    bearer_token_file: str | None = None
    timeout: Duration = 10.0
    generator_url: str | None = None


_KINDS = ("console", "slack", "webhook", "slack_webhook", "alertmanager")


class ReceiverConfig(_Strict):
    name: str = Field(min_length=1)
    send_resolved: bool = True
    #: Receivers that get this receiver's notifications while it is failed (the console always does).
    fallback: list[str] = Field(default_factory=list)
    console: ConsoleConfig | None = None
    slack: SlackConfig | None = None
    webhook: WebhookConfig | None = None
    slack_webhook: SlackWebhookConfig | None = None
    alertmanager: AlertmanagerConfig | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> ReceiverConfig:
        kinds = [k for k in _KINDS if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError(f"a receiver needs exactly one of: {', '.join(_KINDS)}")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in _KINDS if getattr(self, k) is not None)


def _parse_matchers(v: Any) -> Any:
    if isinstance(v, list):
        return [Matcher.parse(x) if isinstance(x, str) else x for x in v]
    return v


Matchers = Annotated[list[Matcher], BeforeValidator(_parse_matchers)]


class RouteConfig(_Strict):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    receiver: str | None = None
    matchers: Matchers = Field(default_factory=list)
    continue_: bool = Field(False, alias="continue")
    group_by: list[str] | None = None
    group_wait: Duration | None = None
    group_interval: Duration | None = None
    repeat_interval: Duration | None = None
    mute_time_intervals: list[str] = Field(default_factory=list)
    active_time_intervals: list[str] = Field(default_factory=list)
    routes: list[RouteConfig] = Field(default_factory=list)

    @field_validator("group_by")
    @classmethod
    def _group_by(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return v
        if "..." in v and len(v) > 1:
            raise ValueError("'...' groups by all labels and cannot be combined with label names")
        if len(set(v)) != len(v):
            raise ValueError("group_by names a label twice")
        for name in v:
            if name != "..." and not name.replace("_", "a").isalnum():
                raise ValueError(f"{name!r} is not a label name")
        return v

    @field_validator("group_interval")
    @classmethod
    def _positive(cls, v: float | None) -> float | None:
        if v is not None and v <= 0:
            raise ValueError("group_interval must be more than 0")
        return v


class InhibitRuleConfig(_Strict):
    """While an alert matching ``source_matchers`` fires, alerts matching
    ``target_matchers`` with the same values of the ``equal`` labels are muted."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    source_matchers: Matchers = Field(min_length=1)
    target_matchers: Matchers = Field(min_length=1)
    equal: list[str] = Field(default_factory=list)


class TimeIntervalConfig(_Strict):
    """A named set of time ranges (Alertmanager's ``time_intervals``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    name: str = Field(min_length=1)
    time_intervals: list[Annotated[TimeRange, BeforeValidator(TimeRange.parse)]] = Field(default_factory=list)


SEVERITIES = ("warning", "critical")


class AlertingConfig(_Strict):
    pending_for: Duration = 0.0
    keep_firing_for: Duration = 300.0
    #: Per severity, the shortest time between two reminders of a group whose most severe
    #: firing alert has that severity: a floor on the routes' ``repeat_interval`` (the larger
    #: wins). A failing drive without user impact is a warning for days; it is reminded daily.
    min_repeat_interval: dict[str, Duration] = Field(default_factory=lambda: {"warning": 86400.0})
    receivers: list[ReceiverConfig] = Field(default_factory=lambda: [ReceiverConfig(name="console", console=ConsoleConfig())])
    route: RouteConfig = RouteConfig(receiver="console")
    inhibit_rules: list[InhibitRuleConfig] = Field(default_factory=list)
    time_intervals: list[TimeIntervalConfig] = Field(default_factory=list)

    @field_validator("receivers")
    @classmethod
    def _unique(cls, v: list[ReceiverConfig]) -> list[ReceiverConfig]:
        names = [r.name for r in v]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"receiver names must be unique: {', '.join(sorted(dup))}")
        return v

    @field_validator("min_repeat_interval")
    @classmethod
    def _severities(cls, v: dict[str, float]) -> dict[str, float]:
        for k in v:
            if k not in SEVERITIES:
                raise ValueError(f"{k!r} is not a severity (one of: {', '.join(SEVERITIES)})")
        return v

    @field_validator("time_intervals")
    @classmethod
    def _unique_intervals(cls, v: list[TimeIntervalConfig]) -> list[TimeIntervalConfig]:
        names = [t.name for t in v]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"time interval names must be unique: {', '.join(sorted(dup))}")
        return v

    @model_validator(mode="after")
    def _known_receivers(self) -> AlertingConfig:
        names = {r.name for r in self.receivers}
        intervals = {t.name for t in self.time_intervals}

        def walk(r: RouteConfig, path: str) -> None:
            if r.receiver is not None and r.receiver not in names:
                raise ValueError(f"{path}.receiver: no receiver named {r.receiver!r} (have: {', '.join(sorted(names))})")
            for key in ("mute_time_intervals", "active_time_intervals"):
                for name in getattr(r, key):
                    if name not in intervals:
                        have = ", ".join(sorted(intervals)) or "none"
                        raise ValueError(f"{path}.{key}: no time interval named {name!r} (have: {have})")
            for i, c in enumerate(r.routes):
                walk(c, f"{path}.routes.{i}")

        if self.route.receiver is None:
            raise ValueError("route.receiver: the root route needs a receiver")
        if self.route.matchers:
            raise ValueError("route.matchers: the root route matches every alert and takes no matchers")
        walk(self.route, "route")
        return self

    @model_validator(mode="after")
    def _known_fallbacks(self) -> AlertingConfig:
        names = {r.name for r in self.receivers}
        for i, r in enumerate(self.receivers):
            for f in r.fallback:
                if f == r.name:
                    raise ValueError(f"receivers.{i}.fallback: receiver {r.name!r} cannot be its own fallback")
                if f not in names:
                    raise ValueError(f"receivers.{i}.fallback: no receiver named {f!r} (have: {', '.join(sorted(names))})")
        return self

    def intervals(self) -> dict[str, list[TimeRange]]:
        """Time intervals by name."""
        return {t.name: list(t.time_intervals) for t in self.time_intervals}


def secret_problems(cfg: AlertingConfig, environ: Mapping[str, str] | None = None) -> list[str]:
    """What is wrong with the receivers' secrets, one line each naming the receiver (empty: all present).

    Every ``<name>_env`` / ``<name>_file`` pair of a receiver is checked the
    way the receiver will read it at start: the file first (it must be
    readable and not empty), else the environment variable (set, not empty).
    A pair with neither set is an optional secret left out.
    """
    env = os.environ if environ is None else environ
    problems: list[str] = []
    for rc in cfg.receivers:
        sub = getattr(rc, rc.kind)
        for field in type(sub).model_fields:
            if not field.endswith("_env"):
                continue
            what = field[: -len("_env")]
            var, path = getattr(sub, field), getattr(sub, f"{what}_file", None)
            where = f"receiver {rc.name!r} ({rc.kind})"
            if path:
                try:
                    if not Path(path).read_text(encoding="utf-8").strip():
                        problems.append(f"{where}: {what}_file {path} is empty")
                except OSError as exc:
                    problems.append(f"{where}: {what}_file {path} cannot be read: {exc.strerror}")
            elif var and not env.get(var, "").strip():
                problems.append(f"{where}: {what}: the environment variable {var} is not set "
                                f"(set it, or {what}_file)")
    return problems
