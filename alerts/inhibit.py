"""Inhibition (Alertmanager's ``inhibit_rules``): a firing alert mutes others.

A rule says: while an alert matching ``source_matchers`` fires, an alert
matching ``target_matchers`` is muted when both have the same value for
every label in ``equal`` (unset on both counts as equal). An alert never
inhibits itself, even when it matches both sides. ``cause`` and
``severity`` match like labels.

The inhibitor learns which alerts fire from :meth:`Inhibitor.observe` (every
alert state change, before grouping) and answers :meth:`Inhibitor.mutes`.

>>> from alerts.config import InhibitRuleConfig
>>> from alerts.model import Alert
>>> rule = InhibitRuleConfig(source_matchers=['cause="disk_failure"'],
...                          target_matchers=['cause=~"unknown|capacity_saturation"'], equal=["host"])
>>> inh = Inhibitor([rule])
>>> disk = Alert({"service": None, "host": "web-3", "disk": "Z1"}, "firing", "critical", "d", "disk_failure", 0.9, 0.0)
>>> inh.observe(disk)
>>> inh.mutes({"service": "ent", "host": "web-3", "disk": None, "cause": "unknown", "severity": "warning"})
True
>>> inh.mutes({"service": "ent", "host": "web-4", "disk": None, "cause": "unknown", "severity": "warning"})
False
"""

from __future__ import annotations

from collections.abc import Iterable

from .config import InhibitRuleConfig
from .matchers import alert_labels, matches_all
from .model import Alert, fingerprint

__all__ = ["Inhibitor"]


def _fp(labels: dict[str, str | None]) -> str:
    return fingerprint({k: v for k, v in labels.items() if k not in ("cause", "severity", "status")})


class Inhibitor:
    """``mutes(labels)`` over the currently firing alerts, by the configured rules."""

    def __init__(self, rules: Iterable[InhibitRuleConfig]) -> None:
        self.rules = list(rules)
        # per rule: fingerprint -> labels of the firing alerts that match its source
        self._sources: list[dict[str, dict[str, str | None]]] = [{} for _ in self.rules]

    def observe(self, alert: Alert) -> None:
        """Take one alert state change: a firing source starts inhibiting, a resolved one stops."""
        labels = alert_labels(alert)
        for rule, sources in zip(self.rules, self._sources, strict=True):
            if alert.status == "firing" and matches_all(rule.source_matchers, labels):
                sources[alert.fingerprint] = labels
            else:
                sources.pop(alert.fingerprint, None)

    def mutes(self, labels: dict[str, str | None], now: float | None = None) -> bool:
        """Is an alert with these labels (plus cause and severity) inhibited now?

        ``now`` is accepted for the common ``mutes`` interface and not used:
        inhibition follows the alerts' state, not the clock.
        """
        fp = _fp(labels)
        for rule, sources in zip(self.rules, self._sources, strict=True):
            if not sources or not matches_all(rule.target_matchers, labels):
                continue
            for sfp, src in sources.items():
                if sfp != fp and all((src.get(k) or "") == (labels.get(k) or "") for k in rule.equal):
                    return True
        return False

    def clear(self) -> None:
        for s in self._sources:
            s.clear()
