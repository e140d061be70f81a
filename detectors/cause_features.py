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

The sampled requests of a window are kept (references to the decoded
messages) and read only when the diagnosis asks for the window's features
(candidate windows, and a share of the quiet ones for the baselines), so the
per-event cost is a list append for a sampled client and nothing for the
others. Memory per service is bounded: the open windows (at most
``4 * max_clients`` sampled requests each, ``max_clients`` followed clients), a 64 KiB table of first-seen days of networks and a
4 KiB one of autonomous systems; :meth:`ClientMix.bytes_per_service` says
how much.

The first-seen tables are learned state (days of traffic): the engine
checkpoints them per service (:meth:`ClientMix.state_bytes`, written only
for services whose tables changed, :meth:`ClientMix.dirty_services`) and
restores them (:meth:`ClientMix.load_state`); see :data:`MIX_STATE_VERSION`.
"""

from __future__ import annotations

import math
import struct
import zlib
from dataclasses import dataclass

from .events import RequestBatch, RequestEvent

__all__ = ["ClientMix", "MixFeatures", "CapacityState", "FEATURE_NAMES", "MIX_STATE_VERSION", "MixStateError"]

_NET_SLOTS = 1 << 16
_ASN_SLOTS = 1 << 12
_STATIC_PREFIXES = ("/static", "/assets", "/favicon", "/js/", "/css/", "/img/")
_LOGIN_WORDS = ("login", "auth", "signin", "connexion", "sso")
_BOT_WORDS = ("bot", "crawler", "spider", "slurp")
_ANY_CHAR = "".join(map(chr, range(32, 127)))  # sample_mod 1: an address ends with any of these

#: Version of the checkpoint record of a service's first-seen tables. The record is
#: ``<version u8><log2 network slots u8><log2 AS slots u8><encoding u8>`` then the two
#: tables (one byte per slot: first-seen day, 0 empty), zlib-compressed (encoding 1) or
#: raw when that is not smaller (encoding 0): at most 4 + 69,632 bytes.
MIX_STATE_VERSION = 1
_MIX_HEAD = struct.Struct("<BBBB")
_TABLES = _NET_SLOTS + _ASN_SLOTS


class MixStateError(ValueError):
    """A checkpoint record of the client mix that cannot be read back (corrupt, or another version)."""


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
        About one client in ``sample_mod`` is followed, by the last character
        of its address (1: every client).
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
        self.max_rows = 4 * max_clients
        # (service, window start) -> the sampled requests, read when the window closes
        self._rows: dict[tuple[str, float], list] = {}
        self._nets: dict[str, bytearray] = {}
        self._asns: dict[str, bytearray] = {}
        # A client is followed when its address ends with one of these characters
        # (stable for a client, spread over IPv4's decimal and IPv6's hex digits).
        self._chars = "" if sample_mod <= 1 else "0123456789abcdef"[:: min(sample_mod, 16)]
        self._ep_kind: dict[str, tuple[bool, bool]] = {}
        self._ua_bot: dict[str, bool] = {}
        # Services whose first-seen tables changed since the last checkpoint (a first-seen
        # network or AS, at window close: nothing on the per-event path).
        self._dirty: dict[str, None] = {}

    def add_batch(self, evs: list[RequestEvent] | RequestBatch) -> None:
        """Count the sampled clients' requests of a batch (rows: decoded messages, dicts or RequestEvents)."""
        b = RequestBatch.of(evs)
        rows = b.rows
        if not rows:
            return
        chars = self._chars or _ANY_CHAR
        ts = b.ts
        W = self.window
        wins = self._rows
        cap = self.max_rows
        if isinstance(rows[0], dict):
            sel = [(r.get("service"), t, r) for t, r in zip(ts, rows, strict=True)
                   if (ip := r.get("client_ip")) and ip[-1] in chars]
        else:
            sel = [(r.service, t, r) for t, r in zip(ts, rows, strict=True)
                   if (ip := r.client_ip) and ip[-1] in chars]
        last_key = None
        lst: list = []
        for svc, t, r in sel:
            key = (svc, t // W * W)
            if key != last_key:
                got = wins.get(key)
                if got is None:
                    got = wins[key] = []
                lst = got
                last_key = key
            if len(lst) < cap:
                lst.append((t, r))

    def add(self, ev: RequestEvent) -> None:
        """One request (the per-event path)."""
        self.add_batch([ev])

    def _kind(self, ep: str) -> tuple[bool, bool]:
        k = self._ep_kind.get(ep)
        if k is None:
            k = (_is_static(ep), any(x in ep for x in _LOGIN_WORDS))
            if len(self._ep_kind) < 4096:
                self._ep_kind[ep] = k
        return k

    def _bot(self, ua: str) -> bool:
        k = self._ua_bot.get(ua)
        if k is None:
            low = ua.lower()
            k = any(x in low for x in _BOT_WORDS)
            if len(self._ua_bot) < 4096:
                self._ua_bot[ua] = k
        return k

    def _add(self, w: _Win, svc: str, ip: str, ep: str, status: int, ua: str, asn: int | None, ts: float) -> None:
        w.n += 1
        static, login = self._kind(ep)
        fail = status == 401 or status == 403
        if static:
            w.static += 1
        else:
            w.pages += 1
        if fail:
            w.fail += 1
        if login:
            w.login += 1
            if fail:
                w.login_fail += 1
        if ua and self._bot(ua):
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
                self._dirty[svc] = None
            c.append(seen != 0 and seen != day)
            if asn is not None:
                asns = self._asns[svc]
                ha = (asn * 2654435761) & (_ASN_SLOTS - 1)
                sa = asns[ha]
                if sa == 0:
                    asns[ha] = day
                    self._dirty[svc] = None
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

    def drop(self, service: str, start: float) -> None:
        """Forget ``service``'s window starting at ``start`` (and older ones) without computing it."""
        rows = self._rows
        rows.pop((service, start), None)
        if len(rows) > 4 * len(self._nets) + 64:  # late stragglers of windows closed long ago
            for key in [k for k in rows if k[1] < start - 10 * self.window]:
                del rows[key]

    def close(self, service: str, start: float) -> MixFeatures:
        """The features of ``service``'s window starting at ``start`` (its sampled requests are read here)."""
        got = self._rows.pop((service, start), None)
        self.drop(service, start)
        if not got:
            return MixFeatures()
        w = _Win()
        add = self._add
        if isinstance(got[0][1], dict):
            for t, r in got:
                add(w, service, r.get("client_ip"), r.get("endpoint") or "", r.get("status") or 0,
                    r.get("user_agent") or "", r.get("asn"), t)
        else:
            for t, r in got:
                add(w, service, r.client_ip, r.endpoint or "", r.status, r.user_agent or "", r.asn, t)
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
        for key in [k for k in self._rows if k[0] == service]:
            del self._rows[key]
        self._nets.pop(service, None)
        self._asns.pop(service, None)
        self._dirty.pop(service, None)

    # -- checkpoints ----------------------------------------------------------
    def dirty_services(self) -> list[str]:
        """The services whose first-seen tables changed since the last call (then forgotten as changed)."""
        out = list(self._dirty)
        self._dirty.clear()
        return out

    def state_bytes(self, service: str) -> bytes | None:
        """The checkpoint record of ``service``'s first-seen tables (None: it has none).

        Compressed with zlib: a table is mostly empty slots and a few runs of
        days. Never more than ``4 + 69,632`` bytes (raw when compression
        does not help).
        """
        nets = self._nets.get(service)
        if nets is None:
            return None
        raw = bytes(nets) + bytes(self._asns[service])
        packed = zlib.compress(raw, 1)  # the fastest level: a few KB more, a third of the time
        if len(packed) < len(raw):
            return _MIX_HEAD.pack(MIX_STATE_VERSION, 16, 12, 1) + packed
        return _MIX_HEAD.pack(MIX_STATE_VERSION, 16, 12, 0) + raw

    def load_state(self, service: str, data: bytes | bytearray) -> None:
        """Restore ``service``'s first-seen tables from :meth:`state_bytes`; :class:`MixStateError` when unreadable.

        Nothing is changed when the record is refused.
        """
        if len(data) < _MIX_HEAD.size:
            raise MixStateError(f"client-mix record of {service!r} too short ({len(data)} bytes)")
        version, net_bits, asn_bits, enc = _MIX_HEAD.unpack_from(data)
        if version != MIX_STATE_VERSION:
            raise MixStateError(f"client-mix record of {service!r} is version {version}, "
                                f"this worker reads version {MIX_STATE_VERSION}")
        if (1 << net_bits, 1 << asn_bits) != (_NET_SLOTS, _ASN_SLOTS):
            raise MixStateError(f"client-mix record of {service!r} has tables of 2^{net_bits} and 2^{asn_bits} "
                                f"slots, not 2^16 and 2^12")
        body = bytes(data[_MIX_HEAD.size:])
        if enc == 1:
            d = zlib.decompressobj()
            try:
                raw = d.decompress(body, _TABLES)  # bounded: a bomb stops at the tables' size
            except zlib.error as exc:
                raise MixStateError(f"client-mix record of {service!r} is corrupt: {exc}") from None
            if not d.eof or d.unconsumed_tail or d.unused_data:
                raise MixStateError(f"client-mix record of {service!r} is corrupt: not one table-sized stream")
        elif enc == 0:
            raw = body
        else:
            raise MixStateError(f"client-mix record of {service!r} has unknown encoding {enc}")
        if len(raw) != _TABLES:
            raise MixStateError(f"client-mix record of {service!r} holds {len(raw)} bytes of tables, not {_TABLES}")
        if max(raw) > 250:
            raise MixStateError(f"client-mix record of {service!r} holds days beyond 250")
        self._nets[service] = bytearray(raw[:_NET_SLOTS])
        self._asns[service] = bytearray(raw[_NET_SLOTS:])
        self._dirty.pop(service, None)

    def known_net_share(self, service: str, ips: list[str], day: int) -> float:
        """Share of ``ips`` whose network ``service``'s table saw on a day before ``day`` (days since the
        epoch), read-only: what the window's ``known_net_share`` is made of (tests, diagnostics)."""
        nets = self._nets.get(service)
        if nets is None or not ips:
            return 0.0
        d = day % 250 + 1
        known = 0
        for ip in ips:
            seen = nets[zlib.crc32(_network(ip).encode()) & (_NET_SLOTS - 1)]
            if seen != 0 and seen != d:
                known += 1
        return known / len(ips)

    def bytes_per_service(self) -> int:
        """Fixed tables plus the bound on two open windows' sampled requests (a reference and a
        float each, the decoded message itself being the batch's) and one window's followed clients."""
        return _NET_SLOTS + _ASN_SLOTS + 2 * self.max_rows * 72 + self.max_clients * 400


class CapacityState:
    """Per service: usual hosts serving and the load carried at usual latency (EW means, a few floats).

    ``hosts`` is the EW mean number of hosts that served in unflagged
    windows; ``load_p95`` the EW mean of the rate in the busiest unflagged
    windows (those above the current estimate pull it up fast, the others
    slowly): the top of the service's load-to-latency curve it has been seen
    to carry without a latency anomaly.
    """

    __slots__ = ("n", "hosts", "peak_rate", "p95", "r4xx")

    def __init__(self) -> None:
        self.n = 0
        self.hosts = 0.0
        self.peak_rate = 0.0
        self.p95 = 0.0
        self.r4xx = 0.0  # usual share of 4xx answers (auth failures among them)

    def learn(self, n_hosts: int, rate: float, p95: float, r4xx: float = 0.0) -> None:
        self.n += 1
        a = max(0.02, 1.0 / self.n)
        self.hosts += a * (n_hosts - self.hosts)
        self.r4xx += a * (r4xx - self.r4xx)
        if rate > self.peak_rate:
            self.peak_rate += 0.2 * (rate - self.peak_rate)
        else:
            self.peak_rate += 0.0005 * (rate - self.peak_rate)
        if p95 > 0:  # slow: a saturation that creeps up over an hour must not become the usual
            self.p95 += max(0.003, 1.0 / self.n) * (math.log(p95) - self.p95)


#: The cause model's inputs, in order (see :func:`detectors.cause_model.feature_vector`).
FEATURE_NAMES: tuple[str, ...] = (
    "log_rate_ratio", "log_p95_ratio", "error_5xx", "ratio_4xx", "ratio_429",
    "slow_host_share", "hosts_ratio", "load_vs_peak",
    "d_hosting", "d_home_country", "d_top10", "d_top_endpoint", "d_new_clients", "d_top_agent", "log_rpc_ratio",
    "rpc_p90", "heavy_share", "single_endpoint_share", "asset_ratio", "assetless_share",
    "login_fail", "auth_fail", "d_login_share", "known_net_share", "known_asn_share", "ua_churn", "bot_share",
    "disk_on_slow_host", "disk_anywhere",
)
