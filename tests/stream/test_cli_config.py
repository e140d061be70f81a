"""``tocsin check-config`` checks the secrets the worker will read; ``tocsin --version``; bare ``tocsin``."""

from __future__ import annotations

import os

import pytest

from alerts.config import secret_problems
from alerts.notify.factory import build_receivers
from detectors.errors import ConfigError
from stream.cli import main
from stream.settings import load_config

RECEIVERS = """
alerting:
  receivers:
    - name: console
      console: {{}}
    - name: oncall-slack
      slack: {{channel: "#oncall", token_env: TOCSIN_TEST_SLACK_TOKEN}}
    - name: ops-hook
      webhook: {{url_file: {url_file}, bearer_token_env: TOCSIN_TEST_HOOK_TOKEN}}
  route: {{receiver: console}}
"""


@pytest.fixture
def config(tmp_path, monkeypatch):
    for var in ("TOCSIN_TEST_SLACK_TOKEN", "TOCSIN_TEST_HOOK_TOKEN", "TOCSIN_WEB_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    url = tmp_path / "hook-url"
    url.write_text("https://hooks.example/T0\n")
    path = tmp_path / "tocsin.yaml"
    path.write_text(RECEIVERS.format(url_file=url))
    return path, url


def _check(path, capsys) -> tuple[int, str, str]:
    code = main(["check-config", str(path)])
    out, err = capsys.readouterr()
    return code, out, err


def test_check_config_names_the_receiver_whose_token_variable_is_unset(config, capsys, monkeypatch):
    path, _ = config
    monkeypatch.setenv("TOCSIN_TEST_HOOK_TOKEN", "h")
    code, out, err = _check(path, capsys)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith(f"tocsin: error: {path}: ")
    assert "receiver 'oncall-slack' (slack): token: the environment variable TOCSIN_TEST_SLACK_TOKEN is not set" in err
    assert "ops-hook" not in err
    # The worker would die on the same receiver when it builds them.
    with pytest.raises(ConfigError, match="oncall-slack"):
        build_receivers(load_config(path).alerting)
    monkeypatch.setenv("TOCSIN_TEST_SLACK_TOKEN", "xoxb-1")
    code, out, err = _check(path, capsys)
    assert code == 0 and "OK" in out and "writes off (no token)" in out
    build_receivers(load_config(path).alerting)


def test_check_config_names_unreadable_or_empty_secret_files_and_every_receiver_at_fault(config, capsys):
    path, url = config
    url.unlink()
    code, _, err = _check(path, capsys)
    assert code == 2
    assert f"receiver 'ops-hook' (webhook): url_file {url} cannot be read: No such file or directory" in err
    assert "receiver 'oncall-slack'" in err  # both problems, on one line
    url.write_text("\n")
    assert "url_file" in _check(path, capsys)[2] and "is empty" in _check(path, capsys)[2]
    if os.geteuid() != 0:  # root reads any file
        url.write_text("https://x")
        url.chmod(0)
        assert "Permission denied" in _check(path, capsys)[2]


def test_an_optional_secret_left_out_is_not_a_problem(config, monkeypatch):
    path, _ = config
    monkeypatch.setenv("TOCSIN_TEST_SLACK_TOKEN", "xoxb-1")
    cfg = load_config(path).alerting
    assert secret_problems(cfg, {"TOCSIN_TEST_SLACK_TOKEN": "x"}) == [
        "receiver 'ops-hook' (webhook): bearer_token: the environment variable TOCSIN_TEST_HOOK_TOKEN is not set "
        "(set it, or bearer_token_file)"]
    assert secret_problems(cfg, {"TOCSIN_TEST_SLACK_TOKEN": "x", "TOCSIN_TEST_HOOK_TOKEN": "y"}) == []
    assert secret_problems(cfg, {"TOCSIN_TEST_SLACK_TOKEN": " ", "TOCSIN_TEST_HOOK_TOKEN": "y"})  # blank is unset


def test_check_config_checks_the_web_token_file_and_says_whether_writes_are_on(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("TOCSIN_WEB_TOKEN", raising=False)
    path = tmp_path / "web.yaml"
    path.write_text(f"web: {{token_file: {tmp_path / 'nope'}}}\n")
    code, _, err = _check(path, capsys)
    assert code == 2 and "web.token_file: cannot read" in err
    (tmp_path / "nope").write_text("s3cret\n")
    code, out, _ = _check(path, capsys)
    assert code == 0 and "web API on 127.0.0.1:6066, writes on (bearer token)" in out and "s3cret" not in out


def test_check_config_checks_the_kafka_sasl_password(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("TOCSIN_KAFKA_SASL_PASSWORD", raising=False)
    path = tmp_path / "sasl.yaml"
    path.write_text("kafka: {bootstrap_servers: 'k:9092', security_protocol: SASL_PLAINTEXT, "
                    "sasl_mechanism: PLAIN, sasl_username: tocsin}\n")
    code, _, err = _check(path, capsys)
    assert code == 2 and "SASL needs a password" in err


def test_version_and_usage(capsys):
    assert main(["--version"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("tocsin ") and out.split()[1][0].isdigit()
    assert main([]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: tocsin") and "check-config" in out and "worker" in out
    assert main(["-h"]) == 0
    assert main(["no-such-command"]) == 2


def test_the_worker_refuses_a_missing_secret_before_starting_a_broker(tmp_path, capsys, monkeypatch):
    from stream.cli import main

    monkeypatch.delenv("TOCSIN_TEST_SLACK_TOKEN", raising=False)
    cfg = tmp_path / "tocsin.yaml"
    cfg.write_text("alerting:\n  receivers:\n    - name: oncall\n      slack: {channel: '#oncall', token_env: TOCSIN_TEST_SLACK_TOKEN}\n"
                   "  route: {receiver: oncall}\n")
    assert main(["worker", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "oncall" in err and "TOCSIN_TEST_SLACK_TOKEN" in err and "embedded" not in err
