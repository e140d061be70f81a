"""The alert record (topic ``alerts``, and what every receiver is sent)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from detectors.model import Evidence
from detectors.timeutil import format_ts

__all__ = ["Alert", "Evidence", "fingerprint", "alert_from_record", "CAUSES", "schema_record"]

SCHEMA = "tocsin.alert.v1"
CAUSES = ("capacity_saturation", "suspected_attack", "disk_failure", "unknown")


def fingerprint(labels: dict[str, str | None]) -> str:
    """Stable id of an alert: same labels, same fingerprint (order does not matter)."""
    h = hashlib.blake2b(digest_size=8)
    for k in sorted(labels):
        v = labels[k]
        if v is not None:
            h.update(k.encode())
            h.update(b"\x00")
            h.update(str(v).encode())
            h.update(b"\x01")
    return h.hexdigest()


@dataclass(frozen=True, slots=True)
class Alert:
    """One state of one alert. ``labels`` always has service, host and disk keys."""

    labels: dict[str, str | None]
    status: str  # firing | resolved
    severity: str  # warning | critical
    title: str
    cause: str
    confidence: float
    starts_at: float
    ends_at: float | None = None
    evidence: tuple[Evidence, ...] = ()
    anomalies: tuple[str, ...] = ()
    fingerprint: str = field(default="")

    def __post_init__(self) -> None:
        if not self.fingerprint:
            object.__setattr__(self, "fingerprint", fingerprint(self.labels))

    def resolved(self, at: float) -> Alert:
        return replace(self, status="resolved", ends_at=at)

    def to_record(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "fingerprint": self.fingerprint,
            "status": self.status,
            "severity": self.severity,
            "title": self.title,
            "cause": self.cause,
            "confidence": round(min(1.0, max(0.0, float(self.confidence))), 4),
            "labels": {k: self.labels.get(k) for k in ("service", "host", "disk")}
            | {k: v for k, v in self.labels.items() if k not in ("service", "host", "disk")},
            "starts_at": format_ts(self.starts_at),
            "ends_at": None if self.ends_at is None else format_ts(self.ends_at),
            "evidence": [e.to_record() for e in self.evidence],
            "anomalies": list(self.anomalies),
        }


def alert_from_record(rec: dict[str, Any]) -> Alert:
    """Rebuild an Alert from its CONTRACT record (as read back from the ``alerts`` topic)."""
    from detectors.timeutil import parse_ts

    return Alert(
        labels=dict(rec["labels"]),
        status=rec["status"],
        severity=rec["severity"],
        title=rec["title"],
        cause=rec["cause"],
        confidence=float(rec["confidence"]),
        starts_at=parse_ts(rec["starts_at"]),
        ends_at=None if rec.get("ends_at") is None else parse_ts(rec["ends_at"]),
        evidence=tuple(Evidence(e["signal"], e["value"], e["expected"], e["text"]) for e in rec.get("evidence", [])),
        anomalies=tuple(rec.get("anomalies", [])),
        fingerprint=rec["fingerprint"],
    )


def schema_record(data: bytes | str | dict[str, Any], schema: str, what: str,
                  error: type[Exception]) -> dict[str, Any]:
    """The dict of a record of ``schema`` (JSON bytes, str or an already decoded dict), or ``error``
    saying it is not a ``what`` record: the one reader of the records that travel on internal topics."""
    try:
        rec = orjson.loads(data) if isinstance(data, bytes | str) else data
    except orjson.JSONDecodeError as exc:
        raise error(f"not {what} record: invalid JSON ({exc})") from None
    if not isinstance(rec, dict) or rec.get("schema") != schema:
        raise error(f"not {what} record (schema must be {schema})")
    return rec
