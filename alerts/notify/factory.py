"""Receivers built from the ``alerting.receivers`` configuration."""

from __future__ import annotations

import os
from pathlib import Path

from alerts.config import AlertingConfig, ReceiverConfig
from alerts.errors import ConfigError
from alerts.secret import Secret

from .base import Receiver
from .console import ConsoleReceiver

__all__ = ["build_receivers"]


def _secret(rc: ReceiverConfig, env: str | None, file: str | None) -> Secret:
    if file:
        try:
            return Secret(Path(file).read_text(encoding="utf-8").strip())
        except OSError as exc:
            raise ConfigError(f"receiver {rc.name}: cannot read token_file {file}: {exc.strerror}") from None
    if env and os.environ.get(env):
        return Secret(os.environ[env])
    raise ConfigError(f"receiver {rc.name}: no token: set the environment variable {env} or token_file")


def build_receivers(cfg: AlertingConfig) -> dict[str, Receiver]:
    out: dict[str, Receiver] = {}
    for rc in cfg.receivers:
        if rc.console is not None:
            color = "auto" if rc.console.color is None else rc.console.color
            out[rc.name] = ConsoleReceiver(color=color, name=rc.name)
        elif rc.slack is not None:
            from .slack import SlackReceiver

            s = rc.slack
            out[rc.name] = SlackReceiver(
                _secret(rc, s.token_env, s.token_file), s.channel, base_url=s.api_url, timeout=s.timeout,
                runbook_url=s.runbook_url, dashboard_url=s.dashboard_url, name=rc.name,
            )
    return out
