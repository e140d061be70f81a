"""The processing core: events in, anomalies and alert state changes out.

No Kafka and no Faust here: the worker's agents and ``tocsin backtest`` feed
the same :class:`Engine`, so a backtest shows exactly what the worker would
have done. Time is event time throughout.

Per-key models (traffic and latency per service and host, composition per
service, one sketch per drive; per service too the client mix's first-seen
tables of networks, ``mix:<service>``, and what the diagnoser learned of it,
``cause:<service>``) are kept in plain dicts of small objects;
:meth:`Engine.dirty_states` and :meth:`Engine.load_state` let the worker
checkpoint the changed ones to a Faust table and restore them.

The number of keys is capped (``DetectorsConfig.limits``): a flood of random
service, host or drive names evicts the least recently seen keys, young ones
first, or is refused, and is counted in :attr:`Engine.counts`
(``services.evicted``, ``services.forgotten``, ``services.refused``,
``requests.refused``, ``hosts.evicted``, ``drives.evicted``).
"""

from __future__ import annotations

import gc
import heapq
import logging
import math
import struct
from collections import Counter
from dataclasses import dataclass, field
from operator import attrgetter

from alerts.config import AlertingConfig
from alerts.lifecycle import AlertTracker
from alerts.model import Alert, fingerprint
from detectors.cause_features import ClientMix
from detectors.config import DetectorsConfig
from detectors.diagnosis import CompositionState, Diagnoser, DiskSignal
from detectors.disk import DiskFailureDetector, DriveState
from detectors.errors import DetectorError
from detectors.events import DiskHealthEvent, RequestBatch, RequestEvent
from detectors.features import WindowAggregator, WindowFeatures
from detectors.latency import LatencySpikeDetector, LatencyState
from detectors.model import Anomaly, Entity, Verdict, severity_for
from detectors.traffic import TrafficAnomalyDetector, TrafficState

__all__ = ["Engine", "Output", "tune_gc"]

_SERVICE = attrgetter("service")

log = logging.getLogger(__name__)

#: What reading a checkpoint record that is not one raises (corrupt, truncated, another version).
_BAD_RECORD = (ValueError, struct.error, KeyError, TypeError, IndexError, DetectorError)

#: Per-service checkpoint kinds, deleted from the store when the service is evicted or forgotten.
_SERVICE_KINDS = ("traffic", "latency", "composition", "mix", "cause")

#: A failing drive not heard from for this long is taken as gone (pulled, its host retired)
#: and its alert ends: an alert open until replaced must not outlive every trace of its drive.
_FAILING_SILENCE = 30 * 86400.0


def _usual_gap(state: DriveState) -> float:
    """A drive's mean gap between readings (a day when it had one)."""
    return (state.last_ts - state.first_ts) / (state.n - 1) if state.n > 1 else 86400.0


class _Watch:
    """When a failing drive was last heard from, its usual gap between readings, and since when it is watched."""

    __slots__ = ("last_ts", "gap", "since")

    def __init__(self, last_ts: float, gap: float, since: float) -> None:
        self.last_ts = last_ts
        self.gap = gap
        self.since = since  # -inf when restored: the first sweep after the restart sets it

    def heard(self, ts: float) -> None:
        # A redelivered or older reading says nothing about the gap (at-least-once delivery).
        if ts > self.last_ts:
            if self.last_ts > -math.inf:
                self.gap = ts - self.last_ts
            self.last_ts = ts

#: Allocations between two collections of the youngest generation (CPython: 700).
GC_GEN0 = 20_000


def tune_gc() -> None:
    """Set the cyclic collector for the engine's allocation pattern (``tocsin`` does it at start).

    A batch allocates thousands of short-lived lists and tuples (the columns,
    the groups), freed by reference counting; at CPython's default (every
    700 allocations) the collector keeps rescanning the long-lived windows
    and sketches and finds nothing to collect. Collecting every 20,000
    allocations keeps cyclic garbage bounded all the same.
    """
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GC_GEN0, gen1, gen2)


@dataclass(slots=True)
class Output:
    anomalies: list[Anomaly] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    # Drive signals that changed (flagged, replaced): the other workers need
    # them to diagnose their services (see :meth:`Engine.apply_signal`).
    signals: list[DiskSignal] = field(default_factory=list)

    def extend(self, other: Output) -> None:
        self.anomalies.extend(other.anomalies)
        self.alerts.extend(other.alerts)
        self.signals.extend(other.signals)

    def __bool__(self) -> bool:
        return bool(self.anomalies or self.alerts or self.signals)


class Engine:
    """Detectors, diagnosis and alert lifecycle for one worker (or one backtest)."""

    def __init__(self, detectors: DetectorsConfig | None = None, alerting: AlertingConfig | None = None) -> None:
        self.config = detectors or DetectorsConfig()
        self.alerting = alerting or AlertingConfig()
        c = self.config
        self.aggregator = WindowAggregator(window=c.window, lateness=c.lateness)
        # The cause model's client mix (a sample of clients; mix_sample 0: off).
        self.mix = ClientMix(window=c.window, sample_mod=c.diagnosis.mix_sample) if c.diagnosis.mix_sample else None
        self.diagnoser = Diagnoser(timezone=c.timezone, **c.diagnosis.model_dump())
        self.disk_detector = DiskFailureDetector(**c.disk)
        # The disk model shared by every drive (per drive model population,
        # learned weights) changed since the last checkpoint.
        self._disk_model_dirty = False
        self.tracker = AlertTracker(self.alerting.pending_for, self.alerting.keep_firing_for)
        self.limits = c.limits
        # Fewer requests than this in a window: no detector can flag it (their min_count).
        self._judge_min = min(c.traffic.min_count, c.latency.min_count)
        # The detectors of each service: one pair per distinct configuration, shared.
        self._det_of: dict[str, tuple[TrafficAnomalyDetector, LatencySpikeDetector]] = {}
        self._det_cache: dict[tuple, tuple[TrafficAnomalyDetector, LatencySpikeDetector]] = {}
        # Young services (fewer than limits.young_requests requests so far):
        # service -> [requests, start of its latest window with requests].
        self._young: dict[str, list[float]] = {}
        # "service|host" latency keys, least recently seen first.
        self._host_seen: dict[str, None] = {}
        # Checkpoint names of evicted keys, to delete (dirty_states gives them
        # as None); kept only once someone checkpoints (not in a backtest).
        self._gone: set[str] = set()
        # Source of the services dropped since the last dirty_states (and of those it gave
        # as deleted), so that the deletions of their checkpoints reach the partition they
        # were written to after the aggregator forgot them.
        self._gone_source: dict[str, int] = {}
        self._gone_routing: dict[str, int] = {}
        self._checkpointing = False
        self.traffic: dict[str, TrafficState] = {}
        self.latency: dict[str, LatencyState] = {}
        self.composition: dict[str, CompositionState] = {}
        self.drives: dict[str, DriveState] = {}
        self.disk_signals: dict[str, list[DiskSignal]] = {}
        # Host -> its drives with an alert (open until the drive is replaced) and when each was last
        # heard from: kept here, not in the drive's state, which the drives cap may evict first.
        self._failing: dict[str, dict[str, _Watch]] = {}
        self._n_failing = 0
        self._failing_swept = -math.inf
        self.counts: Counter[str] = Counter()
        self._dirty: set[tuple[str, str]] = set()
        self._alerts_saved: dict[str, bytes] = {}  # checkpoint name -> what was last written
        self._partial: set[str] = set()

    # -- detectors per service (overrides apply) ------------------------------
    def _detectors(self, service: str) -> tuple[TrafficAnomalyDetector, LatencySpikeDetector]:
        pair = self._det_of.get(service)
        if pair is None:
            tc, lc = self.config.for_service(service)
            pair = self._det_cache.get((tc, lc))
            if pair is None:
                c = self.config
                pair = self._det_cache[(tc, lc)] = (
                    TrafficAnomalyDetector(
                        timezone=c.timezone, holiday_calendar=c.holiday_calendar, holidays=frozenset(c.holidays),
                        **tc.model_dump(),
                    ),
                    LatencySpikeDetector(**lc.model_dump()),
                )
            self._det_of[service] = pair
        return pair

    # -- caps on the keys ------------------------------------------------------
    def _admit(self, evs: list[RequestEvent] | RequestBatch) -> list[RequestEvent] | RequestBatch:
        """The requests of ``evs`` whose service may be tracked (all, unless the cap is reached)."""
        agg = self.aggregator
        batch = RequestBatch.of(evs)
        names = set(map(_SERVICE, batch.rows))
        new = agg.untracked(names)
        if not new:
            return evs
        room = self.limits.max_services - agg.tracked()
        if len(new) > room:
            room += self._evict_services(len(new) - room, names)
        if len(new) <= room:
            return evs
        # Admitted in order of first request, the rest refused.
        order = [n for n in dict.fromkeys(map(_SERVICE, batch.rows)) if n in new]
        refused = set(order[max(0, room):])
        keep = [i for i, r in enumerate(batch.rows) if r.service not in refused]
        self.counts["services.refused"] += len(refused)
        self.counts["requests.refused"] += len(batch) - len(keep)
        ts, rows = batch.ts, batch.rows
        return RequestBatch([ts[i] for i in keep], [rows[i] for i in keep])

    def _evict_services(self, need: int, protect: set[str]) -> int:
        """Evict at least ``need`` services if possible, least recently seen first, young ones before; how many.

        Never those of ``protect`` (the current batch's) or alerting ones. A
        tenth of the cap more young ones go at once, so that a flood of new
        names sorts the services once every cap/10 names, not every batch.
        """
        alerting = {a.labels.get("service") for a in self.tracker.active.values()}
        young = self._young
        traffic = self.traffic
        cands = [
            (name not in young and name in traffic, ts, name)
            for name, ts in self.aggregator.last_seen().items()
            if name not in protect and name not in alerting
        ]
        ranked = heapq.nsmallest(need + self.limits.max_services // 10, cands)
        gone = {name for _, _, name in ranked[:need]}
        gone.update(name for established, _, name in ranked[need:] if not established)
        if gone:
            self._drop(gone)
            self.counts["services.evicted"] += len(gone)
        return len(gone)

    def _drop(self, services: set[str]) -> None:
        """Forget these services for good (evicted): their models, windows and checkpoints."""
        if self._checkpointing:
            for svc in services:
                src = self.aggregator.source_of(svc)
                if src is not None:
                    self._gone_source[svc] = src
                for kind in _SERVICE_KINDS:
                    self._gone.add(f"{kind}:{svc}")
            self._gone.update(f"latency:{k}" for k in self._host_seen if k.split("|", 1)[0] in services)
        self.forget_services(services)

    #: Engine.counts keys of what the caps did.
    KEY_COUNTERS = ("services.evicted", "services.forgotten", "services.refused", "requests.refused",
                    "hosts.evicted", "drives.evicted", "drives.failing_evicted", "drives.failing_silent",
                    "checkpoint.refused")

    def key_stats(self) -> dict[str, int]:
        """Tracked keys and what the caps did to them, for the metrics.

        ``tracked.services`` (with open windows), ``tracked.hosts``,
        ``tracked.drives``, and the counters of :attr:`KEY_COUNTERS`.
        """
        out = {"tracked.services": self.aggregator.tracked(), "tracked.hosts": len(self._host_seen),
               "tracked.drives": len(self.drives)}
        for k in self.KEY_COUNTERS:
            out[k] = self.counts[k]
        return out

    def _forget_young(self, now: float) -> None:
        """Forget the young services quiet for limits.young_idle_windows windows before ``now`` (a window start)."""
        horizon = now - self.limits.young_idle_windows * self.config.window
        stale = {svc for svc, (_, last) in self._young.items() if last < horizon}
        if stale:
            stale -= {a.labels.get("service") for a in self.tracker.active.values()}
            self._drop(stale)
            self.counts["services.forgotten"] += len(stale)

    # -- events ------------------------------------------------------------
    def process_request(self, ev: RequestEvent, source: int = 0) -> Output:
        """One request; ``source`` is where it came from (its Kafka partition)."""
        self.counts["requests"] += 1
        agg = self.aggregator
        if not agg.is_tracked(ev.service):
            if agg.tracked() >= self.limits.max_services and not self._evict_services(1, {ev.service}):
                self.counts["services.refused"] += 1
                self.counts["requests.refused"] += 1
                return Output()
        agg.add(ev, source)
        if self.mix is not None:
            self.mix.add(ev)
        if agg.due():
            return self._close(agg.advance())
        return Output()

    def process_requests(self, evs: list[RequestEvent] | RequestBatch, source: int = 0) -> Output:
        """Many requests of one source (a batch of its Kafka partition, a block of a file).

        ``evs`` is a list of RequestEvents or, cheaper, the RequestBatch of
        ``decode_requests`` (read as columns).

        The same as :meth:`process_request` for each, but that the windows are
        closed after the batch is counted (at each point where per-event
        processing would have closed some, with the alerts' clock as it was
        then): an event that per-event processing would have counted late,
        into the oldest open window, can land in its own window instead.
        """
        self.counts["requests"] += len(evs)
        agg = self.aggregator
        evs = self._admit(evs)
        steps = agg.add_batch(evs, source)
        if self.mix is not None:
            self.mix.add_batch(evs)
        if not steps and not agg.due():
            return Output()
        out = Output()
        for windows in agg.close_steps(steps, source):
            out.extend(self._close(windows))
        return out

    def advance(self, watermark: float, source: int | None = None) -> Output:
        """Close the windows that ``watermark`` (event time) has passed, for one source or all."""
        return self._close(self.aggregator.advance(watermark, source))

    def flush(self) -> Output:
        """Close every open window (end of a backtest or of a demo)."""
        return self._close(self.aggregator.flush())

    def process_disk(self, ev: DiskHealthEvent) -> Output:
        """One drive reading: its verdict, and the lifecycle of the drive alerts of its host.

        A flagged reading raises (or refreshes) the drive's alert, which then
        stays open whatever the later readings score or the host's latency
        does, until the drive is replaced: its failure record
        (``failure: true``), or a new serial on its host once it has stopped
        reporting (see :meth:`_replacements`).
        """
        self.counts["disk_readings"] += 1
        out = Output()
        key = f"{ev.host}/{ev.disk}"
        drives = self.drives
        state = drives.pop(key, None)  # put back last: the dict is in least-recently-seen order
        if state is None and len(drives) >= self.limits.max_drives:
            old = next(iter(drives))
            del drives[old]
            self._dirty.discard(("drive", old))
            if self._checkpointing:
                self._gone.add(f"drive:{old}")
            self.counts["drives.evicted"] += 1
        # A newcomer on a host with a failing drive may be its replacement (judged on the state before this reading).
        first_ts = ev.ts if state is None or state.n == 0 else state.first_ts
        verdict = self.disk_detector.score_one(ev, state)
        drives[key] = self.disk_detector.learn_one(ev, state)
        self._disk_model_dirty = True
        self._dirty.add(("drive", key))
        if verdict.flagged:
            a = Anomaly(
                ts=ev.ts, detector="disk", entity=Entity(host=ev.host, disk=ev.disk), signal=verdict.signal,
                value=verdict.value, expected=verdict.expected, lower=0.0, upper=verdict.expected,
                score=verdict.score, severity=severity_for(verdict.score, critical=0.9),
            )
            self.counts["anomalies.disk"] += 1
            out.anomalies.append(a)
            sig = DiskSignal(ev.host, ev.disk, ev.ts, verdict.score, list(verdict.evidence), a.id)
            self._set_signal(sig)
            out.signals.append(sig)
            out.alerts.extend(self.tracker.observe(self.diagnoser.disk_finding(sig)))
            self._watch(ev.host, ev.disk, state, ev.ts, out)
        watch = self._failing.get(ev.host, {}).get(ev.disk)
        if watch is not None:
            watch.heard(ev.ts)
        if ev.ts - self._failing_swept >= 86400.0:
            self._sweep_failing(ev.ts, out)
        if ev.failure:
            self._replaced(ev.host, ev.disk, ev.ts, out)
        elif ev.host in self._failing:
            for disk in self._replacements(ev, first_ts):
                self.counts["drives.replaced_by_new_serial"] += 1
                self._replaced(ev.host, disk, first_ts, out)
        if not self.counts["requests"]:
            # Without request streams the disk readings drive the clock; with
            # them, window closes do (the two topics may be far apart).
            out.alerts.extend(self.tracker.tick(ev.ts))
        return out

    def _replacements(self, ev: DiskHealthEvent, first_ts: float) -> list[str]:
        """The failing drives of ``ev``'s host that the drive of ``ev`` replaced.

        The events name a drive by host and serial, not by bay: a drive
        counts as replaced when a serial first seen after its last reading
        reports on its host, and it has itself missed a reading since (more
        than 1.5 times its usual interval between readings, a day when it
        had only one). A drive added beside a failing one that still reports
        replaces nothing.
        """
        gone = []
        for disk, w in self._failing.get(ev.host, {}).items():
            if disk == ev.disk:
                continue
            if w.last_ts == -math.inf:  # restored and not heard from since: its drive state says when it was
                st = self.drives.get(f"{ev.host}/{disk}")
                if st is None or not st.n:
                    continue  # no telling when it last reported
                w.last_ts, w.gap = st.last_ts, _usual_gap(st)
            if first_ts > w.last_ts and ev.ts - w.last_ts > 1.5 * max(w.gap, 3600.0):
                gone.append(disk)
        return gone

    def _watch(self, host: str, disk: str, state: DriveState | None, ts: float, out: Output) -> None:
        """Start watching a drive whose alert is open; at most ``max_drives`` are, the longest silent goes first."""
        drives = self._failing.setdefault(host, {})
        if disk in drives:
            return
        if self._n_failing >= self.limits.max_drives:
            h, d = min(((h, d) for h, ds in self._failing.items() for d in ds),
                       key=lambda hd: self._failing[hd[0]][hd[1]].last_ts)
            self.counts["drives.failing_evicted"] += 1
            self._replaced(h, d, ts, out)
            drives = self._failing.setdefault(host, {})
        known = state is not None and state.n > 0
        drives[disk] = _Watch(state.last_ts if state is not None and known else -math.inf,
                              _usual_gap(state) if state is not None else 86400.0, ts)
        self._n_failing += 1

    def _sweep_failing(self, now: float, out: Output) -> None:
        """End the alerts of failing drives silent for :data:`_FAILING_SILENCE` (once a day of event time)."""
        self._failing_swept = now
        for ds in self._failing.values():
            for w in ds.values():
                if w.since == -math.inf:
                    w.since = now
        silent = [(h, d) for h, ds in self._failing.items() for d, w in ds.items()
                  if max(w.last_ts, w.since) < now - _FAILING_SILENCE]
        for h, d in silent:
            self.counts["drives.failing_silent"] += 1
            self._replaced(h, d, now, out)

    def _replaced(self, host: str, disk: str, at: float, out: Output) -> None:
        """The drive was replaced at ``at``: its alert ends, and soon after it no longer explains its host's latency."""
        out.alerts.extend(self.tracker.resolve(fingerprint({"service": None, "host": host, "disk": disk}), at))
        key = f"{host}/{disk}"
        if self.drives.pop(key, None) is not None:
            self._dirty.discard(("drive", key))
            if self._checkpointing:
                self._gone.add(f"drive:{key}")
        failing = self._failing.get(host)
        if failing is not None and failing.pop(disk, None) is not None:
            self._n_failing -= 1
            if not failing:
                del self._failing[host]
        for s in self.disk_signals.get(host, []):
            if s.disk == disk and s.replaced_at is None:
                s.replaced_at = at
                if not any(x is s for x in out.signals):  # flagged by this very reading
                    out.signals.append(s)

    def _set_signal(self, sig: DiskSignal) -> None:
        others = [s for s in self.disk_signals.get(sig.host, []) if s.disk != sig.disk]
        self.disk_signals[sig.host] = [*others, sig]

    def apply_signal(self, sig: DiskSignal) -> bool:
        """A drive signal from the worker that reads that drive (or our own, echoed back).

        The disk-health topic is keyed by host, the requests by service: with
        several workers a drive and the services on its host are often read
        by different workers, and the diagnosis of a service needs the drives
        of its hosts. Applied only if it is a later state than the one held,
        so echoes and replays change nothing. True when it changed something.
        """
        held = next((s for s in self.disk_signals.get(sig.host, []) if s.disk == sig.disk), None)
        if held is not None and not sig.newer_than(held):
            return False
        self._set_signal(sig)
        self.counts["disk_signals.applied"] += 1
        return True

    # -- windows -----------------------------------------------------------
    def _close(self, windows: list[WindowFeatures]) -> Output:
        out = Output()
        for f in windows:
            out.extend(self._window(f))
        if windows and self._young:
            self._forget_young(windows[-1].start)
        if windows:
            # Alerts age on the slowest partition's clock: a partition that is
            # ahead must not resolve the alerts of one that lags.
            out.alerts.extend(self.tracker.tick(self.aggregator.low_watermark()))
        return out

    def mark_resumed(self, services: set[str] | None = None) -> None:
        """After a restart: the first window of these services (all when None) is partial, neither scored nor learned.

        Its events before the last committed offset were counted by the
        previous process and are gone with it; judging the rest would see a
        traffic drop that never happened.
        """
        if services is None:
            services = set(self.traffic) | {k.split("|", 1)[0] for k in self.latency}
        self._partial |= services

    def forget_sources(self, sources: set[int]) -> None:
        """Drop what came from these sources (Kafka partitions another worker reads now)."""
        self.forget_services(self.aggregator.forget_sources(sources))

    def forget_services(self, services: set[str]) -> None:
        """Drop the models and open windows of these services (another worker reads them now)."""
        for svc in services:
            self.traffic.pop(svc, None)
            self.composition.pop(svc, None)
            self.latency.pop(svc, None)
            self.aggregator.forget(svc)
            if self.mix is not None:
                self.mix.forget(svc)
            self.diagnoser.forget_service(svc)
            self._partial.discard(svc)
            self._young.pop(svc, None)
            self._det_of.pop(svc, None)
            for kind in _SERVICE_KINDS:
                self._dirty.discard((kind, svc))
        for key in [k for k in self._host_seen if k.split("|", 1)[0] in services]:
            del self._host_seen[key]
            self.latency.pop(key, None)
            self._dirty.discard(("latency", key))
        # Their alerts go with them, unresolved: the new owner carries them on.
        self.tracker.forget(lambda labels: labels.get("service") in services)
        for name in [n for n in self._alerts_saved if n.partition(":")[2].split("|", 1)[0] in services]:
            del self._alerts_saved[name]

    def source_of(self, service: str) -> int | None:
        """The source (Kafka partition) a service's events came from last, if it has any here."""
        src = self.aggregator.source_of(service)
        if src is None:
            src = self._gone_routing.get(service)
        return src

    def _window(self, f: WindowFeatures) -> Output:
        out = Output()
        svc = f.service
        young = self._young.get(svc)
        if young is None and svc not in self.traffic:
            young = self._young[svc] = [0, f.start]
        if young is not None and f.count:
            young[0] += f.count
            young[1] = f.start
            if young[0] >= self.limits.young_requests:
                del self._young[svc]
                young = None
        if young is not None and f.count < self._judge_min:
            # A young service's window with too few requests for either
            # detector to judge (their min_count): not learned either, until
            # the service is established. What a stray name's windows are.
            self.counts["windows.young"] += 1
            return out
        if svc in self._partial:
            self._partial.discard(svc)
            self.counts["windows.partial"] += 1
            return out
        tdet, ldet = self._detectors(svc)
        self.counts["windows"] += 1
        tstate = self.traffic.get(svc)
        tv = tdet.score_one(f, tstate)
        self.traffic[svc] = tdet.learn_one(f, tstate, tv)
        self._dirty.add(("traffic", svc))
        ids: list[str] = []
        svc_entity = Entity(service=svc)
        if tv.flagged:
            ids.append(self._anomaly(out, f, "traffic", svc_entity, tv).id)

        lstate = self.latency.get(svc)
        sv = ldet.score_one(f.count, f.p50_ms, f.p95_ms, f.error_ratio_5xx, lstate)
        for v in sv:
            if v.flagged:
                ids.append(self._anomaly(out, f, "latency", svc_entity, v).id)
        self.latency[svc] = ldet.learn_one(f.count, f.p50_ms, f.p95_ms, f.error_ratio_5xx, lstate, sv)
        self._dirty.add(("latency", svc))

        host_verdicts: dict[str, list[Verdict]] = {}
        seen = self._host_seen
        for host, hs in f.hosts.items():
            key = f"{svc}|{host}"
            if key in seen:
                del seen[key]  # put back last: least recently seen first
            elif len(seen) >= self.limits.max_hosts:
                old = next(iter(seen))
                del seen[old]
                self._dirty.discard(("latency", old))
                if self.latency.pop(old, None) is not None and self._checkpointing:
                    self._gone.add(f"latency:{old}")
                self.counts["hosts.evicted"] += 1
            seen[key] = None
            st = self.latency.get(key)
            hv = ldet.score_one(hs.count, hs.p50_ms, hs.p95_ms, hs.error_ratio_5xx, st)
            host_verdicts[host] = hv
            for v in hv:
                if v.flagged:
                    ids.append(self._anomaly(out, f, "latency", Entity(service=svc, host=host), v).id)
            new = ldet.learn_one(hs.count, hs.p50_ms, hs.p95_ms, hs.error_ratio_5xx, st, hv)
            if new is not None:
                self.latency[key] = new
                self._dirty.add(("latency", key))

        comp = self.composition.get(svc)
        findings = self.diagnoser.diagnose(f, tv, sv, host_verdicts, comp, self.disk_signals, ids,
                                           mix=self.mix)
        if not ids:
            if comp is None:
                comp = self.composition[svc] = CompositionState()
            comp.learn(f, self.diagnoser.composition_alpha)
            self._dirty.add(("composition", svc))
            # What the diagnoser learns of the service (usual client mix, capacity, hosts) changes
            # only in windows without anomalies, as the composition does.
            self._dirty.add(("cause", svc))
        for finding in findings:
            # The alert starts when its first window started, though it can
            # only be raised when that window closes.
            finding.onset = f.start
            self.counts[f"findings.{finding.cause}"] += 1
            changed = self.tracker.observe(finding)
            model = self.diagnoser.cause_model
            if model is not None and finding.features is not None:
                model.remember(fingerprint(finding.labels), finding.features)
            out.alerts.extend(changed)
        return out

    def _anomaly(self, out: Output, f: WindowFeatures, detector: str, entity: Entity, v: Verdict) -> Anomaly:
        a = Anomaly(
            ts=f.end, detector=detector, entity=entity, signal=v.signal, value=v.value,
            expected=v.expected, lower=v.lower, upper=v.upper, score=v.score, severity=severity_for(v.score),
        )
        self.counts[f"anomalies.{detector}"] += 1
        out.anomalies.append(a)
        return a

    def learn_label(self, fingerprint_: str, cause: str) -> bool:
        """A cause a person gave for an alert (``tocsin.label.v1``): the cause model learns it.

        ``benign`` is a cause too (the alert should not have fired). False
        when there is no model or the alert's features are no longer held.
        """
        model = self.diagnoser.cause_model
        return model is not None and model.learn_label(fingerprint_, cause)

    # -- state for checkpoints ------------------------------------------------
    def dirty_states(self) -> dict[str, bytes | None]:
        """Serialised per-key models and alerts changed since the last call, keyed ``kind:key``.

        Alerts are keyed ``alert:<service>|<fingerprint>`` (``alert:@<host>/<disk>|...``
        for a drive's), so they travel with their service's partition; None
        means the alert is gone (resolved) and its checkpoint can be deleted.
        """
        self._checkpointing = True
        self._gone_routing, self._gone_source = self._gone_source, {}
        out: dict[str, bytes | None] = {}
        models = {"traffic": self.traffic, "latency": self.latency, "composition": self.composition,
                  "drive": self.drives}
        for kind, key in self._dirty:
            if kind == "cause":
                data = self.diagnoser.service_state_bytes(key)
                if data is not None:
                    out[f"cause:{key}"] = data
                continue
            obj = models[kind].get(key)
            if obj is not None:
                out[f"{kind}:{key}"] = obj.to_bytes()
        if self.mix is not None:
            # The client mix's first-seen tables of networks and ASes (days of traffic to learn).
            for svc in self.mix.dirty_services():
                data = self.mix.state_bytes(svc)
                if data is not None:
                    out[f"mix:{svc}"] = data
        if self._disk_model_dirty:
            # (state of no one key: the stream layer files it under its own name, "shared")
            out["shared:disk"] = self.disk_detector.to_bytes()
            self._disk_model_dirty = False
        self._dirty.clear()
        for name in self._gone:
            out.setdefault(name, None)
        self._gone.clear()
        saved = self._alerts_saved
        now: dict[str, bytes] = {}
        for fp, (labels, data) in self.tracker.export().items():
            svc = labels.get("service")
            owner = svc if svc else f"@{labels.get('host')}/{labels.get('disk')}"
            now[f"alert:{owner}|{fp}"] = data
        for name, data in now.items():
            if saved.get(name) != data:
                out[name] = data
        for name in saved.keys() - now.keys():
            out[name] = None
        self._alerts_saved = now
        return out

    def load_state(self, name: str, data: bytes) -> bool:
        """Restore one model (or alert) written by :meth:`dirty_states`; False when refused.

        A record that cannot be read (corrupt, truncated, written by a version
        this one does not read) is refused: logged, counted in
        :attr:`counts` (``checkpoint.refused`` and ``checkpoint.refused.<kind>``),
        and the key starts afresh as if never checkpointed, the worker going on.
        """
        try:
            self._load_state(name, data)
        except _BAD_RECORD as exc:
            kind = name.partition(":")[0]
            self.counts["checkpoint.refused"] += 1
            self.counts[f"checkpoint.refused.{kind}"] += 1
            log.error("checkpoint record %r refused (%d bytes), starting that state afresh: %s: %s",
                      name, len(data), type(exc).__name__, exc)
            return False
        return True

    def _load_state(self, name: str, data: bytes) -> None:
        self._checkpointing = True  # restored from a store: what is dropped from now on must be deleted there
        kind, _, key = name.partition(":")
        if kind == "alert":
            labels = self.tracker.load(data)
            self._alerts_saved[name] = data
            host, disk = labels.get("host"), labels.get("disk")
            if labels.get("service") is None and host and disk and disk not in self._failing.get(host, {}):
                self._failing.setdefault(host, {})[disk] = _Watch(-math.inf, 86400.0, -math.inf)
                self._n_failing += 1
            return
        if kind == "shared" and key == "disk":
            self.disk_detector = DiskFailureDetector.from_bytes(data, **self.config.disk)
            return
        if kind == "traffic":
            svc = key
            self.traffic[key] = TrafficState.from_bytes(data, self._detectors(svc)[0])
        elif kind == "latency":
            svc = key.split("|", 1)[0]
            if "|" in key:
                self._host_seen[key] = None
            self.latency[key] = LatencyState.from_bytes(data, self._detectors(svc)[1])
        elif kind == "composition":
            self.composition[key] = CompositionState.from_bytes(data)
        elif kind == "drive":
            self.drives[key] = DriveState.from_bytes(data)
        elif kind == "mix":
            if self.mix is not None:  # (mix_sample 0: no client mix kept, the record is not ours to read)
                self.mix.load_state(key, data)
        elif kind == "cause":
            self.diagnoser.load_service_state(key, data)
        else:
            raise ValueError(f"unknown checkpoint kind {kind!r}")
