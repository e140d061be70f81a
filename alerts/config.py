"""Alerting configuration (the ``alerting`` section of tocsin's YAML file).

Secrets are never written in the file: a Slack token or webhook URL is named
by an environment variable (``token_env``) or a file (``token_file``).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from detectors.configfile import parse_duration

from .matchers import Matcher

__all__ = ["AlertingConfig", "ReceiverConfig", "RouteConfig", "SlackConfig"]

Duration = Annotated[float, BeforeValidator(parse_duration)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SlackConfig(_Strict):
    channel: str = Field(min_length=1)
    token_env: str | None = "SLACK_BOT_TOKEN"  # noqa: S105 - the name of a variable, not a secret
    token_file: str | None = None
    api_url: str | None = None  # for tests or Slack-compatible gateways
    runbook_url: str | None = None
    dashboard_url: str | None = None
    timeout: Duration = 10.0


class ConsoleConfig(_Strict):
    color: bool | None = None


class ReceiverConfig(_Strict):
    name: str = Field(min_length=1)
    console: ConsoleConfig | None = None
    slack: SlackConfig | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> ReceiverConfig:
        kinds = [k for k in ("console", "slack") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError("a receiver needs exactly one of: console, slack")
        return self


def _parse_matchers(v: Any) -> Any:
    if isinstance(v, list):
        return [Matcher.parse(x) if isinstance(x, str) else x for x in v]
    return v


class RouteConfig(_Strict):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    receiver: str | None = None
    matchers: Annotated[list[Matcher], BeforeValidator(_parse_matchers)] = Field(default_factory=list)
    continue_: bool = Field(False, alias="continue")
    group_by: list[str] | None = None
    group_wait: Duration | None = None
    group_interval: Duration | None = None
    repeat_interval: Duration | None = None
    routes: list[RouteConfig] = Field(default_factory=list)


class AlertingConfig(_Strict):
    pending_for: Duration = 0.0
    keep_firing_for: Duration = 300.0
    receivers: list[ReceiverConfig] = Field(default_factory=lambda: [ReceiverConfig(name="console", console=ConsoleConfig())])
    route: RouteConfig = RouteConfig(receiver="console")

    @field_validator("receivers")
    @classmethod
    def _unique(cls, v: list[ReceiverConfig]) -> list[ReceiverConfig]:
        names = [r.name for r in v]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"receiver names must be unique: {', '.join(sorted(dup))}")
        return v

    @model_validator(mode="after")
    def _known_receivers(self) -> AlertingConfig:
        names = {r.name for r in self.receivers}

        def walk(r: RouteConfig, path: str) -> None:
            if r.receiver is not None and r.receiver not in names:
                raise ValueError(f"{path}.receiver: no receiver named {r.receiver!r} (have: {', '.join(sorted(names))})")
            for i, c in enumerate(r.routes):
                walk(c, f"{path}.routes.{i}")

        if self.route.receiver is None:
            raise ValueError("route.receiver: the root route needs a receiver")
        walk(self.route, "route")
        return self
