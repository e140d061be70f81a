"""tocsin's one settings model: a YAML file, then environment overrides.

The YAML file (``--config`` or ``TOCSIN_CONFIG``) has four sections,
``kafka``, ``topics``, ``detectors`` and ``alerting``; every field has a
default, so no file at all is a valid configuration. Environment variables
``TOCSIN_KAFKA_*`` override the ``kafka`` section (for containers).
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from alerts.config import AlertingConfig
from detectors.config import DetectorsConfig
from detectors.configfile import load_model_file

__all__ = ["Config", "KafkaConfig", "TopicsConfig", "load_config"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KafkaConfig(_Strict):
    bootstrap_servers: str | None = None  # None: start the embedded broker
    client_id: str = "tocsin"
    group_id: str = "tocsin"
    partitions: int = Field(4, ge=1)
    replication_factor: int = Field(1, ge=1)


class TopicsConfig(_Strict):
    requests: str = "requests"
    disk_health: str = "disk-health"
    anomalies: str = "anomalies"
    alerts: str = "alerts"
    dead_letter: str = "dead-letter"
    silences: str = "silences"


class WebConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(6066, ge=0, le=65535)


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


class _KafkaEnv(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TOCSIN_KAFKA_", extra="ignore")

    bootstrap_servers: str | None = None
    group_id: str | None = None
    client_id: str | None = None


class _MetricsEnv(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TOCSIN_METRICS_", extra="ignore")

    host: str | None = None
    port: int | None = None


def load_config(path: str | Path | None = None) -> Config:
    """Load the file (if any), then apply environment overrides; raise ConfigError on bad input."""
    path = path or os.environ.get("TOCSIN_CONFIG")
    cfg = load_model_file(path, Config) if path else Config()
    env = _KafkaEnv().model_dump(exclude_none=True)
    if env:
        cfg = cfg.model_copy(update={"kafka": cfg.kafka.model_copy(update=env)})
    menv = _MetricsEnv().model_dump(exclude_none=True)
    if menv:
        cfg = cfg.model_copy(update={"metrics": cfg.metrics.model_copy(update=menv)})
    return cfg
