"""The ``slack_actions`` settings: secrets from a file or a variable only, and what check-config reports."""

from __future__ import annotations

import pytest

from detectors.configfile import load_model_text
from detectors.errors import ConfigError
from stream.settings import Config, config_problems

ENABLED = """
slack_actions:
  enabled: true
  socket_mode: true
  allowed_users: [U024BE7LH]
"""


@pytest.fixture
def clean_env(monkeypatch):
    for var in ("SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN", "SLACK_BOT_TOKEN", "TOCSIN_WEB_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


def test_disabled_by_default_and_no_problems(clean_env):
    cfg = Config()
    assert not cfg.slack_actions.enabled and config_problems(cfg) == []


def test_every_missing_secret_is_named(clean_env):
    cfg = load_model_text(ENABLED, Config)
    problems = config_problems(cfg)
    assert problems == [
        "slack_actions.signing_secret: the environment variable SLACK_SIGNING_SECRET is not set "
        "(set it, or slack_actions.signing_secret_file)",
        "slack_actions.app_token: the environment variable SLACK_APP_TOKEN is not set "
        "(set it, or slack_actions.app_token_file)",
        "slack_actions.token: the environment variable SLACK_BOT_TOKEN is not set (set it, or slack_actions.token_file)",
    ]
    for var in ("SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN", "SLACK_BOT_TOKEN"):
        clean_env.setenv(var, "x-secret")
    assert config_problems(cfg) == []
    assert repr(cfg.slack_actions.signing_secret_value()) == "**********"


def test_secrets_from_files_and_an_unreadable_one(clean_env, tmp_path):
    secret = tmp_path / "signing"
    secret.write_text("8f742231b10e8888abcd99yyyzzz85a5\n")
    cfg = load_model_text(f"""
slack_actions:
  enabled: true
  signing_secret_file: {secret}
  token_file: {tmp_path / "missing"}
  allowed_user_groups: [S0ONCALL]
""", Config)
    assert cfg.slack_actions.signing_secret_value().get() == "8f742231b10e8888abcd99yyyzzz85a5"
    [problem] = config_problems(cfg)
    assert problem.startswith(f"slack_actions.token_file: cannot read {tmp_path / 'missing'}")
    with pytest.raises(ConfigError, match="token_file"):
        cfg.slack_actions.bot_token()


@pytest.mark.parametrize("text, error", [
    ("slack_actions: {signing_secret: abc}", "never written in the configuration file"),
    ("slack_actions: {app_token: xapp-1}", "never written in the configuration file"),
    ("slack_actions: {enabled: true, http: false}", "enable http"),
    ("slack_actions: {max_request_age: 1h}", "less than or equal to 300"),
])
def test_bad_settings_are_refused(text, error):
    with pytest.raises(ConfigError, match=error):
        load_model_text(text, Config)


def test_nobody_allowed_is_a_problem(clean_env):
    for var in ("SLACK_SIGNING_SECRET", "SLACK_BOT_TOKEN"):
        clean_env.setenv(var, "x")
    cfg = load_model_text("slack_actions: {enabled: true}", Config)
    assert config_problems(cfg) == [
        "slack_actions: allowed_users and allowed_user_groups are both empty, nobody could act"]
