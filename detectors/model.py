"""The Anomaly record: one flagged observation (topic ``anomalies``)."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any

from .timeutil import format_ts

__all__ = ["Anomaly", "Entity", "Evidence", "Verdict", "severity_for", "z_score_to_unit"]

SCHEMA = "tocsin.anomaly.v1"


@dataclass(frozen=True, slots=True)
class Entity:
    """What an anomaly is about; keys that do not apply stay None."""

    service: str | None = None
    endpoint: str | None = None
    host: str | None = None
    disk: str | None = None

    @property
    def key(self) -> str:
        """The Kafka key: ``service``, ``service/endpoint``, ``host`` or ``host/disk``."""
        if self.service is not None:
            return self.service if self.endpoint is None else f"{self.service}/{self.endpoint}"
        if self.host is not None:
            return self.host if self.disk is None else f"{self.host}/{self.disk}"
        return ""

    def as_dict(self) -> dict[str, str | None]:
        return {"service": self.service, "endpoint": self.endpoint, "host": self.host, "disk": self.disk}


def severity_for(score: float, critical: float = 0.95) -> str:
    """Severity of a flagged observation: critical from ``critical`` on, warning below."""
    return "critical" if score >= critical else "warning"


@dataclass(slots=True)
class Anomaly:
    """One anomalous observation, as published on the ``anomalies`` topic."""

    ts: float
    detector: str  # latency | traffic | disk
    entity: Entity
    signal: str
    value: float
    expected: float
    lower: float
    upper: float
    score: float
    severity: str
    id: str = ""

    def __post_init__(self) -> None:
        if not self.id:
            # Deterministic: the same observation replayed gives the same id,
            # so at-least-once reprocessing does not create new anomalies.
            h = hashlib.blake2b(digest_size=10)
            h.update(f"{self.detector}|{self.entity.key}|{self.signal}|{self.ts!r}".encode())
            self.id = h.hexdigest()

    def to_record(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "id": self.id,
            "ts": format_ts(self.ts),
            "detector": self.detector,
            "entity": self.entity.as_dict(),
            "signal": self.signal,
            "value": round(float(self.value), 6),
            "expected": round(float(self.expected), 6),
            "lower": round(float(self.lower), 6),
            "upper": round(float(self.upper), 6),
            "score": round(min(1.0, max(0.0, float(self.score))), 6),
            "severity": self.severity,
        }


@dataclass(slots=True)
class Verdict:
    """What a detector says about one observation, before it learns it."""

    signal: str
    value: float
    expected: float
    lower: float
    upper: float
    score: float  # [0, 1]
    flagged: bool
    warming_up: bool = False
    z: float = 0.0


def z_score_to_unit(z: float, scale: float = 3.0) -> float:
    """Map |z| to [0, 1) without saturating: 1 - exp(-|z| / scale)."""
    return 1.0 - math.exp(-abs(z) / scale)


@dataclass(frozen=True, slots=True)
class Evidence:
    """One number behind a diagnosis, with the sentence an on-call engineer reads."""

    signal: str
    value: float
    expected: float
    text: str

    def to_record(self) -> dict[str, Any]:
        return {
            "signal": self.signal,
            "value": round(float(self.value), 4),
            "expected": round(float(self.expected), 4),
            "text": self.text,
        }
