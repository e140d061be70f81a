"""The route tree: which receivers an alert goes to.

Like Alertmanager's: an alert enters at the root and descends into the
first child route whose matchers all match (or every matching child with
``continue: true``); the deepest matching routes give the receivers, and a
route without a receiver inherits its parent's.
"""

from __future__ import annotations

from .config import RouteConfig
from .matchers import alert_labels, matches_all
from .model import Alert

__all__ = ["Router"]


class Router:
    def __init__(self, route: RouteConfig) -> None:
        self.route = route

    def match(self, alert: Alert) -> list[str]:
        """Receiver names for ``alert``, in route order, without duplicates."""
        labels = alert_labels(alert)
        out: list[str] = []
        self._walk(self.route, labels, self.route.receiver or "", out)
        seen: set[str] = set()
        return [r for r in out if not (r in seen or seen.add(r))]

    def _walk(self, route: RouteConfig, labels: dict, receiver: str, out: list[str]) -> None:
        receiver = route.receiver or receiver
        matched_child = False
        for child in route.routes:
            if matches_all(child.matchers, labels):
                matched_child = True
                self._walk(child, labels, receiver, out)
                if not child.continue_:
                    break
        if not matched_child:
            out.append(receiver)
