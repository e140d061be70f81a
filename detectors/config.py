"""Detector configuration: one typed section of tocsin's YAML file.

Every field has a default, so an empty file is a valid configuration.
Per-service overrides replace some parameters for the services whose name
matches a glob (``ent-*``).
"""

from __future__ import annotations

import fnmatch
from datetime import date
from typing import TYPE_CHECKING, Annotated, Any, Optional
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, create_model, field_validator

from .calendar import parse_calendar
from .configfile import parse_duration

__all__ = ["DetectorsConfig", "TrafficConfig", "LatencyConfig", "DiagnosisConfig", "TimeGuardConfig", "LimitsConfig",
           "Override"]

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
    mild_load: float = Field(1.3, ge=1)
    mild_pending_for: Duration = 150.0
    host_memory: Duration = Field(3600.0, gt=0)


class TimeGuardConfig(_Strict):
    """Plausible event times (detectors/timeguard.py); the rest is dead-lettered.

    ``max_ahead``: seconds a request may be ahead of its partition's arrival
    time (or, in a replay, of the partition's recent event times).
    ``disk_max_ahead``: the same for disk readings, which come in rounds: in
    a replay the next round is a whole reading interval ahead of the last,
    so this must exceed the interval; Backblaze's drive stats, the model of
    the disk-health event, are daily: two days let one round be missing.
    Disk readings are not windowed (each updates its own drive's state), so
    a reading accepted ahead of time harms only its own drive. ``max_behind``: seconds an event may
    be behind its partition's recent event times (the windows of a service
    are kept for an hour: 60 windows of a minute). ``span``: how many recent
    events of a partition its reference time is estimated from.
    """

    max_ahead: Duration = Field(300.0, gt=0)
    disk_max_ahead: Duration = Field(2 * 86400.0, gt=0)
    max_behind: Duration = Field(3600.0, gt=0)
    span: int = Field(128, ge=1)


class LimitsConfig(_Strict):
    """Caps on the keys one worker tracks, against floods of random names.

    Beyond ``max_services`` services (``max_hosts`` service/host latency
    models, ``max_drives`` drives) the least recently seen is evicted: among
    services, first the young ones (fewer than ``young_requests`` requests
    in all, not alerting), then the others; a new service is refused (its
    requests counted, not processed) when every tracked one was seen in the
    same batch or is alerting. A young service that has been quiet for
    ``young_idle_windows`` windows is forgotten even below the cap: it
    cannot have given the detectors enough to judge (they need
    ``min_count`` requests a window), and a stray name would otherwise get
    an empty window every minute for ever. A young service's windows with
    fewer requests than the detectors' ``min_count`` are neither judged nor
    learned (the detectors could not flag them, and a baseline is not made
    of a stray name's single request).
    """

    max_services: int = Field(10_000, ge=1)
    max_hosts: int = Field(20_000, ge=1)
    max_drives: int = Field(100_000, ge=1)
    young_requests: int = Field(100, ge=0)
    young_idle_windows: int = Field(2, ge=1)


def _partial(model: type[_Strict]) -> type[_Strict]:
    """The same fields, all optional: an override names only what it changes."""
    fields: dict[str, Any] = {
        name: (Optional[f.annotation], Field(None, **{k: v for k, v in _bounds(f).items()}))  # noqa: UP045 - a runtime type
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


if TYPE_CHECKING:  # the type checker sees the full models: the same fields (all optional at run time)
    PartialTraffic = TrafficConfig
    PartialLatency = LatencyConfig
else:
    PartialTraffic = _partial(TrafficConfig)
    PartialLatency = _partial(LatencyConfig)


class Override(_Strict):
    """Parameters for the services whose name matches ``service`` (a glob)."""

    service: str
    traffic: PartialTraffic = PartialTraffic()
    latency: PartialLatency = PartialLatency()


class DetectorsConfig(_Strict):
    window: Duration = Field(60.0, gt=0)
    lateness: Duration = Field(5.0, ge=0)
    timezone: str = "Europe/Paris"
    # none | COUNTRY[-SUBDIVISION][+school-ZONE], e.g. FR, FR-57, FR+school-C (detectors.calendar)
    holiday_calendar: str = "FR"
    holidays: list[date] = Field(default_factory=list)
    traffic: TrafficConfig = TrafficConfig()
    latency: LatencyConfig = LatencyConfig()
    diagnosis: DiagnosisConfig = DiagnosisConfig()
    disk: dict[str, Any] = Field(default_factory=dict)
    time_guard: TimeGuardConfig = TimeGuardConfig()
    limits: LimitsConfig = LimitsConfig()
    overrides: list[Override] = Field(default_factory=list)

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r} (use an IANA name like Europe/Paris or UTC)") from None
        return v

    @field_validator("holiday_calendar")
    @classmethod
    def _calendar(cls, v: str) -> str:
        parse_calendar(v)  # ValueError saying what is wrong
        return v

    def for_service(self, service: str) -> tuple[TrafficConfig, LatencyConfig]:
        """The traffic and latency parameters that apply to ``service``."""
        t, lat = self.traffic, self.latency
        for o in self.overrides:
            if fnmatch.fnmatchcase(service, o.service):
                t = t.model_copy(update=o.traffic.model_dump(exclude_none=True))
                lat = lat.model_copy(update=o.latency.model_dump(exclude_none=True))
        return t, lat
