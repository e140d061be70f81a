"""The route tree: which routes (receiver and grouping options) an alert goes to.

Like Alertmanager's: an alert enters at the root and descends into the
first child route whose matchers all match (or every matching child with
``continue: true``); the deepest matching routes give the receivers. A route
inherits what it does not set from its parent: receiver, ``group_by``,
``group_wait``, ``group_interval``, ``repeat_interval``. As in Alertmanager,
``mute_time_intervals`` and ``active_time_intervals`` belong to the route
that names them and are not inherited.

Grouping itself lives in :mod:`alerts.group`.
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import DEFAULT_GROUP_INTERVAL, DEFAULT_GROUP_WAIT, DEFAULT_REPEAT_INTERVAL, RouteConfig
from .matchers import alert_labels, matches_all
from .model import Alert

__all__ = ["Router", "RouteOpts"]


@dataclass(frozen=True, slots=True)
class RouteOpts:
    """The effective options of one matched route (inherited values filled in).

    ``path`` identifies the route in the tree (``"0.2"``: third child of the
    root's first child; ``""``: the root); groups are per route.
    """

    path: str
    receiver: str
    group_by: tuple[str, ...]
    group_wait: float
    group_interval: float
    repeat_interval: float
    mute_time_intervals: tuple[str, ...] = ()
    active_time_intervals: tuple[str, ...] = ()

    @property
    def group_all(self) -> bool:
        """``group_by: ['...']``: every label set is its own group."""
        return self.group_by == ("...",)


class Router:
    def __init__(self, route: RouteConfig) -> None:
        self.route = route
        self._root = _opts(route, None, "")

    def match(self, alert: Alert) -> list[str]:
        """Receiver names for ``alert``, in route order, without duplicates."""
        return list(dict.fromkeys(o.receiver for o in self.routes(alert)))

    def routes(self, alert: Alert) -> list[RouteOpts]:
        """The matched routes of ``alert`` with their effective options, in tree order."""
        out: list[RouteOpts] = []
        self._walk(self.route, self._root, alert_labels(alert), out)
        return out

    def _walk(self, route: RouteConfig, opts: RouteOpts, labels: dict, out: list[RouteOpts]) -> None:
        matched_child = False
        for i, child in enumerate(route.routes):
            if matches_all(child.matchers, labels):
                matched_child = True
                path = f"{opts.path}.{i}" if opts.path else str(i)
                self._walk(child, _opts(child, opts, path), labels, out)
                if not child.continue_:
                    break
        if not matched_child:
            out.append(opts)


def _opts(route: RouteConfig, parent: RouteOpts | None, path: str) -> RouteOpts:
    def pick(value, inherited, default):
        if value is not None:
            return value
        return inherited if parent is not None else default

    return RouteOpts(
        path=path,
        receiver=route.receiver or (parent.receiver if parent else ""),
        group_by=tuple(route.group_by) if route.group_by is not None else (parent.group_by if parent else ()),
        group_wait=pick(route.group_wait, parent and parent.group_wait, DEFAULT_GROUP_WAIT),
        group_interval=pick(route.group_interval, parent and parent.group_interval, DEFAULT_GROUP_INTERVAL),
        repeat_interval=pick(route.repeat_interval, parent and parent.repeat_interval, DEFAULT_REPEAT_INTERVAL),
        mute_time_intervals=tuple(route.mute_time_intervals),
        active_time_intervals=tuple(route.active_time_intervals),
    )
