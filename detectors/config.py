"""Detector configuration: one typed section of tocsin's YAML file.

Every field has a default, so an empty file is a valid configuration.
Per-service overrides replace some parameters for the services whose name
matches a glob (``ent-*``).
"""

from __future__ import annotations

import fnmatch
from datetime import date
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, create_model, field_validator

from .configfile import parse_duration

__all__ = ["DetectorsConfig", "TrafficConfig", "LatencyConfig", "DiagnosisConfig", "Override"]

Duration = Annotated[float, BeforeValidator(parse_duration)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TrafficConfig(_Strict):
    threshold_z: float = Field(5.0, gt=0)
    min_ratio: float = Field(2.0, ge=1)
    seasonal_alpha: float = Field(0.005, gt=0, le=1)
    recent_alpha: float = Field(0.1, gt=0, le=1)
    warmup: int = Field(45, ge=0)
    fallback_z: float = Field(8.0, gt=0)
    fallback_ratio: float = Field(3.0, ge=1)
    fallback_warmup: int = Field(30, ge=0)
    noise_floor: float = Field(0.01, ge=0)
    min_count: int = Field(30, ge=0)
    learn_z: float = Field(4.0, gt=0)


class LatencyConfig(_Strict):
    threshold_z: float = Field(5.0, gt=0)
    min_ratio: float = Field(1.8, ge=1)
    min_ratio_p50: float = Field(1.5, ge=1)
    min_error_ratio: float = Field(0.05, ge=0, le=1)
    alpha: float = Field(0.02, gt=0, le=1)
    warmup: int = Field(30, ge=0)
    min_count: int = Field(20, ge=1)
    noise_floor: float = Field(0.01, ge=0)
    learn_z: float = Field(3.0, gt=0)


class DiagnosisConfig(_Strict):
    attack_threshold: float = Field(1.0, gt=0)
    spread_share: float = Field(0.6, gt=0, le=1)
    disk_window: Duration = 3 * 86400.0
    composition_alpha: float = Field(0.02, gt=0, le=1)
    composition_warmup: int = Field(30, ge=0)
    harm_traffic_z: float = Field(2.5, gt=0)
    harm_traffic_ratio: float = Field(1.8, ge=1)
    unknown_pending_for: Duration = 180.0
    disk_pending_for: Duration = 60.0
    replaced_grace: Duration = 1800.0
    use_model: bool = True
    model_min_proba: float = Field(0.5, ge=0, le=1)
    benign_min_proba: float = Field(0.6, ge=0, le=1)
    trigger_min_proba: float = Field(0.9, ge=0, le=1)
    model_pending_for: Duration = 120.0
    mix_sample: int = Field(8, ge=0)
    mix_every: int = Field(10, ge=1)


def _partial(model: type[_Strict]) -> type[_Strict]:
    """The same fields, all optional: an override names only what it changes."""
    fields: dict[str, Any] = {
        name: (f.annotation | None, Field(None, **{k: v for k, v in _bounds(f).items()}))
        for name, f in model.model_fields.items()
    }
    return create_model(f"Partial{model.__name__}", __base__=_Strict, **fields)


def _bounds(f: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for m in f.metadata:
        for k in ("gt", "ge", "lt", "le"):
            if getattr(m, k, None) is not None:
                out[k] = getattr(m, k)
    return out


PartialTraffic = _partial(TrafficConfig)
PartialLatency = _partial(LatencyConfig)


class Override(_Strict):
    """Parameters for the services whose name matches ``service`` (a glob)."""

    service: str
    traffic: PartialTraffic = PartialTraffic()  # type: ignore[valid-type]
    latency: PartialLatency = PartialLatency()  # type: ignore[valid-type]


class DetectorsConfig(_Strict):
    window: Duration = Field(60.0, gt=0)
    lateness: Duration = Field(5.0, ge=0)
    timezone: str = "Europe/Paris"
    holiday_calendar: Literal["none", "FR"] = "FR"
    holidays: list[date] = Field(default_factory=list)
    traffic: TrafficConfig = TrafficConfig()
    latency: LatencyConfig = LatencyConfig()
    diagnosis: DiagnosisConfig = DiagnosisConfig()
    disk: dict[str, Any] = Field(default_factory=dict)
    overrides: list[Override] = Field(default_factory=list)

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r} (use an IANA name like Europe/Paris or UTC)") from None
        return v

    def for_service(self, service: str) -> tuple[TrafficConfig, LatencyConfig]:
        """The traffic and latency parameters that apply to ``service``."""
        t, lat = self.traffic, self.latency
        for o in self.overrides:
            if fnmatch.fnmatchcase(service, o.service):
                t = t.model_copy(update=o.traffic.model_dump(exclude_none=True))
                lat = lat.model_copy(update=o.latency.model_dump(exclude_none=True))
        return t, lat
