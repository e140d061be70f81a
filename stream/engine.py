"""The processing core: events in, anomalies and alert state changes out.

No Kafka and no Faust here: the worker's agents and ``tocsin backtest`` feed
the same :class:`Engine`, so a backtest shows exactly what the worker would
have done. Time is event time throughout.

Per-key models (traffic and latency per service and host, composition per
service, one sketch per drive) are kept in plain dicts of small objects;
:meth:`Engine.dirty_states` and :meth:`Engine.load_state` let the worker
checkpoint the changed ones to a Faust table and restore them.
"""

from __future__ import annotations

import gc
from collections import Counter
from dataclasses import dataclass, field

from alerts.config import AlertingConfig
from alerts.lifecycle import AlertTracker
from alerts.model import Alert, fingerprint
from detectors.cause_features import ClientMix
from detectors.config import DetectorsConfig
from detectors.diagnosis import CompositionState, Diagnoser, DiskSignal
from detectors.disk import DiskFailureDetector, DriveState
from detectors.events import DiskHealthEvent, RequestBatch, RequestEvent
from detectors.features import WindowAggregator, WindowFeatures
from detectors.latency import LatencySpikeDetector, LatencyState
from detectors.model import Anomaly, Entity, Verdict, severity_for
from detectors.traffic import TrafficAnomalyDetector, TrafficState

__all__ = ["Engine", "Output", "tune_gc"]

_DISK_HOLD = 2 * 86400.0

#: Allocations between two collections of the youngest generation (CPython: 700).
GC_GEN0 = 20_000


def tune_gc() -> None:
    """Set the cyclic collector for the engine's allocation pattern (``tocsin`` does it at start).

    A batch allocates thousands of short-lived lists and tuples (the columns,
    the groups), freed by reference counting; at CPython's default every
    700 allocations, the collections that found nothing to collect took
    about a tenth of the batch time, their scans of the long-lived windows
    and sketches included. Collecting every 20,000 allocations keeps cyclic
    garbage bounded all the same.
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
        self.tracker = AlertTracker(self.alerting.pending_for, self.alerting.keep_firing_for)
        self._traffic_det: dict[str, TrafficAnomalyDetector] = {}
        self._latency_det: dict[str, LatencySpikeDetector] = {}
        self.traffic: dict[str, TrafficState] = {}
        self.latency: dict[str, LatencyState] = {}
        self.composition: dict[str, CompositionState] = {}
        self.drives: dict[str, DriveState] = {}
        self.disk_signals: dict[str, list[DiskSignal]] = {}
        self.counts: Counter[str] = Counter()
        self._dirty: set[tuple[str, str]] = set()
        self._alerts_saved: dict[str, bytes] = {}  # checkpoint name -> what was last written
        self._partial: set[str] = set()

    # -- detectors per service (overrides apply) ------------------------------
    def _detectors(self, service: str) -> tuple[TrafficAnomalyDetector, LatencySpikeDetector]:
        t = self._traffic_det.get(service)
        if t is None:
            tc, lc = self.config.for_service(service)
            c = self.config
            t = self._traffic_det[service] = TrafficAnomalyDetector(
                timezone=c.timezone, holiday_calendar=c.holiday_calendar, holidays=frozenset(c.holidays),
                **tc.model_dump(),
            )
            self._latency_det[service] = LatencySpikeDetector(**lc.model_dump())
        return t, self._latency_det[service]

    # -- events ------------------------------------------------------------
    def process_request(self, ev: RequestEvent, source: int = 0) -> Output:
        """One request; ``source`` is where it came from (its Kafka partition)."""
        self.counts["requests"] += 1
        agg = self.aggregator
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
        self.counts["disk_readings"] += 1
        out = Output()
        key = f"{ev.host}/{ev.disk}"
        state = self.drives.get(key)
        verdict = self.disk_detector.score_one(ev, state)
        self.drives[key] = self.disk_detector.learn_one(ev, state)
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
            out.alerts.extend(self.tracker.observe(self.diagnoser.disk_finding(sig, a.severity, _DISK_HOLD)))
        if ev.failure:
            # The drive is gone (replaced): its alert ends, and soon after it
            # no longer explains its host's latency.
            out.alerts.extend(self.tracker.resolve(fingerprint({"service": None, "host": ev.host, "disk": ev.disk}), ev.ts))
            self.drives.pop(key, None)
            for s in self.disk_signals.get(ev.host, []):
                if s.disk == ev.disk:
                    s.replaced_at = ev.ts
                    if not any(x is s for x in out.signals):  # flagged by this very reading
                        out.signals.append(s)
        if not self.counts["requests"]:
            # Without request streams the disk readings drive the clock; with
            # them, window closes do (the two topics may be far apart).
            out.alerts.extend(self.tracker.tick(ev.ts))
        return out

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
            self.aggregator.forget(svc)
            if self.mix is not None:
                self.mix.forget(svc)
            self._partial.discard(svc)
        for key in [k for k in self.latency if k.split("|", 1)[0] in services]:
            del self.latency[key]
        # Their alerts go with them, unresolved: the new owner carries them on.
        self.tracker.forget(lambda labels: labels.get("service") in services)
        for name in [n for n in self._alerts_saved if n.partition(":")[2].split("|", 1)[0] in services]:
            del self._alerts_saved[name]

    def source_of(self, service: str) -> int | None:
        """The source (Kafka partition) a service's events came from last, if it has any here."""
        return self.aggregator.source_of(service)

    def _window(self, f: WindowFeatures) -> Output:
        out = Output()
        svc = f.service
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
        for host, hs in f.hosts.items():
            key = f"{svc}|{host}"
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
        out: dict[str, bytes | None] = {}
        for kind, key in self._dirty:
            obj = {"traffic": self.traffic, "latency": self.latency,
                   "composition": self.composition, "drive": self.drives}[kind].get(key)
            if obj is not None:
                out[f"{kind}:{key}"] = obj.to_bytes()
        self._dirty.clear()
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

    def load_state(self, name: str, data: bytes) -> None:
        """Restore one model (or alert) written by :meth:`dirty_states`."""
        kind, _, key = name.partition(":")
        if kind == "alert":
            self.tracker.load(data)
            self._alerts_saved[name] = data
            return
        if kind == "traffic":
            svc = key
            self.traffic[key] = TrafficState.from_bytes(data, self._detectors(svc)[0])
        elif kind == "latency":
            svc = key.split("|", 1)[0]
            self.latency[key] = LatencyState.from_bytes(data, self._detectors(svc)[1])
        elif kind == "composition":
            self.composition[key] = CompositionState.from_bytes(data)
        elif kind == "drive":
            self.drives[key] = DriveState.from_bytes(data)
