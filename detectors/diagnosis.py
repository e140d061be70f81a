"""Diagnosis: the suspected cause of what the detectors flagged, with the numbers.

For each service window the detectors flagged, :class:`Diagnoser` weighs
three families of evidence:

* **load**: request rate against the usual for this time of week;
* **population**: who sends the traffic, against who usually does (share of
  hosting networks, of the usual country, of the top 10 sources, of the top
  endpoint, requests per client, user-agent concentration) — real users
  look like the usual users, even when many are new;
* **harm and its spread**: p95 latency and 5xx ratio on the service and on
  each host, and recent disk-failure signals on those hosts.

and names one cause:

``suspected_attack``
    more traffic than usual *and* a population that real users do not make
    (even when it also saturates the servers: a flood is not a load peak);
``capacity_saturation``
    more traffic than usual from the usual population, and the service's
    tail slows down or it fails on most of its hosts; or fewer hosts serve
    than usually do (named in the evidence) and the others saturate;
``disk_failure``
    the slowdown sits on the hosts whose drive is failing, not on the others;
``unknown``
    anything else: anomalous, cause not established. A wrong cause is worse
    than none.

Composition baselines are learned per service from windows that were not
flagged (bounded: a few floats per service).
"""

from __future__ import annotations

import copy
import math
import struct
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import ClassVar
from zoneinfo import ZoneInfo

from .cause_features import CapacityState, ClientMix, MixFeatures
from .cause_model import CauseModel, MixBaseline, feature_vector
from .features import WindowFeatures
from .model import Evidence, Verdict

__all__ = ["Diagnoser", "Finding", "CompositionState", "DiskSignal"]

_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


@dataclass(slots=True)
class Finding:
    """A diagnosed problem; the alert lifecycle turns findings into alerts."""

    labels: dict[str, str | None]
    cause: str
    confidence: float
    severity: str
    title: str
    evidence: list[Evidence]
    anomalies: list[str]
    ts: float
    hold: float | None = None  # how long the finding stays true without news (None: router default)
    pending: float | None = None  # how long it must persist before it fires (None: router default)
    onset: float | None = None  # when the problem began, if earlier than ``ts`` (the alert's starts_at)
    features: dict[str, float] | None = None  # the cause model's inputs (kept by fingerprint for labels)


@dataclass(slots=True)
class DiskSignal:
    """The latest failure signal of a drive, as the diagnosis remembers it."""

    host: str
    disk: str
    ts: float
    score: float
    evidence: list[str] = field(default_factory=list)
    anomaly_id: str = ""
    replaced_at: float | None = None  # the drive's failure record (it was replaced)

    def to_record(self) -> dict:
        """The signal as the worker that read the drive shares it with the others (JSON)."""
        return {"host": self.host, "disk": self.disk, "ts": self.ts, "score": self.score,
                "evidence": self.evidence, "anomaly_id": self.anomaly_id, "replaced_at": self.replaced_at}

    @classmethod
    def from_record(cls, rec: dict) -> DiskSignal:
        """Inverse of :meth:`to_record`; KeyError/TypeError/ValueError on a record that is not one."""
        replaced = rec["replaced_at"]
        evidence = rec["evidence"]
        if not isinstance(evidence, list):
            raise TypeError("evidence is not a list")
        return cls(str(rec["host"]), str(rec["disk"]), float(rec["ts"]), float(rec["score"]),
                   [str(e) for e in evidence], str(rec["anomaly_id"]),
                   None if replaced is None else float(replaced))

    def newer_than(self, other: DiskSignal) -> bool:
        """Is this a later state of the same drive's signal (a new reading, or its replacement)?"""
        return (self.ts, self.replaced_at is not None, self.replaced_at or 0.0) > (
            other.ts, other.replaced_at is not None, other.replaced_at or 0.0)

    def explains(self, t: float, window: float, grace: float) -> bool:
        """Can this drive explain its host's requests at event time ``t``?

        The disk-health and request topics are read independently and may be
        hours apart in event time, so the test is on ``t``, not on arrival.
        """
        if self.replaced_at is not None and t > self.replaced_at + grace:
            return False
        return t - self.ts <= window


class CompositionState:
    """Usual traffic composition of one service: EW means of a few shares (about 80 bytes)."""

    __slots__ = ("n", "hosting", "top10", "endpoint", "log_rpc", "country_share", "agent", "new", "country")
    _FMT: ClassVar[struct.Struct] = struct.Struct("<I7f2s")

    def __init__(self) -> None:
        self.n = 0
        self.hosting = self.top10 = self.endpoint = self.log_rpc = 0.0
        self.country_share = self.agent = self.new = 0.0
        self.country = ""

    def learn(self, f: WindowFeatures, alpha: float) -> None:
        if f.count == 0:
            return
        self.n += 1
        a = max(alpha, 1.0 / self.n)
        if not self.country and f.countries:
            self.country = next(iter(f.countries))
        main = f.countries.get(self.country, 0.0) if f.countries else 0.0
        for name, x in (
            ("hosting", f.hosting_share),
            ("top10", f.top10_share),
            ("endpoint", f.top_endpoint_share),
            ("log_rpc", math.log(max(f.requests_per_client, 1.0))),
            ("country_share", main),
            ("agent", f.top_user_agent_share),
            ("new", f.new_client_share),
        ):
            setattr(self, name, getattr(self, name) + a * (x - getattr(self, name)))

    def to_bytes(self) -> bytes:
        return self._FMT.pack(
            self.n, self.hosting, self.top10, self.endpoint, self.log_rpc,
            self.country_share, self.agent, self.new, self.country.encode()[:2],
        )

    @classmethod
    def from_bytes(cls, data: bytes | bytearray) -> CompositionState:
        s = cls()
        (s.n, s.hosting, s.top10, s.endpoint, s.log_rpc, s.country_share, s.agent, s.new, c) = cls._FMT.unpack(data)
        s.country = c.rstrip(b"\x00").decode()
        return s


#: Version of :meth:`Diagnoser.service_state_bytes`'s record, and its parts.
_SVC_STATE_VERSION = 1
_SVC_HEAD = struct.Struct("<BI")
_SVC_BASE = struct.Struct("<BIB")
_SVC_CAP = struct.Struct("<BI4d")
_SVC_F64 = struct.Struct("<d")


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def _num(x: float) -> str:
    if x >= 100:
        return f"{x:,.0f}"
    if x >= 10:
        return f"{x:.1f}".rstrip("0").rstrip(".")
    return f"{x:.2f}".rstrip("0").rstrip(".")


def _ms(x: float) -> str:
    return f"{x / 1000:.1f} s" if x >= 1000 else f"{x:.0f} ms"


def _ratio(traffic: Verdict | None) -> str:
    if traffic is None or traffic.expected <= 0:
        return "?x"
    return f"{traffic.value / traffic.expected:.1f}x"


_MODEL: CauseModel | None = None


def _shipped_model() -> CauseModel | None:
    """The model trained on the shipped table, once per process (a copy per Diagnoser: labels stay local)."""
    global _MODEL
    from .cause_model import TABLE

    if not TABLE.exists():
        return None
    if _MODEL is None:
        _MODEL = CauseModel.from_table()
    return copy.deepcopy(_MODEL)


def _when(ts: float, tz: str = "UTC") -> str:
    d = datetime.fromtimestamp(ts, UTC if tz == "UTC" else ZoneInfo(tz))
    return f"a {_DAYS[d.weekday()]} {d:%H:%M}" + (" UTC" if tz == "UTC" else f" ({tz})")


class Diagnoser:
    """Names the suspected cause of a service's flagged window (see module doc).

    Parameters
    ----------
    attack_threshold
        Population-shift score from which traffic is called an attack.
    spread_share
        Share of a service's hosts that must be slow for the slowdown to count
        as service-wide (saturation) rather than host-local.
    disk_window
        Seconds a drive's failure signal stays relevant to its host's requests.
    composition_alpha
        Learning rate of the composition baselines.
    composition_warmup
        Windows of composition learned before population evidence is used.
    harm_traffic_z, harm_traffic_ratio
        When latency or errors are flagged, a rate this far above the usual
        (z and ratio) counts as "more traffic" even below the traffic
        detector's own threshold.
    mild_load, mild_pending_for
        A saturation at less than ``mild_load`` times the usual load must
        persist ``mild_pending_for`` seconds before it pages (a rolling
        restart slows every host for a minute or two at the usual load).
    host_memory
        Seconds a host that served a quiet window counts as one of the pool:
        fewer hosts serving than usual names those missing from it.
    """

    def __init__(
        self,
        attack_threshold: float = 1.0,
        spread_share: float = 0.6,
        disk_window: float = 3 * 86400.0,
        composition_alpha: float = 0.02,
        composition_warmup: int = 30,
        harm_traffic_z: float = 2.5,
        harm_traffic_ratio: float = 1.8,
        unknown_pending_for: float = 180.0,
        disk_pending_for: float = 60.0,
        replaced_grace: float = 1800.0,
        timezone: str = "UTC",
        use_model: bool = True,
        model_min_proba: float = 0.5,
        benign_min_proba: float = 0.6,
        trigger_min_proba: float = 0.9,
        model_pending_for: float = 120.0,
        mix_sample: int = 8,
        mix_every: int = 10,
        cause_model: CauseModel | None = None,
        mild_load: float = 1.3,
        mild_pending_for: float = 150.0,
        host_memory: float = 3600.0,
    ) -> None:
        self.attack_threshold = attack_threshold
        self.spread_share = spread_share
        self.disk_window = disk_window
        self.composition_alpha = composition_alpha
        self.composition_warmup = composition_warmup
        self.harm_traffic_z = harm_traffic_z
        self.harm_traffic_ratio = harm_traffic_ratio
        self.unknown_pending_for = unknown_pending_for
        self.disk_pending_for = disk_pending_for
        self.replaced_grace = replaced_grace
        self.timezone = timezone
        self.use_model = use_model
        self.model_min_proba = model_min_proba
        self.benign_min_proba = benign_min_proba
        self.trigger_min_proba = trigger_min_proba
        self.model_pending_for = model_pending_for
        self.mix_sample = mix_sample  # the client sample of the mix features (the engine's ClientMix reads it)
        self.cause_model = cause_model if cause_model is not None or not use_model else _shipped_model()
        self.mix_every = mix_every
        self.mild_load = mild_load
        self.mild_pending_for = mild_pending_for
        self.host_memory = host_memory
        self._mix_base: dict[str, MixBaseline] = {}
        self._n_windows: dict[str, int] = {}
        self._capacity: dict[str, CapacityState] = {}
        self._hosts_seen: dict[str, dict[str, float]] = {}  # per service: host -> end of its last quiet window
        # When a list: every candidate window's (service, start, end, slow hosts, features) is appended
        # (benchmarks/incidents.py writes the training table from it).
        self.recorder: list | None = None

    # -- per-service learned state, for checkpoints ----------------------------
    def service_state_bytes(self, service: str) -> bytes | None:
        """The checkpoint record of what this diagnoser learned of ``service`` (None: nothing).

        Its usual client mix (:class:`MixBaseline`), its capacity
        (:class:`CapacityState`), the hosts that served its quiet windows and
        when, and its window count (the phase of ``mix_every``). Layout
        (little-endian): ``<version u8>``, ``<windows u32>``; the baseline:
        ``<present u8><n u32><fields u8>`` and that many f64; the capacity:
        ``<present u8><n u32>`` and 4 f64; then ``<hosts u8>`` and per host
        ``<name length u8><name utf-8><last quiet window end f64>``. At most 64
        hosts are kept (as :meth:`_learn_usual` does), names over 255 bytes are
        left out: under 17 KB in all, about 170 bytes for a service on 4 hosts.
        """
        base = self._mix_base.get(service)
        cap = self._capacity.get(service)
        seen = self._hosts_seen.get(service)
        n_win = self._n_windows.get(service, 0)
        if base is None and cap is None and not seen and not n_win:
            return None
        out = [_SVC_HEAD.pack(_SVC_STATE_VERSION, min(n_win, 0xFFFFFFFF))]
        if base is not None:
            out.append(_SVC_BASE.pack(1, min(base.n, 0xFFFFFFFF), len(base.values)))
            out.append(struct.pack(f"<{len(base.values)}d", *base.values))
        else:
            out.append(_SVC_BASE.pack(0, 0, 0))
        if cap is not None:
            out.append(_SVC_CAP.pack(1, min(cap.n, 0xFFFFFFFF), cap.hosts, cap.peak_rate, cap.p95, cap.r4xx))
        else:
            out.append(_SVC_CAP.pack(0, 0, 0.0, 0.0, 0.0, 0.0))
        hosts = [(h.encode(), t) for h, t in (seen or {}).items()]
        hosts = [(h, t) for h, t in hosts if len(h) <= 255][:64]
        out.append(bytes((len(hosts),)))
        for h, t in hosts:
            out.append(bytes((len(h),)) + h + _SVC_F64.pack(t))
        return b"".join(out)

    def load_service_state(self, service: str, data: bytes | bytearray) -> None:
        """Restore what :meth:`service_state_bytes` wrote; ``ValueError`` (nothing changed) when unreadable."""
        b = bytes(data)
        try:
            version, n_win = _SVC_HEAD.unpack_from(b, 0)
            if version != _SVC_STATE_VERSION:
                raise ValueError(f"version {version}, this worker reads version {_SVC_STATE_VERSION}")
            off = _SVC_HEAD.size
            has_base, base_n, k = _SVC_BASE.unpack_from(b, off)
            off += _SVC_BASE.size
            base: MixBaseline | None = None
            if has_base:
                base = MixBaseline()
                if k != len(base.values):
                    raise ValueError(f"a client-mix baseline of {k} fields, not {len(base.values)}")
                base.n = base_n
                base.values = list(struct.unpack_from(f"<{k}d", b, off))
                off += 8 * k
            has_cap, cap_n, hosts_, peak, p95, r4xx = _SVC_CAP.unpack_from(b, off)
            off += _SVC_CAP.size
            cap: CapacityState | None = None
            if has_cap:
                cap = CapacityState()
                cap.n, cap.hosts, cap.peak_rate, cap.p95, cap.r4xx = cap_n, hosts_, peak, p95, r4xx
            n_hosts = b[off]
            off += 1
            seen: dict[str, float] = {}
            for _ in range(n_hosts):
                ln = b[off]
                name = b[off + 1:off + 1 + ln].decode()
                if len(name.encode()) != ln:
                    raise ValueError("truncated host name")
                off += 1 + ln
                seen[name] = _SVC_F64.unpack_from(b, off)[0]
                off += _SVC_F64.size
            if off != len(b):
                raise ValueError(f"{len(b) - off} trailing bytes")
        except (struct.error, IndexError, UnicodeDecodeError) as exc:
            raise ValueError(f"diagnosis state of {service!r} refused: corrupt ({len(b)} bytes): {exc}") from None
        except ValueError as exc:
            raise ValueError(f"diagnosis state of {service!r} refused: {exc}") from None
        self.forget_service(service)
        if base is not None:
            self._mix_base[service] = base
        if cap is not None:
            self._capacity[service] = cap
        if seen:
            self._hosts_seen[service] = seen
        if n_win:
            self._n_windows[service] = n_win

    def forget_service(self, service: str) -> None:
        """Drop what was learned of ``service`` (evicted, or another worker reads it now)."""
        self._mix_base.pop(service, None)
        self._capacity.pop(service, None)
        self._hosts_seen.pop(service, None)
        self._n_windows.pop(service, None)

    # -- population ---------------------------------------------------------
    def population_shift(self, f: WindowFeatures, base: CompositionState | None) -> tuple[float, list[Evidence]]:
        """Score (0 = the usual users) and evidence of how the traffic's origin changed."""
        if base is None or base.n < self.composition_warmup or f.count == 0:
            return 0.0, []
        score = 0.0
        ev: list[Evidence] = []
        d = f.hosting_share - base.hosting
        if d >= 0.1:
            score += min(2.0, d / 0.2)
            nets = ", ".join(f"{k} {_pct(v)}" for k, v in list(f.hosting_networks.items())[:3])
            ev.append(Evidence("hosting_share", f.hosting_share, base.hosting,
                               f"{_pct(f.hosting_share)} of requests from hosting networks ({nets}) against {_pct(base.hosting)} usual"))
        main = f.countries.get(base.country, 0.0) if f.countries else base.country_share
        d = base.country_share - main
        if base.country and d >= 0.1:
            score += min(2.0, d / 0.2)
            others = ", ".join(f"{k} {_pct(v)}" for k, v in f.countries.items() if k != base.country and v >= 0.01)
            ev.append(Evidence("home_country_share", main, base.country_share,
                               f"{_pct(main)} of requests from {base.country} against {_pct(base.country_share)} usual (now {others})"))
        d = f.top10_share - base.top10
        if d >= 0.15:
            score += min(1.5, d / 0.2)
            ev.append(Evidence("top10_sources_share", f.top10_share, base.top10,
                               f"top 10 sources send {_pct(f.top10_share)} of requests against {_pct(base.top10)} usual"))
        d = f.top_endpoint_share - base.endpoint
        if d >= 0.2:
            score += min(1.0, d / 0.3)
            ev.append(Evidence("top_endpoint_share", f.top_endpoint_share, base.endpoint,
                               f"{f.top_endpoint} takes {_pct(f.top_endpoint_share)} of requests against {_pct(base.endpoint)} usual"))
        rpc = f.requests_per_client
        usual_rpc = math.exp(base.log_rpc)
        if rpc >= 3 * usual_rpc and rpc >= 3:
            score += min(1.0, math.log(rpc / usual_rpc) / math.log(9))
            ev.append(Evidence("requests_per_client", rpc, usual_rpc,
                               f"{_num(rpc)} requests per client against {_num(usual_rpc)} usual"))
        d = f.top_user_agent_share - base.agent
        if d >= 0.25:
            score += min(0.5, d / 0.5)
            ev.append(Evidence("top_user_agent_share", f.top_user_agent_share, base.agent,
                               f"one user agent makes {_pct(f.top_user_agent_share)} of requests against {_pct(base.agent)} usual"))
        return score, ev

    def usual_population(self, f: WindowFeatures, base: CompositionState | None) -> Evidence | None:
        if base is None or base.n < self.composition_warmup or not base.country:
            return None
        main = f.countries.get(base.country, 0.0)
        extra = ""
        if f.new_client_share >= base.new + 0.1:
            extra = f", {_pct(f.new_client_share)} first-time clients against {_pct(base.new)} usual"
        return Evidence("home_country_share", main, base.country_share,
                        f"{_pct(main)} of requests from {base.country} as usual ({_pct(base.country_share)}), "
                        f"{_pct(f.hosting_share)} from hosting networks{extra}: the usual users")

    # -- main entry ---------------------------------------------------------
    def diagnose(
        self,
        f: WindowFeatures,
        traffic: Verdict | None,
        service_latency: list[Verdict],
        host_latency: dict[str, list[Verdict]],
        composition: CompositionState | None,
        disks: dict[str, list[DiskSignal]],
        anomaly_ids: list[str],
        mix: MixFeatures | ClientMix | None = None,
    ) -> list[Finding]:
        """Findings for one service window; empty when nothing is flagged.

        The rules below name a cause and give the evidence; the cause model
        (when there is one) then names the cause from the same window's
        features, and says when the window is benign (nothing pages).
        """
        svc = f.service
        svc_harm = [v for v in service_latency if v.flagged]
        slow_hosts = sorted(h for h, vs in host_latency.items() if any(v.flagged for v in vs))
        t_high = traffic is not None and traffic.value > traffic.expected and (
            traffic.flagged
            # When the service is hurting, a clear rise short of the traffic
            # detector's own threshold still explains it.
            or (bool(svc_harm or slow_hosts) and not traffic.warming_up and traffic.z >= self.harm_traffic_z
                and traffic.value >= self.harm_traffic_ratio * traffic.expected)
        )
        t_low = traffic is not None and traffic.flagged and traffic.value < traffic.expected
        n_hosts = max(1, len(f.hosts))
        mix_base = self._mix_base.get(svc)
        if isinstance(mix, ClientMix):
            # Read the window's client mix only where it can matter: candidates, a rise
            # that the mix may explain, and one quiet window in ``mix_every`` for the baselines.
            self._n_windows[svc] = n_win = self._n_windows.get(svc, 0) + 1
            rising = (f.count >= 100 and traffic is not None and traffic.expected > 0
                      and traffic.value >= 1.3 * traffic.expected)
            if t_high or t_low or svc_harm or slow_hosts or rising or (not anomaly_ids and n_win % self.mix_every == 0):
                mix = mix.close(svc, f.start)
            else:
                mix.drop(svc, f.start)
                mix = None
        mix_flag = (self._mix_flagged(traffic, mix, mix_base) or self._curve_flagged(f)
                    or self._fail_flagged(f, traffic) or self._focus_flagged(f, traffic, composition))
        if not (t_high or t_low or svc_harm or slow_hosts or mix_flag):
            if not anomaly_ids:
                self._learn_usual(f, mix)
            return []
        if mix_flag and not t_high and traffic is not None and traffic.value > traffic.expected:
            t_high = True  # a rise short of the traffic threshold, carried by who sends it
        widespread = len(slow_hosts) >= max(2, math.ceil(self.spread_share * n_hosts)) or (
            bool(svc_harm) and len(slow_hosts) > n_hosts / 2
        )
        ev: list[Evidence] = []
        if traffic is not None and (t_high or t_low):
            ratio = traffic.value / traffic.expected if traffic.expected > 0 else float("inf")
            ev.append(Evidence("request_rate", traffic.value, traffic.expected,
                               f"{_num(traffic.value)} req/s against {_num(traffic.expected)} usual for {_when(f.start, self.timezone)} ({ratio:.1f}x)"))
        harm_ev = self._harm_evidence(f, svc_harm, host_latency, slow_hosts)

        # Disk: the slowdown sits on hosts with a failing drive, not elsewhere.
        sick = {h: [s for s in sigs if s.explains(f.start, self.disk_window, self.replaced_grace)]
                for h, sigs in disks.items() if h in f.hosts}
        sick = {h: sigs for h, sigs in sick.items() if sigs}
        sick_slow = [h for h in slow_hosts if h in sick]
        healthy_slow = [h for h in slow_hosts if h not in sick]
        x = self._features(f, traffic, service_latency, slow_hosts, n_hosts, composition, mix, mix_base,
                           bool(sick_slow), bool(sick))
        if self.recorder is not None:
            self.recorder.append((svc, f.start, f.end, slow_hosts, x))
        if sick_slow and len(healthy_slow) <= max(0, (n_hosts - len(sick)) // 3) and not t_high:
            out = []
            for h in sick_slow:
                sig = max(sick[h], key=lambda s: s.ts)
                dev = [e for e in harm_ev if h in e.text] or harm_ev[:1]
                dev += [Evidence("disk_failure_score", sig.score, 0.0, t) for t in sig.evidence[:4]]
                others = n_hosts - 1
                dev.append(Evidence("hosts_affected", len(slow_hosts), 0.0,
                                    f"only {', '.join(slow_hosts)} slow; the other {others} host(s) of {svc} serve normally"))
                conf = min(0.95, 0.6 + 0.35 * sig.score)
                out.append(Finding(
                    {"service": svc, "host": h, "disk": sig.disk}, "disk_failure", conf, "critical",
                    f"Failing drive {sig.disk} on {h} slows {svc}: suspected disk failure",
                    dev, anomaly_ids + ([sig.anomaly_id] if sig.anomaly_id else []), f.end,
                    pending=self.disk_pending_for, features=x,
                ))
            return out

        shift, pop_ev = self.population_shift(f, composition) if t_high else (0.0, [])
        mix_ev = self._mix_evidence(mix, mix_base)
        ratio_txt = f"{traffic.value / max(traffic.expected, 1e-9):.1f}x" if traffic is not None and t_high else ""
        hurt = bool(svc_harm or widespread)
        if (t_high and not widespread and not any(v.signal == "error_ratio_5xx" for v in svc_harm)
                and self._robots_explain(traffic, mix, mix_base)):
            return []  # a crawler that says what it is, nothing failing, no host saturated: nothing to page
        lost = self._lost_hosts(f) if (svc_harm or widespread) else []
        rules = self._rules(f, traffic, t_high, t_low, svc_harm, slow_hosts, widespread, shift, pop_ev, mix_ev,
                            ev, harm_ev, ratio_txt, composition, anomaly_ids, lost)
        for r in rules:
            r.features = x
        if self.cause_model is None:
            return rules if anomaly_ids else []  # the mix and curve triggers feed the model only
        cause, p = self.cause_model.predict(x)
        if lost and rules[0].cause == "capacity_saturation" and cause != "capacity_saturation":
            # Hosts missing from the pool and the rest saturated by the usual users: the pool
            # shrank, which the rules read directly; the model, trained on few such windows,
            # does not overrule the count of hosts serving (it may confirm it, below).
            return rules
        if slow_hosts and not widespread and not svc_harm and not t_high:
            # A slowdown local to a few hosts: a fault of those hosts (their drives above
            # all) or nothing worth paging, never a load or an attack on the service.
            probs = self.cause_model.proba(x)
            pd, pb = probs["disk_failure"], probs["benign"]
            cause, p = ("disk_failure", pd / (pd + pb)) if pd >= pb else ("benign", pb / (pd + pb))
        conf = round(self.cause_model.confidence(p), 3)
        rule_cause = rules[0].cause
        if cause == "benign":
            # The model may keep quiet what the rules could not explain (or what only its own
            # triggers raised), never a cause the rules read from the window itself: a model
            # learned on simulated worlds must not mute a flood from hosting networks.
            if not anomaly_ids or (rule_cause == "unknown" and (
                    p >= max(0.8, self.benign_min_proba)
                    or (p >= self.benign_min_proba and not (svc_harm and widespread)))):
                return []
            return rules
        if not anomaly_ids and p < self.trigger_min_proba:
            return []  # only the mix or the load curve raised the window: name a cause or stay quiet
        if p < self.model_min_proba:
            return rules
        why = [Evidence(f"model:{name}", x[name], 0.0, f"{name} {x[name]:+.2f} weighs for {cause.replace('_', ' ')}")
               for name, _ in self.cause_model.contributions(x, cause)]
        if cause == rule_cause:
            for r in rules:
                r.confidence = conf
                r.evidence = r.evidence + why
            return rules
        if cause == "disk_failure":
            if not slow_hosts or widespread:
                return rules
            return [Finding({"service": svc, "host": h, "disk": None}, "disk_failure", conf, "critical",
                            f"{h} of {svc} slow alone, no drive signal yet: suspected disk failure on {h}",
                            ev + [e for e in harm_ev if h in e.text] + why + [Evidence(
                                "hosts_affected", len(slow_hosts), 0.0,
                                f"only {', '.join(slow_hosts)} of {n_hosts} hosts slow: a host fault, not the load")],
                            anomaly_ids, f.end, pending=self.disk_pending_for, features=x) for h in slow_hosts]
        sev = "critical" if hurt else "warning"
        # Where the rules found no cause, the model's must hold a while before it pages
        # (a flagged minute at a peak is not yet a saturation); the alert still starts at onset.
        pending = self.model_pending_for if rule_cause == "unknown" else None
        if cause == "suspected_attack":
            title = (f"Traffic {ratio_txt or _ratio(traffic)} usual on {svc}"
                     f"{' and saturating it' if hurt else ''}: suspected attack")
            evidence = ev + pop_ev + mix_ev + harm_ev + why
        else:
            pop = self.usual_population(f, composition)
            title = (f"{svc} saturated at {_ratio(traffic)} its usual load"
                     f"{self._hosts_note(f, svc)}: capacity saturation")
            evidence = ev + ([pop] if pop is not None else []) + harm_ev + why
        return [Finding({"service": svc, "host": None, "disk": None}, cause, conf, sev, title, evidence,
                        anomaly_ids, f.end, pending=pending, features=x)]

    def _rules(self, f: WindowFeatures, traffic: Verdict | None, t_high: bool, t_low: bool,
               svc_harm: list[Verdict], slow_hosts: list[str], widespread: bool, shift: float,
               pop_ev: list[Evidence], mix_ev: list[Evidence], ev: list[Evidence], harm_ev: list[Evidence],
               ratio_txt: str, composition: CompositionState | None, anomaly_ids: list[str],
               lost: list[str] | None = None) -> list[Finding]:
        """The hand-written rules: the fallback when no model is confident, and the explanation."""
        svc = f.service
        automation = any(e.signal in ("login_fail", "heavy_share", "ua_churn") for e in mix_ev)
        if lost and not automation and (shift < self.attack_threshold or not t_high):
            # Capacity loss: hosts that usually serve are gone and the others saturate under the
            # usual users' load (more load or not): the pool shrank, not the demand went wild.
            cap = self._capacity[svc]
            pop = self.usual_population(f, composition)
            n_serving = len(f.hosts)
            hosts_ev = Evidence("hosts_serving", n_serving, cap.hosts,
                                f"{n_serving} of {cap.hosts:.0f} usual hosts serving "
                                f"({', '.join(lost[:4])} stopped serving): the others carry the load")
            return [Finding({"service": svc, "host": None, "disk": None}, "capacity_saturation",
                            0.85 if pop is not None else 0.7, "critical",
                            f"{svc} saturated at {_ratio(traffic)} its usual load, {n_serving} hosts serving "
                            f"against {cap.hosts:.0f} usual: capacity saturation",
                            [hosts_ev] + ev + ([pop] if pop is not None else []) + harm_ev, anomaly_ids, f.end)]
        if t_high and shift >= self.attack_threshold:
            conf = min(0.97, 0.55 + 0.15 * shift)
            sev = "critical" if (svc_harm or widespread) else "warning"
            hurt = " and saturating it" if (svc_harm or widespread) else ""
            return [Finding({"service": svc, "host": None, "disk": None}, "suspected_attack", conf, sev,
                            f"Traffic {ratio_txt} usual on {svc}{hurt}: suspected attack",
                            ev + pop_ev + mix_ev + harm_ev, anomaly_ids, f.end)]
        if t_high and (svc_harm or widespread):
            pop = self.usual_population(f, composition)
            conf = 0.8 if pop is not None else 0.6
            if pop is not None:
                ev.append(pop)
            # Slow at hardly more than the usual load: a saturation or a rolling restart (a
            # deploy slows every host for a minute or two); it must last before it pages.
            mild = traffic is None or traffic.expected <= 0 or traffic.value < self.mild_load * traffic.expected
            return [Finding({"service": svc, "host": None, "disk": None}, "capacity_saturation", conf, "critical",
                            f"Traffic {ratio_txt} usual on {svc}, servers saturated: capacity saturation",
                            ev + harm_ev, anomaly_ids, f.end,
                            pending=self.mild_pending_for if mild else None)]
        # Cause not established.
        if slow_hosts and not widespread and not svc_harm:
            return [Finding({"service": svc, "host": h, "disk": None}, "unknown", 0.3, "warning",
                            f"{h} of {svc} slow, cause not established",
                            ev + [e for e in harm_ev if h in e.text], anomaly_ids, f.end,
                            pending=self.unknown_pending_for) for h in slow_hosts]
        if t_high:
            what = f"Traffic {ratio_txt} usual on {svc}, served normally"
        elif t_low:
            what = f"Traffic on {svc} far below usual"
        else:
            what = f"{svc} slow or failing without more traffic than usual"
        sev = "critical" if (svc_harm and widespread) else "warning"
        return [Finding({"service": svc, "host": None, "disk": None}, "unknown", 0.3, sev,
                        f"{what}: cause not established", ev + mix_ev + harm_ev, anomaly_ids, f.end,
                        pending=self.unknown_pending_for)]

    # -- the cause model's inputs ------------------------------------------
    def _mix_flagged(self, traffic: Verdict | None, mix: MixFeatures | None, base: MixBaseline | None) -> bool:
        """A rise short of the traffic threshold that the client mix says is automation."""
        if mix is None or base is None or base.n < 30 or mix.requests < 30 or traffic is None:
            return False
        if traffic.warming_up or traffic.value < 1.3 * traffic.expected:
            return False
        return (mix.login_fail - base.usual("login_fail") >= 0.25
                or mix.heavy_share - base.usual("heavy_share") >= 0.3
                or (mix.assetless_share - base.usual("assetless_share") >= 0.3
                    and base.usual("asset_ratio") >= 0.1))

    def _curve_flagged(self, f: WindowFeatures) -> bool:
        """Latency well above the service's slow baseline while the load is near the top of
        its curve: a saturation creeping up faster than the latency detector notices."""
        cap = self._capacity.get(f.service)
        if cap is None or cap.n < 60 or f.count < 30 or f.p95_ms <= 0 or cap.peak_rate <= 0:
            return False
        return math.log(f.p95_ms) - cap.p95 >= math.log(2.0) and f.rate >= 0.8 * cap.peak_rate

    def _fail_flagged(self, f: WindowFeatures, traffic: Verdict | None) -> bool:
        """A modest rise carried by failing requests (every request counted, no sample):
        credential stuffing adds a third to the volume and most of it fails with 401."""
        cap = self._capacity.get(f.service)
        if cap is None or cap.n < 60 or f.count < 50 or traffic is None or traffic.expected <= 0:
            return False
        return traffic.value >= 1.2 * traffic.expected and f.ratio_4xx >= cap.r4xx + 0.08

    def _focus_flagged(self, f: WindowFeatures, traffic: Verdict | None, comp: CompositionState | None) -> bool:
        """A modest rise concentrated on one endpoint (every request counted): a botnet on
        login or search, or a newsletter's link; the model tells which."""
        if comp is None or comp.n < self.composition_warmup or f.count < 50 or traffic is None:
            return False
        if traffic.expected <= 0 or traffic.value < 1.2 * traffic.expected:
            return False
        return f.top_endpoint_share >= comp.endpoint + 0.2

    def _learn_usual(self, f: WindowFeatures, mix: MixFeatures | None) -> None:
        svc = f.service
        if mix is not None and mix.requests:
            b = self._mix_base.get(svc)
            if b is None:
                b = self._mix_base[svc] = MixBaseline()
            b.learn(mix, self.composition_alpha)
        cap = self._capacity.get(svc)
        if cap is None:
            cap = self._capacity[svc] = CapacityState()
        if f.count:
            cap.learn(len(f.hosts), f.rate, f.p95_ms, f.ratio_4xx)
            seen = self._hosts_seen.get(svc)
            if seen is None:
                seen = self._hosts_seen[svc] = {}
            for h in f.hosts:
                if h not in seen and len(seen) >= 64:
                    # Full: hosts not seen for host_memory (renamed pods, a retired pool) make room.
                    for old in [o for o, t in seen.items() if f.end - t > self.host_memory]:
                        del seen[old]
                if h in seen or len(seen) < 64:
                    seen[h] = f.end

    def _lost_hosts(self, f: WindowFeatures) -> list[str]:
        """Hosts that served the service's quiet windows of the last hour and serve none of this
        window, when fewer hosts serve than usual (CapacityState's count): a pool that shrank."""
        cap = self._capacity.get(f.service)
        # Three quarters of a host under the usual (a running mean): a whole host gone, not a
        # quiet host that serves only some windows of a pool of 3.5 on average.
        if cap is None or cap.n < 30 or f.count < 30 or len(f.hosts) > cap.hosts - 0.75:
            return []
        seen = self._hosts_seen.get(f.service) or {}
        gone = sorted(h for h, t in seen.items() if h not in f.hosts and f.start - t <= self.host_memory)
        return gone or [f"{cap.hosts - len(f.hosts):.0f} host(s)"]

    def _robots_explain(self, traffic: Verdict | None, mix: MixFeatures | None, base: MixBaseline | None) -> bool:
        """Is the rise carried by self-declared robots (a search engine's crawler)? Their share
        of the window covers most of what came on top of the usual, and nothing fails."""
        if traffic is None or traffic.expected <= 0 or mix is None or base is None or mix.requests < 20:
            return False
        extra = 1.0 - traffic.expected / max(traffic.value, 1e-9)
        return (mix.bot_share - base.usual("bot_share") >= max(0.2, 0.6 * extra)
                and mix.login_fail - base.usual("login_fail") < 0.15)

    def _features(self, f: WindowFeatures, traffic: Verdict | None, service_latency: list[Verdict],
                  slow_hosts: list[str], n_hosts: int, comp: CompositionState | None, mix: MixFeatures | None,
                  mix_base: MixBaseline | None, disk_slow: bool, disk_any: bool) -> dict[str, float]:
        cap = self._capacity.get(f.service)
        p95 = next((v for v in service_latency if v.signal == "latency_p95_ms"), None)
        composition: dict[str, float] = {}
        if comp is not None and comp.n >= self.composition_warmup and f.count:
            main = f.countries.get(comp.country, 0.0) if f.countries else comp.country_share
            composition = {
                "d_hosting": f.hosting_share - comp.hosting, "d_home_country": comp.country_share - main,
                "d_top10": f.top10_share - comp.top10, "d_top_endpoint": f.top_endpoint_share - comp.endpoint,
                "d_new_clients": f.new_client_share - comp.new, "d_top_agent": f.top_user_agent_share - comp.agent,
                "log_rpc_ratio": math.log(max(f.requests_per_client, 1.0)) - comp.log_rpc,
            }
        warm_cap = cap is not None and cap.n >= 30
        return feature_vector(
            rate_ratio=traffic.value / traffic.expected if traffic is not None and traffic.expected > 0 else 1.0,
            p95_ratio=p95.value / p95.expected if p95 is not None and p95.expected > 0 else 1.0,
            error_5xx=f.error_ratio_5xx, ratio_4xx=f.ratio_4xx, ratio_429=f.ratio_429,
            slow_host_share=len(slow_hosts) / n_hosts,
            hosts_ratio=len(f.hosts) / cap.hosts if warm_cap and cap is not None and cap.hosts > 0 else 1.0,
            load_vs_peak=f.rate / cap.peak_rate if warm_cap and cap is not None and cap.peak_rate > 0 else 0.5,
            composition=composition, mix=mix, base=mix_base,
            disk_on_slow_host=disk_slow, disk_anywhere=disk_any,
        )

    def _mix_evidence(self, mix: MixFeatures | None, base: MixBaseline | None) -> list[Evidence]:
        if mix is None or base is None or base.n < 20 or mix.requests < 20:
            return []
        out: list[Evidence] = []
        u = base.usual
        if u("asset_ratio") >= 0.1 and mix.asset_ratio <= 0.6 * u("asset_ratio"):
            out.append(Evidence("asset_ratio", mix.asset_ratio, u("asset_ratio"),
                                f"{mix.asset_ratio:.2f} asset requests per page view against {u('asset_ratio'):.2f} usual "
                                f"({_pct(mix.assetless_share)} of page views by clients that fetch none)"))
        if mix.login_fail - u("login_fail") >= 0.15:
            out.append(Evidence("login_fail", mix.login_fail, u("login_fail"),
                                f"{_pct(mix.login_fail)} of logins fail (401/403) against {_pct(u('login_fail'))} usual"))
        if u("known_net_share") - mix.known_net_share >= 0.15:
            out.append(Evidence("known_net_share", mix.known_net_share, u("known_net_share"),
                                f"{_pct(mix.known_net_share)} of requests from client networks seen on earlier days "
                                f"against {_pct(u('known_net_share'))} usual"))
        if mix.ua_churn - u("ua_churn") >= 0.5:
            out.append(Evidence("ua_churn", mix.ua_churn, u("ua_churn"),
                                f"{mix.ua_churn:.1f} user agents per busy client against {u('ua_churn'):.1f} usual"))
        if mix.heavy_share - u("heavy_share") >= 0.2:
            out.append(Evidence("heavy_share", mix.heavy_share, u("heavy_share"),
                                f"{_pct(mix.heavy_share)} of requests from clients with 10 or more a minute "
                                f"against {_pct(u('heavy_share'))} usual"))
        if mix.bot_share >= 0.2:
            out.append(Evidence("bot_share", mix.bot_share, u("bot_share"),
                                f"{_pct(mix.bot_share)} of requests from self-declared robots"))
        return out

    def _hosts_note(self, f: WindowFeatures, svc: str) -> str:
        cap = self._capacity.get(svc)
        if cap is not None and cap.n >= 30 and len(f.hosts) < cap.hosts - 0.5:
            return f", {len(f.hosts)} hosts serving against {cap.hosts:.0f} usual"
        return ""

    def _harm_evidence(self, f: WindowFeatures, svc_harm: list[Verdict],
                       host_latency: dict[str, list[Verdict]], slow_hosts: list[str]) -> list[Evidence]:
        out: list[Evidence] = []
        for v in svc_harm:
            if v.signal.startswith("latency_"):
                out.append(Evidence(v.signal, v.value, v.expected,
                                    f"{v.signal[8:11]} latency {_ms(v.value)} against {_ms(v.expected)} usual, "
                                    f"slow on {len(slow_hosts)} of {len(f.hosts) or 1} hosts"))
            else:
                out.append(Evidence(v.signal, v.value, v.expected,
                                    f"{_pct(v.value)} of requests fail with 5xx against {_pct(v.expected)} usual"))
        if len(slow_hosts) <= 3:
            for h in slow_hosts:
                for v in host_latency[h]:
                    if v.flagged and v.signal.startswith("latency_"):
                        out.append(Evidence(f"{v.signal}:{h}", v.value, v.expected,
                                            f"{v.signal[8:11]} latency on {h} {_ms(v.value)} against {_ms(v.expected)} usual"))
                    elif v.flagged:
                        out.append(Evidence(f"{v.signal}:{h}", v.value, v.expected,
                                            f"{_pct(v.value)} 5xx on {h} against {_pct(v.expected)} usual"))
        return out

    def disk_finding(self, sig: DiskSignal) -> Finding:
        """A drive flagged on its own reading: the drive's alert (labels host and disk).

        A ``warning``: a drive without user impact does not page; the alert
        of a service it slows (labels service, host and disk, from
        :meth:`diagnose`) is the ``critical`` one, and a route that groups
        ``disk_failure`` by host and disk puts both in one incident. Its
        ``hold`` is infinite: a failing drive stays an open problem whatever
        its later readings score, until it is replaced (the engine resolves
        it on its failure record or a new serial in its place). One flagged
        reading is enough (``pending`` 0): readings may be a day apart.
        """
        return Finding(
            {"service": None, "host": sig.host, "disk": sig.disk}, "disk_failure",
            min(0.95, 0.5 + 0.45 * sig.score), "warning",
            f"Drive {sig.disk} on {sig.host} shows failure signals: suspected disk failure",
            [Evidence("disk_failure_score", sig.score, 0.0, t) for t in sig.evidence[:6]],
            [sig.anomaly_id] if sig.anomaly_id else [], sig.ts, hold=math.inf, pending=0.0,
        )
