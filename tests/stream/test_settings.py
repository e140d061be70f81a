"""Kafka security settings: validated at start, passed to Faust and kafka-python, secrets kept out."""

import faust
import pytest

from detectors.configfile import load_model_text
from detectors.errors import ConfigError
from stream.settings import Config, load_config


def test_sasl_scram_over_ssl(monkeypatch):
    monkeypatch.setenv("TOCSIN_KAFKA_SASL_PASSWORD", "s3cr3t-pw")
    cfg = load_model_text("kafka: {bootstrap_servers: 'k:9093', security_protocol: SASL_SSL, "
                          "sasl_mechanism: SCRAM-SHA-512, sasl_username: tocsin}", Config)
    creds = cfg.kafka.faust_credentials()
    assert isinstance(creds, faust.SASLCredentials) and creds.username == "tocsin"
    assert creds.ssl_context is not None
    opts = cfg.kafka.kafka_python_options()
    assert opts["sasl_mechanism"] == "SCRAM-SHA-512" and opts["sasl_plain_password"] == "s3cr3t-pw"  # noqa: S105
    assert "s3cr3t-pw" not in repr(cfg) and "s3cr3t-pw" not in cfg.model_dump_json()


def test_password_from_a_file(tmp_path, monkeypatch):
    monkeypatch.delenv("TOCSIN_KAFKA_SASL_PASSWORD", raising=False)
    pw = tmp_path / "pw"
    pw.write_text("from-file\n")
    cfg = load_model_text(f"kafka: {{security_protocol: SASL_PLAINTEXT, sasl_mechanism: PLAIN, "
                          f"sasl_username: u, sasl_password_file: {pw}}}", Config)
    assert cfg.kafka.kafka_python_options()["sasl_plain_password"] == "from-file"  # noqa: S105
    assert cfg.kafka.faust_credentials().ssl_context is None


def test_missing_password_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("TOCSIN_KAFKA_SASL_PASSWORD", raising=False)
    cfg = load_model_text("kafka: {security_protocol: SASL_PLAINTEXT, sasl_mechanism: PLAIN, sasl_username: u}", Config)
    with pytest.raises(ConfigError, match="TOCSIN_KAFKA_SASL_PASSWORD"):
        cfg.kafka.faust_credentials()


@pytest.mark.parametrize(
    ("yaml", "field"),
    [
        ("kafka: {security_protocol: SASL_SSL}\n", "needs sasl_mechanism"),
        ("kafka: {sasl_username: u}\n", "need security_protocol"),
        ("kafka: {security_protocol: SSL, ssl_certfile: c.pem}\n", "go together"),
        ("kafka: {security_protocol: KERBEROS}\n", "kafka.security_protocol"),
        ("kafka: {sasl_password: hunter2}\n", "unknown field"),
    ],
)
def test_bad_security_settings_fail_at_start(yaml, field):
    with pytest.raises(ConfigError, match=field):
        load_model_text(yaml, Config, "t.yaml")


def test_plaintext_default_and_env_override(monkeypatch):
    assert Config().kafka.faust_credentials() is None
    monkeypatch.setenv("TOCSIN_KAFKA_BOOTSTRAP_SERVERS", "b:9092")
    monkeypatch.setenv("TOCSIN_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    with pytest.raises(ConfigError, match="TOCSIN_KAFKA"):
        load_config(None)
