"""Who sends the traffic, and where the service sits on its capacity: the cause model's inputs.

:class:`ClientMix` reads the same decoded request batches as the windowed
aggregator (``detectors.features``), but only for a consistent sample of
clients (chosen by their address, so a sampled client's every request is
seen), and keeps per service and window what tells real users from
automation wherever it comes from:

* requests per client as a distribution (median, 90th percentile, share of
  the requests sent by clients with 10 or more in the window), not a mean;
* endpoint diversity per client (share of requests from clients that use
  one endpoint only);
* the assets that browsers fetch after a page (static requests per page
  view, share of page views by clients that fetched none);
* auth failures (401/403) on the login endpoint and overall;
* the share of requests from client networks (/24 for IPv4, /48 for IPv6)
  and autonomous systems first seen on an earlier day: a flash crowd comes
  mostly from networks seen before (Jung, Krishnamurthy, Rabinovich,
  WWW 2002), a botnet or a proxy pool from new ones;
* user-agent churn per client (distinct agents per busy client) and the
  share of self-declared robots (``bot``, ``crawler``, ``spider``).

:class:`CapacityState` keeps, per service, the usual number of hosts
serving and the load the service carried at its usual latency, so that a
window's load can be placed on the service's own load-to-latency curve and a
host that vanished is seen.

Memory per service is bounded: the open windows (at most ``max_clients``
sampled clients each), a 64 KiB table of first-seen days of networks and a
4 KiB one of autonomous systems; :meth:`ClientMix.bytes_per_service` says
how much.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

from .events import RequestBatch, RequestEvent

__all__ = ["ClientMix", "MixFeatures", "CapacityState", "FEATURE_NAMES"]

_NET_SLOTS = 1 << 16
_ASN_SLOTS = 1 << 12
_STATIC_PREFIXES = ("/static", "/assets", "/favicon", "/js/", "/css/", "/img/")
_LOGIN_WORDS = ("login", "auth", "signin", "connexion", "sso")
_BOT_WORDS = ("bot", "crawler", "spider", "slurp")


def _is_static(ep: str) -> bool:
    return ep.startswith(_STATIC_PREFIXES) or ep.endswith((".js", ".css", ".png", ".woff2", ".ico", ".svg"))


def _network(ip: str) -> str:
    """The /24 of an IPv4 address, the /48 of an IPv6 one (as text)."""
    if ":" in ip:
        return ":".join(ip.split(":")[:3])
    return ip.rpartition(".")[0]


@dataclass(slots=True)
class MixFeatures:
    """The client mix of one service window (from the sampled clients)."""

    requests: int = 0  # sampled requests
    clients: int = 0
    rpc_p50: float = 0.0
    rpc_p90: float = 0.0
    heavy_share: float = 0.0  # of requests, from clients with >= 10 in the window
    single_endpoint_share: float = 0.0  # of requests, from busy clients (>= 3) that use one endpoint
    asset_ratio: float = 0.0  # static requests per page view
    assetless_share: float = 0.0  # of page views, by busy clients that fetched no asset
    login_fail: float = 0.0  # 401/403 share on login endpoints
    auth_fail: float = 0.0  # 401/403 share overall
    login_share: float = 0.0
    known_net_share: float = 1.0  # of requests, from networks first seen on an earlier day
    known_asn_share: float = 1.0
    ua_churn: float = 1.0  # distinct agents per busy client
    bot_share: float = 0.0  # self-declared robots


class _Win:
    __slots__ = ("n", "clients", "pages", "static", "login", "login_fail", "fail", "bots", "known", "known_asn",
                 "netted")

    def __init__(self) -> None:
        self.n = self.pages = self.static = self.login = self.login_fail = self.fail = self.bots = 0
        self.known = self.known_asn = self.netted = 0
        # ip -> [requests, pages, static, endpoints (set), agents (set)]
        self.clients: dict[str, list] = {}


class ClientMix:
    """Per service and window: the client-mix features of a consistent sample of clients.

    Parameters
    ----------
    window
        Window length in seconds (the aggregator's).
    sample_mod
        A client is sampled when a cheap, stable function of its address is
        0 modulo ``sample_mod`` (1: every client).
    max_clients
        Sampled clients kept per window and service; further new ones are
        not followed (their requests still count in the shares).

    >>> mix = ClientMix(window=60.0)
    >>> rows = [{"service": "s", "client_ip": f"10.0.{i % 7}.{i % 50}", "endpoint": "/login",
    ...          "status": 401, "user_agent": "x"} for i in range(200)]
    >>> mix.add_batch(RequestBatch([float(i % 60) for i in range(200)], rows))
    >>> f = mix.close("s", 0.0)
    >>> f.requests, round(f.login_fail, 2), round(f.asset_ratio, 2)
    (200, 1.0, 0.0)
    """

    def __init__(self, window: float = 60.0, sample_mod: int = 1, max_clients: int = 5000) -> None:
        self.window = window
        self.sample_mod = sample_mod
        self.max_clients = max_clients
        self._wins: dict[str, dict[float, _Win]] = {}
        self._nets: dict[str, bytearray] = {}
        self._asns: dict[str, bytearray] = {}

    def _sampled(self, ip: str) -> bool:
        m = self.sample_mod
        return m <= 1 or (ord(ip[-1]) * 31 + ord(ip[-2])) % m == 0

    def add_batch(self, evs: list[RequestEvent] | RequestBatch) -> None:
        """Count the sampled clients' requests of a batch (a RequestBatch of dicts or RequestEvents)."""
        b = RequestBatch.of(evs)
        W = self.window
        wins = self._wins
        m = self.sample_mod
        for ts, r in zip(b.ts, b.rows, strict=True):
            if isinstance(r, dict):
                ip = r.get("client_ip")
                if not ip or (m > 1 and len(ip) > 1 and (ord(ip[-1]) * 31 + ord(ip[-2])) % m):
                    continue
                self._add(wins, ts // W * W, r.get("service"), ip, r.get("endpoint") or "",
                          r.get("status") or 0, r.get("user_agent") or "", r.get("asn"), ts)
            else:
                ip = r.client_ip
                if not ip or (m > 1 and len(ip) > 1 and (ord(ip[-1]) * 31 + ord(ip[-2])) % m):
                    continue
                self._add(wins, ts // W * W, r.service, ip, r.endpoint or "", r.status, r.user_agent or "",
                          r.asn, ts)

    def add(self, ev: RequestEvent) -> None:
        """One request (the per-event path)."""
        self.add_batch([ev])

    def _add(self, wins: dict, start: float, svc: str, ip: str, ep: str, status: int, ua: str,
             asn: int | None, ts: float) -> None:
        sw = wins.get(svc)
        if sw is None:
            sw = wins[svc] = {}
        w = sw.get(start)
        if w is None:
            w = sw[start] = _Win()
        w.n += 1
        static = _is_static(ep)
        if static:
            w.static += 1
        else:
            w.pages += 1
        if status in (401, 403):
            w.fail += 1
        if any(x in ep for x in _LOGIN_WORDS):
            w.login += 1
            if status in (401, 403):
                w.login_fail += 1
        if ua and any(x in ua.lower() for x in _BOT_WORDS):
            w.bots += 1
        c = w.clients.get(ip)
        if c is None:
            if len(w.clients) >= self.max_clients:
                return
            c = w.clients[ip] = [0, 0, 0, set(), set()]
            # networks: first-seen day per hashed /24 or /48 (and per AS)
            day = int(ts // 86400) % 250 + 1
            nets = self._nets.get(svc)
            if nets is None:
                nets = self._nets[svc] = bytearray(_NET_SLOTS)
                self._asns[svc] = bytearray(_ASN_SLOTS)
            h = zlib.crc32(_network(ip).encode()) & (_NET_SLOTS - 1)
            seen = nets[h]
            if seen == 0:
                nets[h] = day
            c.append(seen != 0 and seen != day)
            if asn is not None:
                asns = self._asns[svc]
                ha = (asn * 2654435761) & (_ASN_SLOTS - 1)
                sa = asns[ha]
                if sa == 0:
                    asns[ha] = day
                c.append(sa != 0 and sa != day)
            else:
                c.append(True)
        c[0] += 1
        if static:
            c[2] += 1
        else:
            c[1] += 1
        if len(c[3]) < 8:
            c[3].add(ep)
        if len(c[4]) < 8:
            c[4].add(ua)

    def close(self, service: str, start: float) -> MixFeatures:
        """The features of ``service``'s window starting at ``start``; older open windows are dropped."""
        sw = self._wins.get(service)
        if not sw:
            return MixFeatures()
        w = sw.pop(start, None)
        for s in [s for s in sw if s < start]:
            del sw[s]
        if w is None or w.n == 0:
            return MixFeatures()
        counts = sorted(c[0] for c in w.clients.values())
        n_c = len(counts)
        tracked = sum(counts) or 1
        heavy = sum(c for c in counts if c >= 10)
        busy = [c for c in w.clients.values() if c[0] >= 3]
        single = sum(c[0] for c in busy if len(c[3] - {"/static"}) <= 1 and c[2] == 0)
        assetless = sum(c[1] for c in w.clients.values() if c[1] >= 2 and c[2] == 0)
        pages_tracked = sum(c[1] for c in w.clients.values()) or 1
        known = sum(c[0] for c in w.clients.values() if c[5])
        known_asn = sum(c[0] for c in w.clients.values() if c[6])
        return MixFeatures(
            requests=w.n, clients=n_c,
            rpc_p50=float(counts[n_c // 2]) if n_c else 0.0,
            rpc_p90=float(counts[min(n_c - 1, int(0.9 * n_c))]) if n_c else 0.0,
            heavy_share=heavy / tracked,
            single_endpoint_share=single / tracked,
            asset_ratio=w.static / w.pages if w.pages else 0.0,
            assetless_share=assetless / pages_tracked,
            login_fail=w.login_fail / w.login if w.login else 0.0,
            auth_fail=w.fail / w.n,
            login_share=w.login / w.n,
            known_net_share=known / tracked,
            known_asn_share=known_asn / tracked,
            ua_churn=(sum(len(c[4]) for c in busy) / len(busy)) if busy else 1.0,
            bot_share=w.bots / w.n,
        )

    def forget(self, service: str) -> None:
        self._wins.pop(service, None)
        self._nets.pop(service, None)
        self._asns.pop(service, None)

    def bytes_per_service(self) -> int:
        """Fixed tables plus the bound on one open window's followed clients (about 400 B each)."""
        return _NET_SLOTS + _ASN_SLOTS + 2 * self.max_clients * 400


class CapacityState:
    """Per service: usual hosts serving and the load carried at usual latency (EW means, a few floats).

    ``hosts`` is the EW mean number of hosts that served in unflagged
    windows; ``load_p95`` the EW mean of the rate in the busiest unflagged
    windows (those above the current estimate pull it up fast, the others
    slowly): the top of the service's load-to-latency curve it has been seen
    to carry without a latency anomaly.
    """

    __slots__ = ("n", "hosts", "peak_rate", "p95")

    def __init__(self) -> None:
        self.n = 0
        self.hosts = 0.0
        self.peak_rate = 0.0
        self.p95 = 0.0

    def learn(self, n_hosts: int, rate: float, p95: float) -> None:
        self.n += 1
        a = max(0.02, 1.0 / self.n)
        self.hosts += a * (n_hosts - self.hosts)
        if rate > self.peak_rate:
            self.peak_rate += 0.2 * (rate - self.peak_rate)
        else:
            self.peak_rate += 0.0005 * (rate - self.peak_rate)
        if p95 > 0:
            self.p95 += a * (math.log(p95) - self.p95)


#: The cause model's inputs, in order (see :func:`detectors.cause_model.feature_vector`).
FEATURE_NAMES: tuple[str, ...] = (
    "log_rate_ratio", "log_p95_ratio", "error_5xx", "ratio_4xx", "ratio_429",
    "slow_host_share", "hosts_ratio", "load_vs_peak",
    "d_hosting", "d_home_country", "d_top10", "d_top_endpoint", "d_new_clients", "d_top_agent", "log_rpc_ratio",
    "rpc_p90", "heavy_share", "single_endpoint_share", "asset_ratio", "assetless_share",
    "login_fail", "auth_fail", "d_login_share", "known_net_share", "known_asn_share", "ua_churn", "bot_share",
    "disk_on_slow_host", "disk_anywhere",
)
