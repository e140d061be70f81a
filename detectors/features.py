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
from collections import (  # type: ignore[attr-defined]
    _count_elements as _count,  # Counter's counting loop, in C: _count(d, xs) adds each x to d
)
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any, cast

import numpy as np

from .events import RequestBatch, RequestEvent
from .sketches import (
    _LOG_K,
    HyperLogLog,
    LogHistogram,
    SeenFilter,
    SpaceSaving,
    hash64,
    log_bin,
    log_bins_array,
)
from .sketches import _bins as _log_bins
from .timeutil import native_module

# The batch loop of ``add`` in C (detectors/_native.c), when the install
# built it; TOCSIN_NATIVE=0 switches it off (then numpy does the batches).
_native: Any = native_module()

__all__ = ["WindowAggregator", "WindowFeatures", "HostStats", "HOSTING_ASNS"]

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


class _Window:
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


class _Service:
    __slots__ = ("windows", "closed_until", "seen", "rotated_at", "watermark", "source", "last")

    def __init__(self, seen_bits: int) -> None:
        self.windows: dict[float, _Window] = {}
        self.last: _Window | None = None  # the window of the previous event
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
#: Batches smaller than this are added event by event (numpy's set-up per batch costs more).
_SMALL_BATCH = 200


_HLL_MASK = (1 << _HLL_P) - 1

if _native is not None and __name__ == "detectors.features":  # (not a second copy of this source, loaded by a test)
    _native.setup(_Service, _Window, LogHistogram, HOSTING_ASNS, _log_bins, log_bin, _LOG_K, _MAX_ENDPOINTS,
                  _MAX_AGENTS, _HLL_P)


def _bit_length(x):
    """``int.bit_length`` of each uint64 below 2**54, exactly (frexp of halves exact in a float)."""
    hi = (x >> np.uint64(26)).astype(np.float64)
    lo = (x & np.uint64((1 << 26) - 1)).astype(np.float64)
    return np.where(hi > 0, np.frexp(hi)[1] + 26, np.frexp(lo)[1]).astype(np.int64)


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
        self._services: dict[str, _Service] = {}
        self._watermark = -math.inf
        self._sources: dict[int, float] = {}  # source -> watermark
        self._source_boundary: dict[int, float] = {}
        self._due = False
        self.late_events = 0
        # client_ip -> its HyperLogLog register and rank and its hash64
        # (computed once per client); two generations, as the hashes below.
        self._client_keys: dict[str, tuple[int, int, int]] = {}
        self._old_keys: dict[str, tuple[int, int, int]] = {}
        # client_ip -> hash64 (the batch path derives the rest in numpy), in
        # two generations: a full one becomes the old one, whose clients move
        # back on their next request (no recent client is hashed again).
        self._client_hashes: dict[str, int] = {}
        self._old_hashes: dict[str, int] = {}
        #: Batches are counted by detectors/_native.c when it was built (the
        #: same as ``add`` for each event); False: by the numpy path below.
        self.native = _native is not None

    def _client_key(self, ip: str) -> tuple[int, int, int]:
        """The client's key (not in ``_client_keys``): from the old generation, else computed; then current."""
        k = self._old_keys.get(ip)
        if k is None:
            h = self._client_hash(ip)
            idx = h & _HLL_MASK
            rank = (64 - _HLL_P) - (h >> _HLL_P).bit_length() + 1
            k = (idx, rank, h)
        keys = self._client_keys
        if len(keys) >= _MAX_CLIENT_KEYS:
            self._old_keys = keys
            keys = self._client_keys = {}
        keys[ip] = k
        return k

    def _client_hash(self, ip: str) -> int:
        hashes = self._client_hashes
        h = hashes.get(ip)
        if h is None:
            h = self._old_hashes.get(ip)
            if h is None:
                h = hash64(ip)
            if len(hashes) >= _MAX_CLIENT_KEYS:
                self._old_hashes = hashes
                hashes = self._client_hashes = {}
            hashes[ip] = h
        return h

    @property
    def watermark(self) -> float:
        return self._watermark

    def add(self, ev: RequestEvent, source: int = 0) -> None:
        """Count one request into its window (closing windows is ``advance``'s job)."""
        # Hot path: the sketches' add methods are inlined (same arithmetic).
        svc = self._services.get(ev.service)
        if svc is None:
            svc = self._services[ev.service] = _Service(self.seen_bits)
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
                w = svc.windows[start] = _Window(start)
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
                top._low = None
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
        """Count many requests of one source, as ``add`` for each in order would.

        Return the event times at which the source crossed a window boundary
        (where a per-event caller would have found :meth:`due` and closed
        windows), in order: :meth:`close_steps` closes the windows at those
        points after the batch.

        Windows, counts, sketches and watermarks come out as with ``add``,
        with one difference: windows are closed between batches, not in the
        middle of one, so an event that per-event processing would have
        counted as late into the oldest open window (its own window having
        closed earlier in the batch) lands in its own window instead.

        The batch is grouped by (service, window), each group in event order
        (a numpy sort); per group, the counts are made by ``Counter``'s C
        loop straight into the window's dicts, the client sketches in numpy,
        and only what depends on the order (the heavy-hitter sketch's
        evictions, first-time clients) loops in Python. A :class:`RequestBatch`
        (from ``decode_requests``) is read as it is, columns and decoded
        messages, without a RequestEvent per event.

        When the install built ``detectors/_native.c`` (``self.native``), the
        batch goes through it instead: ``add``'s loop in C, event by event,
        on the same objects (about twice as fast as the numpy path).
        """
        if self.native:
            batch = RequestBatch.of(evs)
            res = _native.add_rows(self, batch.rows, batch.ts, source)
            if res is not NotImplemented:
                return cast("list[float]", res)
        n = len(evs)
        if n < _SMALL_BATCH:
            # Not worth the set-up: per event (add alone never closes a window).
            steps = []
            sources = self._sources
            before = self._source_boundary.get(source, _NEG_INF)
            for ev in evs:
                self.add(ev, source)
                bnd = self._source_boundary.get(source, _NEG_INF)
                if bnd > before:
                    before = bnd
                    steps.append(sources[source])
            return steps
        W = self.window
        services = self._services
        batch = RequestBatch.of(evs)
        rows = batch.rows  # every field but ts
        # Columns, in event order (attribute access is the per-event floor).
        tss = batch.ts
        names = [e.service for e in rows]
        t = batch.ts_array
        start = np.floor_divide(t, W) * W  # == (ts // W) * W, as add
        svc_names = list(dict.fromkeys(names))  # first seen first, as add creates them
        code_of = {s: i for i, s in enumerate(svc_names)}
        codes = np.fromiter(map(code_of.__getitem__, names), dtype=np.int64, count=n)
        svcs = []
        for s in svc_names:
            svc = services.get(s)
            if svc is None:
                svc = services[s] = _Service(self.seen_bits)
            svcs.append(svc)
        closed = np.array([svc.closed_until for svc in svcs], dtype=np.float64)[codes]
        late = start < closed
        if late.any():
            # Their window is gone: count them into the oldest open one (as add).
            self.late_events += int(late.sum())
            start = np.where(late, closed, start)
        starts, win = np.unique(start, return_inverse=True)
        key = codes * len(starts) + win
        order = np.argsort(key, kind="stable")  # by service, window; event order within
        key = key[order]
        cuts = (np.flatnonzero(key[1:] != key[:-1]) + 1).tolist()
        bounds = [0, *cuts, n]
        gkeys = key[[0, *cuts]].tolist()
        nstarts = len(starts)
        starts = starts.tolist()
        pick = itemgetter(*order.tolist())
        # Sorted columns (tuples): each read in event order, then put in the
        # groups' order (cheaper than reading the events in sorted order).
        ts_s = pick(tss)
        st = np.array([e.status for e in rows], dtype=np.int64)[order]
        heads = bounds[:-1]
        n5xx = np.add.reduceat(st >= 500, heads).tolist()
        n429 = np.add.reduceat(st == 429, heads).tolist()
        n4xx = np.add.reduceat((st >= 400) & (st < 500), heads).tolist()
        bins_a = log_bins_array([e.latency_ms for e in rows])[order]  # (per element)
        bins_s = bins_a.tolist()
        hosts_s = pick([e.host for e in rows])
        ips_s = pick([e.client_ip for e in rows])
        countries_s = pick([e.country for e in rows])
        hosting_s = pick(list(map(HOSTING_ASNS.get, [e.asn for e in rows])))  # the network's name, or None
        eps_s = pick([e.endpoint for e in rows])
        uas_s = pick([e.user_agent for e in rows])
        # service code -> [(window, first, end)] for the first-time-client filter
        by_svc: dict[int, list[tuple[_Window, int, int, int]]] = {}
        group_windows: list[_Window] = []
        for g, gk in enumerate(gkeys):
            a = bounds[g]
            b = bounds[g + 1]
            code, wi = divmod(gk, nstarts)
            svc = svcs[code]
            ws = starts[wi]
            w = svc.windows.get(ws)
            if w is None:
                w = svc.windows[ws] = _Window(ws)
            by_svc.setdefault(code, []).append((w, a, b, g))
            group_windows.append(w)
            cnt = b - a
            w.n += cnt
            e5 = n5xx[g]
            w.n5xx += e5
            w.n429 += n429[g]
            w.n4xx += n4xx[g]
            bg = bins_s[a:b]
            hist = w.hist
            _count(hist.bins, bg)
            hist.n += cnt
            ig = ips_s[a:b]
            nip = cnt - ig.count(None)
            if nip:
                if nip != cnt:
                    ig = [ip for ip in ig if ip is not None]
                w.with_ip += nip
                w.top.add_many(ig)
            d = w.countries
            _count(d, countries_s[a:b])
            d.pop(None, None)
            hg = hosting_s[a:b]
            k = cnt - hg.count(None)
            if k:
                w.hosting += k
                d = w.hosting_by
                _count(d, hg)
                d.pop(None, None)
            # Capped dicts: keys in order of first appearance, as add admits them.
            for col, d, cap in ((eps_s, w.endpoints, _MAX_ENDPOINTS), (uas_s, w.agents, _MAX_AGENTS)):
                xs = col[a:b]
                if len(d) + cnt <= cap or len(d) + len(set(xs)) <= cap:  # (then none can overflow)
                    _count(d, xs)
                    d.pop(None, None)
                    continue
                counts: dict[str | None, int] = {}
                _count(counts, xs)
                for x, k in counts.items():
                    if x is None:
                        continue
                    if x in d or len(d) < cap:
                        d[x] = d.get(x, 0) + k
                    else:
                        d["(other)"] = d.get("(other)", 0) + k
        # Per host: the batch sorted again by (group, host), each run counted
        # at once; the runs of a group taken in order of their first request
        # (the order add puts new hosts in).
        gid = np.repeat(np.arange(len(group_windows)), np.diff(bounds))  # group of each event, in order
        self._hosts_batch(hosts_s, bins_a, st, gid, group_windows)
        # Client addresses: the HyperLogLog registers and the first-time-client
        # filter from each client's hash64, in numpy (Python loops over the
        # clients were most of the batch's cost).
        hashes = self._client_hashes
        hl = list(map(hashes.get, ips_s))
        valid = None
        if None in hl:
            for i, h in enumerate(hl):
                if h is None:
                    ip = ips_s[i]
                    hl[i] = 0 if ip is None else self._client_hash(ip)
            if None in ips_s:
                valid = np.fromiter((ip is not None for ip in ips_s), dtype=bool, count=n)
        H = np.array(hl, dtype=np.uint64)
        G = len(gkeys)
        Hv, gv = (H, gid) if valid is None else (H[valid], gid[valid])
        if len(Hv):
            idx = (Hv & np.uint64(_HLL_MASK)).astype(np.intp)
            rank = (64 - _HLL_P + 1) - _bit_length(Hv >> np.uint64(_HLL_P))
            regs = np.zeros((G, 1 << _HLL_P), dtype=np.uint8)
            np.maximum.at(regs, (gv, idx), rank.astype(np.uint8))
            for g, w in enumerate(group_windows):
                reg = np.frombuffer(w.hll.reg, dtype=np.uint8)
                np.maximum(reg, regs[g], out=reg)
        # The first-time-client filter, per service: in numpy for the services
        # whose requests came in window order and see no rotation of the
        # filter in this batch (nearly always), else event by event.
        order_l = None
        rising = None
        fast: list[tuple[_Service, list]] = []
        for code, groups in by_svc.items():
            svc = svcs[code]
            a0 = groups[0][1]
            b0 = groups[-1][2]
            in_order = True
            if len(groups) > 1:
                if rising is None:
                    rising = order[1:] > order[:-1]
                in_order = bool(rising[a0:b0 - 1].all())
                if not in_order and order_l is None:
                    order_l = order.tolist()
            m = max(ts_s[a0:b0])
            first_ip = a0 if valid is None else a0 + int(np.argmax(valid[a0:b0]))
            if valid is not None and not valid[first_ip]:
                pass  # no client address at all
            elif in_order and m - (
                ts_s[first_ip] if svc.rotated_at == _NEG_INF else svc.rotated_at
            ) < self.seen_rotation:
                if svc.rotated_at == _NEG_INF:
                    svc.rotated_at = ts_s[first_ip]
                fast.append((svc, groups))
            else:
                self._seen_exact(svc, groups, ts_s, ips_s, in_order, order_l)
            svc.source = source
            if m > svc.watermark:
                svc.watermark = m
        if fast:
            self._seen_fast(fast, H, valid, gid, group_windows)
        return self._batch_watermark(t, source)

    @staticmethod
    def _hosts_batch(hosts_s: tuple, bins_a, st, gid, group_windows: list[_Window]) -> None:
        """Per-host counts, 5xx and latency bins of a batch (columns in group order) into its windows."""
        n = len(hosts_s)
        names = list(dict.fromkeys(hosts_s))
        if names == [None]:
            return
        code = {h: i for i, h in enumerate(names)}
        hc = np.fromiter(map(code.__getitem__, hosts_s), dtype=np.int64, count=n)
        key = gid * len(names) + hc
        order = np.argsort(key, kind="stable")
        key = key[order]
        heads = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
        ends = np.r_[heads[1:], n].tolist()
        n5xx = np.add.reduceat(st[order] >= 500, heads).tolist()
        runs = np.lexsort((order[heads], key[heads] // len(names)))  # by group, then first request
        hosts_of = (key[heads] % len(names)).tolist()
        groups_of = (key[heads] // len(names)).tolist()
        heads_l = heads.tolist()
        bins2 = bins_a[order].tolist()
        for r in runs.tolist():
            host = names[hosts_of[r]]
            if host is None:
                continue
            hosts = group_windows[groups_of[r]].hosts
            h = hosts.get(host)
            if h is None:
                h = hosts[host] = [0, 0, LogHistogram()]
            a = heads_l[r]
            b = ends[r]
            h[0] += b - a
            h[1] += n5xx[r]
            hist = h[2]
            _count(hist.bins, bins2[a:b])
            hist.n += b - a

    def _seen_fast(self, fast: list[tuple[_Service, list]], H, valid, gid, group_windows: list[_Window]) -> None:
        """The filter of ``fast``'s services (no rotation, arrival order) over a batch, as ``add``.

        A request whose client is in the current generation before the batch
        changes nothing and is not new, whatever came before it in the batch
        (bits are only ever set, slices only added). numpy finds those; the
        rest (first-time and returning-after-rotation clients, a few) go
        through ``SeenFilter.check_and_add`` one by one, in arrival order.
        """
        H0 = H & np.uint64((1 << 21) - 1)
        H1 = (H >> np.uint64(21)) & np.uint64((1 << 21) - 1)
        H2 = (H >> np.uint64(42)) & np.uint64((1 << 21) - 1)
        for svc, groups in fast:
            a0 = groups[0][1]
            b0 = groups[-1][2]
            seen = svc.seen
            known = np.zeros(b0 - a0, dtype=bool)
            for sl in seen.cur:
                m = np.uint64(len(sl) * 8 - 1)
                arr = np.frombuffer(sl, dtype=np.uint8)
                hit = np.ones(b0 - a0, dtype=bool)
                for Hx in (H0, H1, H2):
                    p = (Hx[a0:b0] & m).astype(np.int64)
                    hit &= (arr[p >> 3] & (1 << (p & 7)).astype(np.uint8)) != 0
                known |= hit
            if valid is not None:
                known |= ~valid[a0:b0]
            if known.all():
                continue
            todo = (np.flatnonzero(~known) + a0).tolist()
            check = seen.check_and_add
            for i, h in zip(todo, H[todo].tolist(), strict=True):
                if not check(h):
                    group_windows[gid[i]].new += 1

    def _seen_exact(self, svc: _Service, groups: list, ts_s: tuple, ips_s: tuple, in_order: bool,
                    order_l: list | None) -> None:
        """The filter of one service over its groups of a batch, event by event in arrival order, as ``add``."""
        rot = self.seen_rotation
        a0 = groups[0][1]
        b0 = groups[-1][2]
        win_of = {}
        for w, a, b, _ in groups:
            for i in range(a, b):
                win_of[i] = w
        idx: Iterable[int] = range(a0, b0)
        if not in_order:
            idx = sorted(idx, key=cast("list[int]", order_l).__getitem__)
        seen = svc.seen
        keys = self._client_keys
        for i in idx:
            ip = ips_s[i]
            if ip is None:
                continue
            ts = ts_s[i]
            if ts - svc.rotated_at >= rot:
                if svc.rotated_at != _NEG_INF:
                    seen.rotate()
                svc.rotated_at = ts
            k = keys.get(ip)
            if k is None:
                k = self._client_key(ip)
            if not seen.check_and_add(k[2]):
                win_of[i].new += 1

    def _batch_watermark(self, t, source: int) -> list[float]:
        """Watermarks after a batch (event times ``t`` in order); the boundary crossings, as ``add`` makes them."""
        W = self.window
        sources = self._sources
        wm0 = sources.get(source, _NEG_INF)
        b0 = self._source_boundary.get(source, _NEG_INF)
        # An event moves its source on only past the source's latest time...
        prior = np.maximum.accumulate(np.concatenate(([wm0], t[:-1])))
        ahead = t > prior
        if not ahead.any():
            return []
        # ... and is a step when its boundary passes every earlier one.
        b = np.where(ahead, np.floor_divide(t - self.lateness, W) * W, _NEG_INF)
        bprior = np.maximum.accumulate(np.concatenate(([b0], b[:-1])))
        steps = t[ahead & (b > bprior)].tolist()
        mx = float(t.max())
        sources[source] = mx
        if mx > self._watermark:
            self._watermark = mx
        if steps:
            self._source_boundary[source] = float(b.max())
            self._due = True
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

    def _features(self, service: str, start: float, w: _Window) -> WindowFeatures:
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
