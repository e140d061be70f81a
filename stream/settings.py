"""tocsin's one settings model: a YAML file, then environment overrides.

The YAML file (``--config`` or ``TOCSIN_CONFIG``) has the sections
``kafka``, ``topics``, ``web``, ``metrics``, ``detectors`` and ``alerting``;
every field has a default, so no file at all is a valid configuration.
Environment variables ``TOCSIN_KAFKA_*`` override the ``kafka`` section,
``TOCSIN_WEB_HOST``/``PORT`` and ``TOCSIN_METRICS_HOST``/``PORT`` where the
servers listen (for containers).
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from alerts.config import AlertingConfig, ClearSecret, Duration
from alerts.secret import Secret
from alerts.silence import SilenceLimits
from detectors.config import DetectorsConfig
from detectors.configfile import load_model_file
from detectors.errors import ConfigError

__all__ = ["Config", "KafkaConfig", "SlackActionsConfig", "TopicsConfig", "WebConfig", "config_problems", "load_config"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KafkaConfig(_Strict):
    bootstrap_servers: str | None = None  # None: start the embedded broker
    client_id: str = "tocsin"
    group_id: str = "tocsin"
    partitions: int = Field(4, ge=1)
    replication_factor: int = Field(1, ge=1)
    # Security, passed to Faust (aiokafka) and to kafka-python alike.
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password_env: str | None = "TOCSIN_KAFKA_SASL_PASSWORD"  # noqa: S105 - a variable name
    sasl_password_file: str | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> KafkaConfig:
        sasl = self.security_protocol.startswith("SASL")
        if sasl and not (self.sasl_mechanism and self.sasl_username):
            raise ValueError(f"security_protocol {self.security_protocol} needs sasl_mechanism and sasl_username")
        if not sasl and (self.sasl_mechanism or self.sasl_username):
            raise ValueError("sasl_* settings need security_protocol SASL_PLAINTEXT or SASL_SSL")
        if bool(self.ssl_certfile) != bool(self.ssl_keyfile):
            raise ValueError("ssl_certfile and ssl_keyfile go together (client certificate and its key)")
        return self

    def sasl_password(self) -> Secret | None:
        """The SASL password, from the file or the environment variable (never from the YAML)."""
        if self.sasl_password_file:
            try:
                return Secret(Path(self.sasl_password_file).read_text(encoding="utf-8").strip())
            except OSError as exc:
                raise ConfigError(f"kafka.sasl_password_file: cannot read {self.sasl_password_file}: {exc.strerror}") from None
        if self.sasl_password_env and os.environ.get(self.sasl_password_env):
            return Secret(os.environ[self.sasl_password_env])
        return None

    def _ssl_context(self) -> ssl.SSLContext | None:
        if not self.security_protocol.endswith("SSL"):
            return None
        ctx = ssl.create_default_context(cafile=self.ssl_cafile)
        if self.ssl_certfile:
            ctx.load_cert_chain(self.ssl_certfile, self.ssl_keyfile)
        return ctx

    def faust_credentials(self):
        """``broker_credentials`` for Faust, or None for PLAINTEXT."""
        import faust

        if self.security_protocol == "PLAINTEXT":
            return None
        if self.security_protocol == "SSL":
            return faust.SSLCredentials(self._ssl_context())
        pw = self.sasl_password()
        if pw is None:
            raise ConfigError(f"kafka: SASL needs a password: set {self.sasl_password_env} or kafka.sasl_password_file")
        return faust.SASLCredentials(username=self.sasl_username, password=pw.get(),
                                     ssl_context=self._ssl_context(), mechanism=self.sasl_mechanism)

    def aiokafka_options(self) -> dict:
        """Options for a plain aiokafka client (the silences reader)."""
        opts: dict = {"security_protocol": self.security_protocol}
        ctx = self._ssl_context()
        if ctx is not None:
            opts["ssl_context"] = ctx
        if self.security_protocol.startswith("SASL"):
            pw = self.sasl_password()
            if pw is None:
                raise ConfigError(f"kafka: SASL needs a password: set {self.sasl_password_env} or kafka.sasl_password_file")
            opts.update(sasl_mechanism=self.sasl_mechanism, sasl_plain_username=self.sasl_username,
                        sasl_plain_password=pw.get())
        return opts

    def kafka_python_options(self) -> dict:
        """Options for kafka-python clients (simulator, silence CLI)."""
        opts: dict = {"security_protocol": self.security_protocol}
        if self.security_protocol.endswith("SSL"):
            opts.update(ssl_cafile=self.ssl_cafile, ssl_certfile=self.ssl_certfile, ssl_keyfile=self.ssl_keyfile)
        if self.security_protocol.startswith("SASL"):
            pw = self.sasl_password()
            if pw is None:
                raise ConfigError(f"kafka: SASL needs a password: set {self.sasl_password_env} or kafka.sasl_password_file")
            opts.update(sasl_mechanism=self.sasl_mechanism, sasl_plain_username=self.sasl_username,
                        sasl_plain_password=pw.get())
        return opts


class TopicsConfig(_Strict):
    requests: str = "requests"
    disk_health: str = "disk-health"
    anomalies: str = "anomalies"
    alerts: str = "alerts"
    dead_letter: str = "dead-letter"
    silences: str = "silences"
    labels: str = "labels"  # what people said an alert's cause was (tocsin.label.v1, keyed by fingerprint)
    acks: str = "acks"  # acknowledgements from Slack (tocsin.ack.v1, keyed by group key)


class WebConfig(_Strict):
    """The worker's HTTP API (silences): safe by default.

    Listens on 127.0.0.1 unless ``host`` says otherwise. Writes (creating or
    expiring silences) need ``Authorization: Bearer <token>``, the token read
    from the file ``token_file`` or the variable ``token_env`` (never from
    this file); with neither set, writes are refused. Reads are open unless
    ``auth_reads``. Bodies over ``max_body_bytes`` answer 413, JSON nested
    deeper than ``max_json_depth`` 400; silences are bounded by
    ``max_silence_duration``, ``max_silence_start_ahead`` and ``max_silences``.
    """

    host: str = "127.0.0.1"
    port: int = Field(6066, ge=1, le=65535)
    token: ClearSecret = None
    token_env: str | None = "TOCSIN_WEB_TOKEN"  # noqa: S105 - the name of a variable, not a secret
    token_file: str | None = None
    auth_reads: bool = False
    max_body_bytes: int = Field(64 * 1024, ge=1024, le=16 * 1024 * 1024)
    max_json_depth: int = Field(16, ge=2, le=256)
    max_silence_duration: Duration = Field(30 * 86400.0, gt=0)
    max_silence_start_ahead: Duration = Field(30 * 86400.0, ge=0)
    max_silences: int = Field(10_000, ge=1)

    def silence_limits(self) -> SilenceLimits:
        """The bounds of a new silence, for the HTTP API and ``tocsin silence add`` alike."""
        return SilenceLimits(max_duration=self.max_silence_duration, max_start_ahead=self.max_silence_start_ahead,
                             max_silences=self.max_silences)

    def write_token(self) -> Secret | None:
        """The bearer token of writes, from ``token_file`` or ``token_env``; None: writes are disabled.

        A ``token_file`` that cannot be read, or is empty, is a ConfigError
        (not a quiet fall back to no token).
        """
        return _read_secret(self.token_file, self.token_env, "web.token")


def _read_secret(path: str | None, var: str | None, where: str) -> Secret | None:
    """A secret from the file ``path`` (read first; unreadable or empty is a ConfigError) or the variable ``var``."""
    if path:
        try:
            value = Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"{where}_file: cannot read {path}: {exc.strerror}") from None
        if not value:
            raise ConfigError(f"{where}_file: {path} is empty")
        return Secret(value)
    if var and os.environ.get(var, "").strip():
        return Secret(os.environ[var].strip())
    return None


class SlackActionsConfig(_Strict):
    """Acting on alerts from Slack: acknowledge, silence, correct the cause (``slack_actions``).

    Two ways in: ``http`` serves Slack's request URL at ``POST /slack/actions``
    on the worker's web server, every request verified with the signing
    secret; ``socket_mode`` opens an outbound websocket to Slack with the app
    token (``xapp-...``), for workers Slack cannot reach. Secrets come from
    a file or a variable, never from this file. Only ``allowed_users``
    (Slack user ids) and members of ``allowed_user_groups`` (ids ``S...``,
    read with ``usergroups.users.list``) may act; both empty: nobody.
    ``token_env`` / ``token_file``: the bot token of the answers in Slack
    (the edited parent, thread replies); ``api_url`` for tests.
    """

    enabled: bool = False
    http: bool = True
    socket_mode: bool = False
    signing_secret: ClearSecret = None
    signing_secret_env: str | None = "SLACK_SIGNING_SECRET"  # noqa: S105 - a variable name
    signing_secret_file: str | None = None
    app_token: ClearSecret = None
    app_token_env: str | None = "SLACK_APP_TOKEN"  # noqa: S105 - a variable name
    app_token_file: str | None = None
    token: ClearSecret = None
    token_env: str | None = "SLACK_BOT_TOKEN"  # noqa: S105 - a variable name
    token_file: str | None = None
    api_url: str | None = None
    allowed_users: list[str] = Field(default_factory=list)
    allowed_user_groups: list[str] = Field(default_factory=list)
    max_request_age: Duration = Field(300.0, ge=5.0, le=300.0)  # Slack's own bound is 5 minutes
    user_group_ttl: Duration = Field(300.0, gt=0)

    @model_validator(mode="after")
    def _a_way_in(self) -> SlackActionsConfig:
        if self.enabled and not (self.http or self.socket_mode):
            raise ValueError("slack_actions: enable http (request URL) or socket_mode, or both")
        return self

    def signing_secret_value(self) -> Secret | None:
        return _read_secret(self.signing_secret_file, self.signing_secret_env, "slack_actions.signing_secret")

    def app_token_value(self) -> Secret | None:
        return _read_secret(self.app_token_file, self.app_token_env, "slack_actions.app_token")

    def bot_token(self) -> Secret | None:
        return _read_secret(self.token_file, self.token_env, "slack_actions.token")

    def problems(self) -> list[str]:
        """What the worker would miss at start, one line each (empty when disabled or complete)."""
        if not self.enabled:
            return []
        out = []
        needs = [("signing_secret", self.signing_secret_value, self.signing_secret_env)] if self.http else []
        if self.socket_mode:
            needs.append(("app_token", self.app_token_value, self.app_token_env))
        needs.append(("token", self.bot_token, self.token_env))
        for name, read, var in needs:
            try:
                if read() is None:
                    out.append(f"slack_actions.{name}: the environment variable {var} is not set "
                               f"(set it, or slack_actions.{name}_file)")
            except ConfigError as exc:
                out.append(str(exc))
        if not (self.allowed_users or self.allowed_user_groups):
            out.append("slack_actions: allowed_users and allowed_user_groups are both empty, nobody could act")
        return out


class MetricsConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(9464, ge=0, le=65535)


class Config(_Strict):
    kafka: KafkaConfig = KafkaConfig()
    topics: TopicsConfig = TopicsConfig()
    web: WebConfig = WebConfig()
    metrics: MetricsConfig = MetricsConfig()
    detectors: DetectorsConfig = DetectorsConfig()
    alerting: AlertingConfig = AlertingConfig()
    slack_actions: SlackActionsConfig = SlackActionsConfig()


class _KafkaEnv(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TOCSIN_KAFKA_", extra="ignore")

    bootstrap_servers: str | None = None
    group_id: str | None = None
    client_id: str | None = None
    security_protocol: str | None = None
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    ssl_cafile: str | None = None


class _WebEnv(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TOCSIN_WEB_", extra="ignore")

    host: str | None = None
    port: int | None = None


class _MetricsEnv(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TOCSIN_METRICS_", extra="ignore")

    host: str | None = None
    port: int | None = None


def config_problems(cfg: Config) -> list[str]:
    """Secrets the worker reads at start and cannot find, one line each (empty: none).

    Every receiver's (naming it), the web API token file, the Kafka SASL
    password. ``tocsin check-config`` reports them; a worker can check them
    before it starts a broker or creates topics.
    """
    from alerts.config import secret_problems

    problems = secret_problems(cfg.alerting) + cfg.slack_actions.problems()
    for check in (cfg.web.write_token, cfg.kafka.faust_credentials):
        try:
            check()
        except ConfigError as exc:
            problems.append(str(exc))
    return problems


def load_config(path: str | Path | None = None) -> Config:
    """Load the file (if any), then apply environment overrides; raise ConfigError on bad input."""
    path = path or os.environ.get("TOCSIN_CONFIG")
    cfg = load_model_file(path, Config) if path else Config()
    env = _KafkaEnv().model_dump(exclude_none=True)
    if env:
        try:
            cfg = cfg.model_copy(update={"kafka": KafkaConfig.model_validate({**cfg.kafka.model_dump(), **env})})
        except ValueError as exc:
            raise ConfigError(f"TOCSIN_KAFKA_* environment: {exc}") from None
    wenv = _WebEnv().model_dump(exclude_none=True)
    if wenv:
        try:
            cfg = cfg.model_copy(update={"web": WebConfig.model_validate({**cfg.web.model_dump(), **wenv})})
        except ValueError as exc:
            raise ConfigError(f"TOCSIN_WEB_* environment: {exc}") from None
    menv = _MetricsEnv().model_dump(exclude_none=True)
    if menv:
        cfg = cfg.model_copy(update={"metrics": cfg.metrics.model_copy(update=menv)})
    return cfg
