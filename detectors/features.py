"""Windowed features per service in event time.

Requests are counted into tumbling windows of ``window`` seconds per service.
A window closes when the watermark (the latest event time seen, less
``lateness``) passes its end; services that went quiet get empty windows, so
a traffic drop to zero is seen too. Each closed window yields one
:class:`WindowFeatures`: rate, latency quantiles and error ratios for the
service and for each of its hosts, and the composition of its traffic
(distinct clients, first-time clients, heavy hitters, countries, hosting
networks, endpoints, user agents). Memory per service is bounded whatever
the number of clients: sketches, not sets.

>>> from detectors.events import RequestEvent
>>> agg = WindowAggregator(window=60.0, lateness=0.0)
>>> for i in range(120):
...     _ = agg.add(RequestEvent(ts=float(i), service="ent", status=200, latency_ms=100.0 + i,
...                              host="web-1", client_ip=f"10.0.0.{i % 7}", country="FR"))
>>> [ (w.start, w.count, w.distinct_clients) for w in agg.advance(121.0)]
[(0.0, 60, 7), (60.0, 60, 7)]
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, cast

from .events import RequestBatch, RequestEvent
from .sketches import (
    _LOG_K,
    HyperLogLog,
    LogHistogram,
    SeenFilter,
    SpaceSaving,
    hash64,
    log_bin,
)
from .sketches import _bins as _log_bins
from .timeutil import native_module

# The batch loop of ``add`` in C (detectors/_native.c), when the install
# built it; TOCSIN_NATIVE=0 switches it off (then add_batch is add for each event).
_native: Any = native_module()

__all__ = ["WindowAggregator", "WindowFeatures", "HostStats", "HOSTING_ASNS", "WindowCounts", "ServiceWindows"]

#: Autonomous systems of large hosting and cloud providers: requests from
#: them are machines, not pupils and teachers at home.
HOSTING_ASNS: dict[int, str] = {
    14061: "DigitalOcean", 16509: "Amazon", 14618: "Amazon", 15169: "Google",
    396982: "Google Cloud", 8075: "Microsoft", 24940: "Hetzner", 20473: "Choopa/Vultr",
    45102: "Alibaba", 37963: "Alibaba", 63949: "Linode", 16276: "OVH", 12876: "Scaleway",
    51167: "Contabo", 9009: "M247", 60068: "Datacamp", 13335: "Cloudflare",
    132203: "Tencent", 45090: "Tencent", 4134: "Chinanet", 31898: "Oracle",
    36352: "ColoCrossing", 53667: "FranTech", 202425: "IP Volume", 49981: "WorldStream",
}


@dataclass(slots=True)
class HostStats:
    count: int
    p50_ms: float
    p95_ms: float
    error_ratio_5xx: float


@dataclass(slots=True)
class WindowFeatures:
    """Everything known about one service in one window."""

    service: str
    start: float
    end: float
    count: int
    p50_ms: float = 0.0
    p95_ms: float = 0.0
    p99_ms: float = 0.0
    error_ratio_5xx: float = 0.0
    ratio_429: float = 0.0
    ratio_4xx: float = 0.0
    hosts: dict[str, HostStats] = field(default_factory=dict)
    distinct_clients: int = 0
    new_client_share: float = 0.0
    top1_share: float = 0.0
    top10_share: float = 0.0
    top_clients: list[tuple[str, int]] = field(default_factory=list)
    countries: dict[str, float] = field(default_factory=dict)
    hosting_share: float = 0.0
    hosting_networks: dict[str, float] = field(default_factory=dict)
    top_endpoint: str | None = None
    top_endpoint_share: float = 0.0
    distinct_user_agents: int = 0
    top_user_agent_share: float = 0.0

    @property
    def rate(self) -> float:
        """Requests per second."""
        return self.count / (self.end - self.start)

    @property
    def requests_per_client(self) -> float:
        return self.count / self.distinct_clients if self.distinct_clients else 0.0


class WindowCounts:
    """What one window of one service has counted so far (the window closes into a :class:`WindowFeatures`).

    Written by :meth:`WindowAggregator.add` and by detectors/_native.c (the
    batch path, which relies on exactly these attributes): ``n`` requests,
    of which ``n5xx``, ``n429``, ``n4xx`` (429 included); ``hist``, their
    latencies; ``hosts``, host -> ``[requests, 5xx, LogHistogram]``; of the
    ``with_ip`` requests that name a client: ``hll`` (distinct clients),
    ``top`` (heavy hitters), ``new`` (first-time clients); ``countries``,
    ``hosting`` (requests from :data:`HOSTING_ASNS`) and ``hosting_by``
    (by network name), ``endpoints`` and ``agents`` (capped; the rest
    under ``"(other)"``): counts.
    """

    __slots__ = (
        "start", "n", "n5xx", "n429", "n4xx", "hist", "hosts", "hll", "top",
        "new", "countries", "hosting", "hosting_by", "endpoints", "agents", "with_ip",
    )

    def __init__(self, start: float) -> None:
        self.start = start
        self.n = self.n5xx = self.n429 = self.n4xx = 0
        self.hist = LogHistogram()
        self.hosts: dict[str, list] = {}
        self.hll = HyperLogLog(_HLL_P)
        self.top = SpaceSaving(32)
        self.new = 0
        self.countries: dict[str, int] = {}
        self.hosting = 0
        self.hosting_by: dict[str, int] = {}
        self.endpoints: dict[str, int] = {}
        self.agents: dict[str, int] = {}
        self.with_ip = 0


class ServiceWindows:
    """One service's open windows and first-time-client filter (one per service in a :class:`WindowAggregator`).

    ``windows``: window start -> :class:`WindowCounts`; ``last``: the window
    of the previous event (looked up again only when the start changes);
    ``closed_until``: windows before it are closed; ``seen``: the
    :class:`SeenFilter` of its clients, ``rotated_at`` the event time of its
    last rotation; ``watermark``: its latest event time; ``source``: the
    source of its latest event. detectors/_native.c reads and writes these.
    """

    __slots__ = ("windows", "closed_until", "seen", "rotated_at", "watermark", "source", "last")

    def __init__(self, seen_bits: int) -> None:
        self.windows: dict[float, WindowCounts] = {}
        self.last: WindowCounts | None = None
        self.closed_until = -math.inf
        self.seen = SeenFilter(seen_bits)
        self.rotated_at = -math.inf
        self.watermark = -math.inf
        self.source = 0


_MAX_ENDPOINTS = 64
_MAX_AGENTS = 256
_HLL_P = 10
_MAX_CLIENT_KEYS = 1 << 16
_NEG_INF = -math.inf


_HLL_MASK = (1 << _HLL_P) - 1

if _native is not None and __name__ == "detectors.features":  # (not a second copy of this source, loaded by a test)
    _native.setup(WindowCounts, LogHistogram, HOSTING_ASNS, _log_bins, log_bin, _LOG_K, _MAX_ENDPOINTS,
                  _MAX_AGENTS, _HLL_P)


class WindowAggregator:
    """Tumbling event-time windows per service.

    Watermarks are kept per *source* (a Kafka partition; a file in a
    backtest): within a source events arrive in event-time order, but two
    partitions can be minutes apart when a consumer catches up. A service's
    windows close when its source's watermark passes them, so a service that
    goes quiet still gets (empty) windows while its partition flows; a
    partition that goes entirely quiet is advanced by the caller's clock
    (``advance(now, source)``).

    Parameters
    ----------
    window
        Window length in seconds.
    lateness
        How long after its end a window waits for late events.
    max_gap
        At most this many empty windows are emitted for a quiet service.
    seen_rotation
        Seconds of event time after which the older generation of the
        "client seen before" filter is dropped.
    seen_bits
        Size in bits of each generation of that filter.
    """

    def __init__(
        self,
        window: float = 60.0,
        lateness: float = 5.0,
        max_gap: int = 60,
        seen_rotation: float = 7 * 86400.0,
        seen_bits: int = 1 << 20,
    ) -> None:
        self.window = window
        self.lateness = lateness
        self.max_gap = max_gap
        self.seen_rotation = seen_rotation
        self.seen_bits = seen_bits
        self._services: dict[str, ServiceWindows] = {}
        self._watermark = -math.inf
        self._sources: dict[int, float] = {}  # source -> watermark
        self._source_boundary: dict[int, float] = {}
        self._due = False
        self.late_events = 0
        # client_ip -> its HyperLogLog register and rank and its hash64
        # (computed once per client); two generations: a full one becomes
        # the old one, whose clients move back on their next request (no
        # recent client is hashed again).
        self._client_keys: dict[str, tuple[int, int, int]] = {}
        self._old_keys: dict[str, tuple[int, int, int]] = {}
        #: Batches are counted by detectors/_native.c when it was built (the
        #: same as ``add`` for each event); False: by ``add`` for each event.
        self.native = _native is not None

    def _client_key(self, ip: str) -> tuple[int, int, int]:
        """The client's key (not in ``_client_keys``): from the old generation, else computed; then current."""
        k = self._old_keys.get(ip)
        if k is None:
            h = hash64(ip)
            idx = h & _HLL_MASK
            rank = (64 - _HLL_P) - (h >> _HLL_P).bit_length() + 1
            k = (idx, rank, h)
        keys = self._client_keys
        if len(keys) >= _MAX_CLIENT_KEYS:
            self._old_keys = keys
            keys = self._client_keys = {}
        keys[ip] = k
        return k

    def _new_service(self) -> ServiceWindows:
        return ServiceWindows(self.seen_bits)

    @property
    def watermark(self) -> float:
        return self._watermark

    def add(self, ev: RequestEvent, source: int = 0) -> None:
        """Count one request into its window (closing windows is ``advance``'s job)."""
        # Hot path: the sketches' add methods are inlined (same arithmetic).
        svc = self._services.get(ev.service)
        if svc is None:
            svc = self._services[ev.service] = ServiceWindows(self.seen_bits)
        W = self.window
        ts = ev.ts
        start = (ts // W) * W
        if start < svc.closed_until:
            # Its window is gone: count it into the oldest open one.
            self.late_events += 1
            start = svc.closed_until
        w = svc.last
        if w is None or w.start != start:
            # (A window at or after closed_until is still open: never stale.)
            w = svc.windows.get(start)
            if w is None:
                w = svc.windows[start] = WindowCounts(start)
            svc.last = w
        w.n += 1
        st = ev.status
        if st >= 500:
            w.n5xx += 1
        elif st == 429:
            w.n429 += 1
            w.n4xx += 1
        elif st >= 400:
            w.n4xx += 1
        lat = ev.latency_ms
        b = _log_bins.get(lat)
        if b is None:
            b = log_bin(lat)
        hist = w.hist
        bins = hist.bins
        bins[b] = bins.get(b, 0) + 1
        hist.n += 1
        host = ev.host
        if host is not None:
            h = w.hosts.get(host)
            if h is None:
                h = w.hosts[host] = [0, 0, LogHistogram()]
            h[0] += 1
            if st >= 500:
                h[1] += 1
            hist = h[2]
            bins = hist.bins
            bins[b] = bins.get(b, 0) + 1
            hist.n += 1
        ip = ev.client_ip
        if ip is not None:
            w.with_ip += 1
            k = self._client_keys.get(ip)
            if k is None:
                k = self._client_key(ip)
            idx, rank, hc = k
            reg = w.hll.reg
            if rank > reg[idx]:
                reg[idx] = rank
            top = w.top
            c = top.counts
            # SpaceSaving.add(ip), but for the eviction when full
            if ip in c:
                c[ip] += 1
                top.total += 1
            elif len(c) < top.k:
                c[ip] = 1
                top.total += 1
                top.at_min = None
            else:
                top.add(ip)
            if ts - svc.rotated_at >= self.seen_rotation:
                if svc.rotated_at != _NEG_INF:
                    svc.seen.rotate()
                svc.rotated_at = ts
            if not svc.seen.check_and_add(hc):
                w.new += 1
        country = ev.country
        if country is not None:
            d = w.countries
            d[country] = d.get(country, 0) + 1
        asn = ev.asn
        if asn is not None:
            name = HOSTING_ASNS.get(asn)
            if name is not None:
                w.hosting += 1
                d = w.hosting_by
                d[name] = d.get(name, 0) + 1
        ep = ev.endpoint
        if ep is not None:
            d = w.endpoints
            if ep in d or len(d) < _MAX_ENDPOINTS:
                d[ep] = d.get(ep, 0) + 1
            else:
                d["(other)"] = d.get("(other)", 0) + 1
        ua = ev.user_agent
        if ua is not None:
            d = w.agents
            if ua in d or len(d) < _MAX_AGENTS:
                d[ua] = d.get(ua, 0) + 1
            else:
                d["(other)"] = d.get("(other)", 0) + 1
        svc.source = source
        if ts > svc.watermark:
            svc.watermark = ts
        sources = self._sources
        if ts > sources.get(source, _NEG_INF):
            sources[source] = ts
            if ts > self._watermark:
                self._watermark = ts
            bound = (ts - self.lateness) // W * W
            if bound > self._source_boundary.get(source, _NEG_INF):
                self._source_boundary[source] = bound
                self._due = True

    def add_batch(self, evs: list[RequestEvent] | RequestBatch, source: int = 0) -> list[float]:
        """Count many requests of one source, as ``add`` for each in order does.

        Return the event times at which the source crossed a window boundary
        (where a per-event caller would have found :meth:`due` and closed
        windows), in order: :meth:`close_steps` closes the windows at those
        points after the batch.

        Windows, counts, sketches and watermarks come out as with ``add``,
        with one difference: windows are closed between batches, not in the
        middle of one, so an event that per-event processing would have
        counted as late into the oldest open window (its own window having
        closed earlier in the batch) lands in its own window instead.

        Two implementations: ``add`` for each event (the reference, and the
        path without a C compiler), and, when the install built it,
        ``detectors/_native.c`` (``self.native``): the same loop in C over a
        :class:`RequestBatch`'s decoded messages, on the same objects; the
        tests compare the two.
        """
        if self.native:
            batch = RequestBatch.of(evs)
            sources = self._sources
            bounds = self._source_boundary
            res = _native.add_rows(self._services, batch.rows, batch.ts, source, self._new_service, self.window,
                                   self.lateness, self.seen_rotation, sources.get(source, _NEG_INF),
                                   bounds.get(source, _NEG_INF))
            if res is not NotImplemented:
                # what add does to the aggregator itself, for the whole batch
                steps, wm, bnd, late = cast("tuple[list[float], float, float, int]", res)
                if wm > sources.get(source, _NEG_INF):
                    sources[source] = wm
                    if wm > self._watermark:
                        self._watermark = wm
                if steps:
                    bounds[source] = bnd
                    self._due = True
                self.late_events += late
                return steps
        steps = []
        sources = self._sources
        bounds = self._source_boundary
        before = bounds.get(source, _NEG_INF)
        add = self.add
        for ev in evs:
            add(ev, source)
            bnd = bounds.get(source, _NEG_INF)
            if bnd > before:
                before = bnd
                steps.append(sources[source])
        return steps

    def close_steps(self, steps: list[float], source: int = 0) -> Iterator[list[WindowFeatures]]:
        """The windows a per-event caller would have closed at each of ``steps`` (from :meth:`add_batch`).

        While a step's windows are handed out, the source's watermark is
        that step's event time (so what the caller reads of it, e.g.
        :meth:`low_watermark`, is as it was then); it is restored after.
        """
        sources = self._sources
        final = sources.get(source)
        try:
            for wm in steps:
                sources[source] = wm
                yield self.advance()
        finally:
            if final is not None:
                sources[source] = final
        if self._due:
            yield self.advance()

    def forget(self, service: str) -> None:
        """Drop a service's open windows and filters (it moved to another worker, or was evicted)."""
        self._services.pop(service, None)

    def tracked(self) -> int:
        """How many services have open windows or filters here."""
        return len(self._services)

    def is_tracked(self, service: str) -> bool:
        return service in self._services

    def untracked(self, names: set[str]) -> set[str]:
        """The names among ``names`` that have no state here."""
        return names.difference(self._services)

    def last_seen(self) -> dict[str, float]:
        """Each tracked service's latest event time."""
        return {name: svc.watermark for name, svc in self._services.items()}

    def source_of(self, service: str) -> int | None:
        svc = self._services.get(service)
        return None if svc is None else svc.source

    def sources_services(self, sources: set[int]) -> set[str]:
        """The services whose last events came from these sources."""
        return {name for name, svc in self._services.items() if svc.source in sources}

    def forget_sources(self, sources: set[int]) -> set[str]:
        """Drop these sources (their partitions moved to another worker) and their services; the services.

        A source kept after its partition left would hold the low watermark
        (the slowest source's) back for ever, and with it the alerts' clock.
        """
        services = self.sources_services(sources)
        for name in services:
            self.forget(name)
        for src in sources:
            self._sources.pop(src, None)
            self._source_boundary.pop(src, None)
        return services

    def due(self) -> bool:
        """True when ``advance`` may close a window (a source crossed a window boundary)."""
        return self._due

    def source_watermark(self, source: int) -> float:
        return self._sources.get(source, -math.inf)

    def low_watermark(self) -> float:
        """Event time that every source has reached (the slowest partition's)."""
        return min(self._sources.values()) - self.lateness if self._sources else -math.inf

    def advance(self, watermark: float | None = None, source: int | None = None) -> list[WindowFeatures]:
        """Close every window that its source's watermark (less ``lateness``) has passed.

        ``watermark``, when given, is the event time now for ``source`` (all
        sources when None): a live worker's clock for a quiet partition, or
        the end of a replay.
        """
        W = self.window
        if watermark is not None:
            for src in [source] if source is not None else list(self._sources):
                if watermark > self._sources.get(src, -math.inf):
                    self._sources[src] = watermark
            self._watermark = max(self._watermark, watermark)
        self._due = False
        out: list[WindowFeatures] = []
        for name, svc in self._services.items():
            own = self._sources.get(svc.source, svc.watermark)
            boundary = (own - self.lateness) // W * W
            if svc.closed_until == -math.inf:
                if not svc.windows:
                    continue
                svc.closed_until = min(svc.windows)
            if boundary <= svc.closed_until:
                continue
            gap_start = max(svc.closed_until, boundary - self.max_gap * W)
            t = gap_start
            while t < boundary:
                w = svc.windows.pop(t, None)
                out.append(self._features(name, t, w) if w else WindowFeatures(name, t, t + W, 0))
                t += W
            for s in [s for s in svc.windows if s < boundary]:  # older than max_gap
                out.append(self._features(name, s, svc.windows.pop(s)))
            svc.closed_until = max(svc.closed_until, boundary)
        out.sort(key=lambda f: (f.start, f.service))
        return out

    def flush(self) -> list[WindowFeatures]:
        """Close everything up to the latest event time (end of a backtest)."""
        if self._watermark == -math.inf:
            return []
        return self.advance(max(self._sources.values()) + self.window + self.lateness)

    def _features(self, service: str, start: float, w: WindowCounts) -> WindowFeatures:
        n = w.n
        f = WindowFeatures(service, start, start + self.window, n)
        if not n:
            return f
        f.p50_ms, f.p95_ms, f.p99_ms = w.hist.quantiles((0.50, 0.95, 0.99))
        f.error_ratio_5xx = w.n5xx / n
        f.ratio_429 = w.n429 / n
        f.ratio_4xx = w.n4xx / n
        hosts: dict[str, HostStats] = {}
        for h, (c, e, hist) in w.hosts.items():
            p50, p95 = hist.quantiles((0.50, 0.95))
            hosts[h] = HostStats(c, p50, p95, e / c)
        f.hosts = hosts
        if w.with_ip:
            distinct = max(1, min(w.with_ip, round(w.hll.count())))
            f.distinct_clients = distinct
            f.new_client_share = min(1.0, w.new / distinct)
            f.top_clients, (f.top1_share, f.top10_share) = w.top.top_and_shares(10, (1, 10))
        total_c = sum(w.countries.values())
        if total_c:
            f.countries = {c: k / total_c for c, k in sorted(w.countries.items(), key=lambda kv: -kv[1])[:12]}
        f.hosting_share = w.hosting / n
        f.hosting_networks = {k: v / n for k, v in sorted(w.hosting_by.items(), key=lambda kv: -kv[1])[:5]}
        if w.endpoints:
            ep, c = max(w.endpoints.items(), key=lambda kv: kv[1])
            f.top_endpoint = ep
            f.top_endpoint_share = c / sum(w.endpoints.values())
        if w.agents:
            f.distinct_user_agents = len(w.agents)
            f.top_user_agent_share = max(w.agents.values()) / sum(w.agents.values())
        return f
