"""Receivers built from the ``alerting.receivers`` configuration."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from alerts.config import AlertingConfig, ReceiverConfig
from alerts.errors import ConfigError
from alerts.secret import Secret

from .base import Receiver
from .console import ConsoleReceiver

__all__ = ["build_receivers"]


def _secret(rc: ReceiverConfig, env: str | None, file: str | None, what: str = "token") -> Secret:
    if file:
        try:
            return Secret(Path(file).read_text(encoding="utf-8").strip())
        except OSError as exc:
            raise ConfigError(f"receiver {rc.name}: cannot read {what}_file {file}: {exc.strerror}") from None
    if env and os.environ.get(env):
        return Secret(os.environ[env])
    raise ConfigError(f"receiver {rc.name}: no {what}: set the environment variable {env} or {what}_file")


def _optional_secret(rc: ReceiverConfig, env: str | None, file: str | None, what: str) -> Secret | None:
    return _secret(rc, env, file, what) if (env or file) else None


def build_receivers(cfg: AlertingConfig) -> dict[str, Receiver]:
    out: dict[str, Receiver] = {}
    for rc in cfg.receivers:
        if rc.console is not None:
            color: bool | Literal["auto"] = "auto" if rc.console.color is None else rc.console.color
            out[rc.name] = ConsoleReceiver(color=color, name=rc.name)
        elif rc.slack is not None:
            from .slack import SlackReceiver

            s = rc.slack
            out[rc.name] = SlackReceiver(
                _secret(rc, s.token_env, s.token_file), s.channel, base_url=s.api_url, timeout=s.timeout,
                name=rc.name, reminder_broadcast=s.reminder_broadcast, presentation=s.presentation(),
                actions=s.actions,
            )
        elif rc.webhook is not None:
            from .webhook import WebhookReceiver

            w = rc.webhook
            out[rc.name] = WebhookReceiver(
                _secret(rc, w.url_env, w.url_file, "url"), timeout=w.timeout,
                bearer_token=_optional_secret(rc, w.bearer_token_env, w.bearer_token_file, "bearer_token"),
                max_alerts=w.max_alerts, name=rc.name,
            )
        elif rc.slack_webhook is not None:
            from .slack_webhook import SlackWebhookReceiver

            sw = rc.slack_webhook
            out[rc.name] = SlackWebhookReceiver(
                _secret(rc, sw.url_env, sw.url_file, "url"), timeout=sw.timeout, name=rc.name,
                presentation=sw.presentation(),
            )
        elif rc.alertmanager is not None:
            from .alertmanager import AlertmanagerReceiver

            am = rc.alertmanager
            out[rc.name] = AlertmanagerReceiver(
                am.url, timeout=am.timeout, generator_url=am.generator_url, name=rc.name,
                bearer_token=_optional_secret(rc, am.bearer_token_env, am.bearer_token_file, "bearer_token"),
            )
        out[rc.name].send_resolved = rc.send_resolved
    return out
