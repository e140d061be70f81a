"""Alertmanager-style label matchers: ``name="value"``, ``!=``, ``=~``, ``!~``.

Alert fields ``cause``, ``severity`` and ``status`` match like labels.

>>> m = Matcher.parse('cause=~"suspected_.*"')
>>> m.matches({"cause": "suspected_attack"}), m.matches({"cause": "unknown"})
(True, False)
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Matcher", "matches_all", "alert_labels"]

_RE = re.compile(r'^\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*(?:"((?:[^"\\]|\\.)*)"|([^\s"]*))\s*$')


@dataclass(frozen=True, slots=True)
class Matcher:
    name: str
    op: str
    value: str

    @classmethod
    def parse(cls, text: str) -> Matcher:
        m = _RE.match(text)
        if not m:
            raise ValueError(f'{text!r} is not a matcher (use name="value", name!="value", name=~"re" or name!~"re")')
        value = m.group(3) if m.group(3) is not None else m.group(4)
        value = value.replace('\\"', '"')
        if m.group(2) in ("=~", "!~"):
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"{text!r}: bad regular expression: {exc}") from None
        return cls(m.group(1), m.group(2), value)

    def matches(self, labels: dict[str, str | None]) -> bool:
        v = labels.get(self.name) or ""
        if self.op == "=":
            return v == self.value
        if self.op == "!=":
            return v != self.value
        hit = re.fullmatch(self.value, v) is not None
        return hit if self.op == "=~" else not hit

    def __str__(self) -> str:
        return f'{self.name}{self.op}"{self.value}"'


def matches_all(matchers: list[Matcher] | tuple[Matcher, ...], labels: dict[str, str | None]) -> bool:
    return all(m.matches(labels) for m in matchers)


def alert_labels(alert) -> dict[str, str | None]:
    """The labels of an alert plus its cause, severity and status, for matching."""
    return {**alert.labels, "cause": alert.cause, "severity": alert.severity, "status": alert.status}
