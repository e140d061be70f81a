"""What a notification says, for a person reading it on a phone: shared by the receivers that write text.

- :func:`headline`: the title with the cause said once (the diagnosis
  ends titles with ``: <cause>``, and the cause line says it again).
- :func:`evidence_lines`: one list of sentences with human units; numbers
  written by machines (``0.6633``, ``3.031e+04``) are rounded to what a
  person reads.
- :class:`Presentation`: per receiver, the time zone every time is shown
  in (with the zone's name; UTC stays in the context line), the next step
  and runbook per cause (a service may override), and links to the
  dashboard and to ``tocsin report``, as URL templates filled with the
  alert's labels.
- :class:`Peaks`: the worst reading of each signal seen in an incident, so
  a message shows the current value and the peak apart, and a resolved
  alert says what recovered and when instead of repeating the peak as if
  it were still going on.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, tzinfo
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from alerts.model import Alert, Evidence

from .base import cause_text, format_duration

__all__ = [
    "DEFAULT_NEXT_STEPS",
    "Peaks",
    "Presentation",
    "ended",
    "evidence_lines",
    "headline",
    "is_drive_alert",
    "human_value",
    "tidy_numbers",
]

#: What to do first, per cause (the configuration's ``next_steps`` overrides).
DEFAULT_NEXT_STEPS = {
    "capacity_saturation": "Real users, more than the service can serve: scale out, or shed load (queue, degrade non-essential pages).",
    "suspected_attack": "Rate-limit the endpoint under attack and block the networks named in the evidence; keep the usual users' networks open.",
    "disk_failure": "Drain the host and replace the drive; check the other drives of the same batch.",
    "unknown": "Look at the dashboard for the signal that moved first; say which cause it was so tocsin learns it.",
}

_SIGNAL_NAMES = {
    "request_rate": "request rate",
    "latency_p95_ms": "p95 latency",
    "latency_ms": "latency",
    "io_latency_ms": "disk I/O latency",
    "io_errors": "I/O errors",
    "hosting_share": "share from hosting networks",
    "home_country_share": "share from the home country",
    "top10_sources_share": "share of the top 10 sources",
    "top_endpoint_share": "share of the top endpoint",
    "top_user_agent_share": "share of the top user agent",
    "requests_per_client": "requests per client",
    "disk_failure_score": "drive failure score",
    "hosts_affected": "hosts affected",
}


def signal_name(signal: str) -> str:
    """``hosting_share`` -> ``share from hosting networks``."""
    return _SIGNAL_NAMES.get(signal, signal.replace("_", " "))


def _plain(x: float) -> str:
    """A number as a person writes it: 3 significant digits, thousands separated, no exponent."""
    if x != x or x in (float("inf"), float("-inf")):
        return "n/a"
    a = abs(x)
    if a >= 100:
        return f"{x:,.0f}"
    if a >= 10:
        return f"{x:.1f}".rstrip("0").rstrip(".")
    if a >= 0.01 or a == 0:
        return f"{x:.2f}".rstrip("0").rstrip(".")
    return f"{x:.2g}" if a >= 1e-4 else "0"


def human_value(signal: str, value: float) -> str:
    """A signal's value with its unit.

    >>> human_value("hosting_share", 0.6633), human_value("request_rate", 30310.4)
    ('66%', '30,310 req/s')
    >>> human_value("latency_p95_ms", 4200), human_value("latency_p95_ms", 180.26)
    ('4.2 s', '180 ms')
    >>> human_value("disk_failure_score", 0.912345)
    '0.91'
    """
    if signal.endswith("_share") or signal.endswith("_ratio") or signal == "error_rate":
        return f"{value * 100:.0f}%"
    if signal.endswith("_ms"):
        return f"{_plain(value / 1000)} s" if abs(value) >= 1000 else f"{value:.0f} ms"
    if signal == "request_rate":
        return f"{_plain(value)} req/s"
    if signal.endswith("bytes"):
        for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
            if abs(value) >= size:
                return f"{_plain(value / size)} {unit}"
        return f"{value:.0f} B"
    return _plain(value)


_EXP = re.compile(r"(?<![\w.])[-+]?\d+(?:\.\d+)?[eE][-+]?\d+(?![\w.])")
_LONG = re.compile(r"(?<![\w.])[-+]?\d+\.\d{3,}(?![\w.])")


def tidy_numbers(text: str) -> str:
    """Rewrite machine numbers in a sentence: no exponents, no long decimals.

    >>> tidy_numbers("hosting_share: 0.6633, rate 3.031e+04, 812 req/s, version 1.2.3")
    'hosting_share: 0.66, rate 30,310, 812 req/s, version 1.2.3'
    """
    text = _EXP.sub(lambda m: _plain(float(m.group())), text)
    return _LONG.sub(lambda m: _plain(float(m.group())), text)


def headline(alert: Alert) -> str:
    """The title without a trailing ``: <cause>`` (the cause is shown once, on its own).

    >>> from alerts.model import Alert
    >>> a = Alert({"service": "ent"}, "firing", "critical", "Traffic 8.2x usual on ent: suspected attack",
    ...           "suspected_attack", 0.9, 0.0)
    >>> headline(a)
    'Traffic 8.2x usual on ent'
    """
    title = tidy_numbers(alert.title.strip())
    for suffix in (cause_text(alert.cause), alert.cause, f"suspected {cause_text(alert.cause)}"):
        for sep in (": ", " - ", " — "):
            if title.lower().endswith((sep + suffix).lower()):
                return title[: -len(sep + suffix)].rstrip()
    return title


def is_drive_alert(alert: Alert) -> bool:
    """An alert about a drive itself (host and disk, no service): it ends only when the drive is replaced."""
    return alert.cause == "disk_failure" and bool(alert.labels.get("disk")) and not alert.labels.get("service")


def ended(alert: Alert) -> str:
    """How a resolved alert ended: a drive is ``replaced``, anything else ``recovered``."""
    return "replaced" if is_drive_alert(alert) else "recovered"


def _deviation(ev: Evidence) -> float:
    return abs(float(ev.value) - float(ev.expected)) / max(abs(float(ev.expected)), 1e-9)


def evidence_line(ev: Evidence) -> str:
    """One evidence item as a sentence with human units."""
    if ev.text.strip():
        return tidy_numbers(ev.text.strip())
    return f"{signal_name(ev.signal)}: {human_value(ev.signal, ev.value)} (usual {human_value(ev.signal, ev.expected)})"


def evidence_lines(alert: Alert, limit: int = 8) -> list[str]:
    """The evidence of ``alert`` as sentences, most telling first, at most ``limit`` (then a count)."""
    lines = [evidence_line(ev) for ev in alert.evidence[:limit]]
    if len(alert.evidence) > limit:
        lines.append(f"and {len(alert.evidence) - limit} more")
    return lines


@dataclass
class Peaks:
    """The worst reading of each signal of one alert: ``{signal: [value, expected, text, at]}``,
    and the headline of the state whose lead evidence was the worst (``[headline, deviation, at]``).

    Kept in a receiver's memory (plain JSON) and updated with each state it is told.
    """

    by_signal: dict[str, list[Any]] = field(default_factory=dict)
    lead: list[Any] | None = None

    @classmethod
    def load(cls, raw: Mapping[str, Any] | None) -> Peaks:
        raw = raw or {}
        return cls({k: list(v) for k, v in (raw.get("signals") or {}).items()},
                   list(raw["lead"]) if raw.get("lead") else None)

    def dump(self) -> dict[str, Any]:
        return {"signals": self.by_signal, "lead": self.lead}

    @property
    def headline(self) -> str | None:
        """The headline of the worst state told (its numbers are those of the peak)."""
        return str(self.lead[0]) if self.lead else None

    def update(self, alert: Alert, at: float) -> None:
        if alert.evidence:
            d = _deviation(alert.evidence[0])
            if self.lead is None or d > float(self.lead[1]):
                self.lead = [headline(alert), d, at]
        for ev in alert.evidence:
            old = self.by_signal.get(ev.signal)
            if old is None or _deviation(ev) > _deviation(Evidence(ev.signal, old[0], old[1], "")):
                self.by_signal[ev.signal] = [float(ev.value), float(ev.expected), ev.text, at]

    def peak_of(self, ev: Evidence) -> tuple[float, float, str, float] | None:
        """The peak of ``ev``'s signal when it is worse than ``ev`` itself (None: ``ev`` is the peak)."""
        p = self.by_signal.get(ev.signal)
        if p is None or _deviation(Evidence(ev.signal, p[0], p[1], "")) <= _deviation(ev) * 1.05:
            return None
        return float(p[0]), float(p[1]), str(p[2]), float(p[3])


def _zone(name: str) -> tzinfo:
    return UTC if name.upper() in ("UTC", "Z") else ZoneInfo(name)


@dataclass(frozen=True)
class Presentation:
    """How one receiver writes times and what it links to.

    URL templates take ``{service}``, ``{host}``, ``{disk}``, ``{cause}``,
    ``{fingerprint}``, ``{starts_at}`` (epoch seconds) and ``{starts_at_ms}``,
    URL-quoted; an unset label is empty.
    """

    time_zone: str = "UTC"
    runbook_url: str | None = None
    runbook_urls: Mapping[str, str] = field(default_factory=dict)
    service_runbook_urls: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    dashboard_url: str | None = None
    report_url: str | None = None
    next_steps: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, pres: Presentation | None, runbook_url: str | None = None,
           dashboard_url: str | None = None) -> Presentation:
        """``pres`` (or the defaults) with a receiver's plain ``runbook_url`` / ``dashboard_url`` where it has none."""
        pres = pres or cls()
        if runbook_url and not pres.runbook_url:
            pres = replace(pres, runbook_url=runbook_url)
        if dashboard_url and not pres.dashboard_url:
            pres = replace(pres, dashboard_url=dashboard_url)
        return pres

    @property
    def tz(self) -> tzinfo:
        return _zone(self.time_zone)

    def time(self, ts: float, *, day: bool = True) -> str:
        """``Tue 6 Apr 10:04 CEST`` in the receiver's zone (the zone always shown).

        >>> Presentation("Europe/Paris").time(1617696240.0)
        'Tue 6 Apr 10:04 CEST'
        >>> Presentation().time(1617696240.0, day=False)
        '08:04 UTC'
        """
        d = datetime.fromtimestamp(ts, self.tz)
        zone = d.tzname() or self.time_zone
        return (f"{d:%a} {d.day} {d:%b %H:%M} {zone}" if day else f"{d:%H:%M} {zone}")

    @staticmethod
    def utc(ts: float) -> str:
        """``2021-04-06 08:04 UTC``: the context line's reference time."""
        return f"{datetime.fromtimestamp(ts, UTC):%Y-%m-%d %H:%M} UTC"

    def _fill(self, template: str, alert: Alert) -> str:
        values = {k: quote(str(alert.labels.get(k) or ""), safe="") for k in ("service", "host", "disk")}
        values.update(cause=alert.cause, fingerprint=alert.fingerprint, starts_at=str(int(alert.starts_at)),
                      starts_at_ms=str(int(alert.starts_at * 1000)))
        try:
            return template.format(**values)
        except (KeyError, IndexError, ValueError):
            return template

    def runbook(self, alert: Alert) -> str | None:
        """The runbook of the alert's cause: the service's own, else the cause's, else the default."""
        service = alert.labels.get("service")
        per_service = self.service_runbook_urls.get(service or "", {}) if service else {}
        url = per_service.get(alert.cause) or per_service.get("*") or self.runbook_urls.get(alert.cause) or self.runbook_url
        return self._fill(url, alert) if url else None

    def next_step(self, alert: Alert) -> str:
        return self.next_steps.get(alert.cause) or DEFAULT_NEXT_STEPS.get(alert.cause, DEFAULT_NEXT_STEPS["unknown"])

    def links(self, alert: Alert) -> list[tuple[str, str, str]]:
        """``(action_id, label, url)`` of the runbook, dashboard and report, those configured."""
        out = []
        for aid, label, url in (("runbook", "Runbook", self.runbook(alert)),
                                ("dashboard", "Dashboard", self.dashboard_url and self._fill(self.dashboard_url, alert)),
                                ("report", "Report", self.report_url and self._fill(self.report_url, alert))):
            if url:
                out.append((aid, label, url))
        return out

    def since(self, alert: Alert, now: float) -> str:
        return f"{self.time(alert.starts_at)} ({format_duration(now - alert.starts_at)} ago)"
