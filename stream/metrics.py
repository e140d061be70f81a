"""Prometheus metrics of one tocsin worker.

:class:`Metrics` owns a dedicated :class:`~prometheus_client.CollectorRegistry`
(not the process-wide default one), so two apps in one process, or two tests,
never share counters. The app calls one short method per thing it counts;
:meth:`Metrics.serve` exposes ``/metrics`` on 127.0.0.1 for Prometheus.

Metric names (all prefixed ``tocsin_``):

========================================  =========  =============================
name                                      type       labels
========================================  =========  =============================
``events_total``                          counter    topic
``dead_letters_total``                    counter    topic, reason
``anomalies_total``                       counter    detector, severity
``alerts_total``                          counter    cause, status
``notifications_total``                   counter    receiver, outcome
``consumer_lag_messages``                 gauge      topic, partition
``event_processing_seconds``              histogram  (sampled: 1 event in N)
``tracked_keys``                          gauge      kind
``build_info``                            gauge (1)  version, python, compiled
========================================  =========  =============================

The registry also holds prometheus_client's process collector
(``process_cpu_seconds_total``, ``process_resident_memory_bytes``, open file
descriptors: the worker's CPU and memory, on Linux), its garbage-collector
collector (``python_gc_*``) and its platform collector (``python_info``), as
the default registry would.

``reason`` is one of :data:`DEAD_LETTER_REASONS`, read from the text of the
:class:`~detectors.errors.InvalidEvent` that ``detectors.events`` raised.

>>> m = Metrics()
>>> m.event_in("requests")
>>> m.dead_letter("Expected `int` <= 599 - at `$.status`", topic="requests")
'out_of_range'
>>> b'tocsin_events_total{topic="requests"} 1.0' in m.render()
True
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.exposition import start_http_server

__all__ = [
    "DEAD_LETTER_REASONS",
    "build_labels",
    "NOTIFICATION_OUTCOMES",
    "Metrics",
    "MetricsServer",
    "classify_dead_letter",
    "update_lag",
]

log = logging.getLogger(__name__)

#: Classes of dead letters (the ``reason`` label).
DEAD_LETTER_REASONS = ("bad_json", "missing_field", "wrong_type", "out_of_range", "oversized", "other")
#: What happened to one notification attempt (the ``outcome`` label).
NOTIFICATION_OUTCOMES = ("sent", "failed", "retried", "fallback", "refused")

# Latencies of one event through decode, windows and detectors: microseconds
# normally, milliseconds when a window closes and the detectors run.
_PROCESSING_BUCKETS = (5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.025, 0.1, 1.0)

# Order matters: the first pattern that matches names the class.
_REASON_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("oversized", re.compile(r"exceeds the \d+-byte limit")),
    ("bad_json", re.compile(r"^not valid JSON|nested too deeply")),
    ("missing_field", re.compile(r"missing required field")),
    # msgspec constraints (`Expected `int` <= 599`, `of length >= 1`), ts range, SMART values < 0
    ("out_of_range", re.compile(r"Expected `\w+` (?:<|>|<=|>=) |Expected `\w+` of length|is out of range|is not a number >= 0")),
    # msgspec type errors, ts strings that are not times, SMART ids that are not numbers
    ("wrong_type", re.compile(r"Expected `[^`]+`, got `|is not an RFC 3339 time|has no time zone offset|^ts must be|is not a number")),
)


def tocsin_version() -> str:
    """The installed tocsin's version ("unknown" when run from a source tree that is not installed)."""
    import importlib.metadata

    try:
        return importlib.metadata.version("tocsin")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def build_labels() -> dict[str, str]:
    """``version``, ``python`` and ``compiled`` (``true`` when the detector modules are mypyc's).

    >>> sorted(build_labels())
    ['compiled', 'python', 'version']
    """
    import platform

    import detectors.traffic

    compiled = not str(detectors.traffic.__file__).endswith(".py")
    return {"version": tocsin_version(), "python": platform.python_version(), "compiled": str(compiled).lower()}


def classify_dead_letter(error: str) -> str:
    """The reason class of an ``InvalidEvent`` message.

    >>> classify_dead_letter("Object missing required field `service`")
    'missing_field'
    >>> classify_dead_letter("Expected `int`, got `str` - at `$.status`")
    'wrong_type'
    >>> classify_dead_letter("something new")
    'other'
    """
    for reason, pattern in _REASON_PATTERNS:
        if pattern.search(error):
            return reason
    return "other"


class Metrics:
    """The worker's metrics, in their own registry.

    Parameters
    ----------
    sample_every
        Time one event in ``sample_every`` (see :meth:`sample`); timing every
        event would cost more than a sketch update.
    registry
        Where to register; a new registry by default.
    """

    def __init__(self, sample_every: int = 64, registry: CollectorRegistry | None = None) -> None:
        if sample_every < 1:
            raise ValueError("sample_every must be >= 1")
        self.sample_every = sample_every
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        self._events = Counter("tocsin_events", "Events read, by input topic.", ["topic"], registry=r)
        self._dead = Counter(
            "tocsin_dead_letters", "Malformed messages sent to the dead-letter topic, by input topic and reason.",
            ["topic", "reason"], registry=r,
        )
        self._anomalies = Counter("tocsin_anomalies", "Anomalies emitted, by detector and severity.",
                                  ["detector", "severity"], registry=r)
        self._alerts = Counter("tocsin_alerts", "Alert state changes emitted, by cause and status.",
                               ["cause", "status"], registry=r)
        self._notifications = Counter(
            "tocsin_notifications", "Notification attempts, by receiver and outcome (sent, failed, retried, "
            "fallback: handed to the fallbacks of a failed receiver, refused: a message the receiver refused).",
            ["receiver", "outcome"], registry=r,
        )
        self._receiver_failed = Gauge(
            "tocsin_receiver_failed", "1 while a receiver is marked failed (a non-retryable error: see the log "
            "for what to fix), else 0.", ["receiver"], registry=r)
        self._lag = Gauge("tocsin_consumer_lag_messages", "Messages behind the end of the partition.",
                          ["topic", "partition"], registry=r)
        self._processing = Histogram(
            "tocsin_event_processing_seconds", "Time to process one input event (sampled).",
            buckets=_PROCESSING_BUCKETS, registry=r,
        )
        self._tracked = Gauge("tocsin_tracked_keys", "Keys with a model in memory, by kind.", ["kind"], registry=r)
        self._keys_dropped = Counter(
            "tocsin_keys_dropped", "Keys (services, hosts, drives) and requests the caps evicted, forgot or "
            "refused (detectors.limits), by kind and action.", ["kind", "action"], registry=r)
        self._time_rejected = Counter(
            "tocsin_time_rejected", "Events dead-lettered by the event-time guard, by reason (ahead, behind).",
            ["reason"], registry=r)
        build = build_labels()
        Gauge("tocsin_build_info", "Always 1: the tocsin version, Python version and whether the "
              "detector modules are compiled.", list(build), registry=r).labels(**build).set(1)
        if registry is None:  # a registry of our own: add what the default one has
            ProcessCollector(registry=r)  # reads /proc: registers nothing elsewhere
            PlatformCollector(registry=r)
            GCCollector(registry=r)  # registers nothing where gc has no stats (not CPython)
        self._tick = 0
        self._receivers: set[str] = set()
        # Cache the labelled children of the per-event counters: .labels() costs a few µs.
        self._event_children: dict[str, Any] = {}
        self._synced: dict[str, int] = {}

    # -- per event -----------------------------------------------------------
    def event_in(self, topic: str, n: int = 1) -> None:
        """``n`` messages read from ``topic`` (valid or not)."""
        c = self._event_children.get(topic)
        if c is None:
            c = self._event_children[topic] = self._events.labels(topic)
        c.inc(n)

    def dead_letter(self, error: str, topic: str = "") -> str:
        """One message dead-lettered with ``error`` (the InvalidEvent text); return its reason class."""
        reason = classify_dead_letter(error)
        self._dead.labels(topic, reason).inc()
        return reason

    def sample(self) -> bool:
        """True once every ``sample_every`` calls: time this event."""
        self._tick += 1
        if self._tick >= self.sample_every:
            self._tick = 0
            return True
        return False

    def processing_time(self, seconds: float) -> None:
        """Observe the processing time of one (sampled) event."""
        self._processing.observe(seconds)

    # -- outputs -------------------------------------------------------------
    def anomaly(self, a: Any) -> None:
        """One anomaly emitted (a :class:`detectors.model.Anomaly` or its record)."""
        detector, severity = _fields(a, "detector", "severity")
        self._anomalies.labels(detector, severity).inc()

    def alert(self, al: Any) -> None:
        """One alert state change emitted (an :class:`alerts.model.Alert` or its record)."""
        cause, status = _fields(al, "cause", "status")
        self._alerts.labels(cause, status).inc()

    def notification(self, receiver: str, outcome: str) -> None:
        """One notification attempt to ``receiver``: ``sent``, ``failed`` or ``retried``."""
        if outcome not in NOTIFICATION_OUTCOMES:
            raise ValueError(f"outcome must be one of {', '.join(NOTIFICATION_OUTCOMES)}, got {outcome!r}")
        self._notifications.labels(receiver, outcome).inc()

    def sync_notifications(self, counts: Mapping[str, int], failed: Iterable[str] | None = None) -> None:
        """Catch up with a NotificationPipeline's ``counts`` (``<outcome>.<receiver>``).

        Adds what changed since the last call, for the outcomes of
        :data:`NOTIFICATION_OUTCOMES`. ``failed``: the receivers marked
        failed now (``AlertNotifier.failed_receivers()``), for the
        ``tocsin_receiver_failed`` gauge; the others seen are set to 0.
        """
        for key, n in list(counts.items()):
            outcome, _, receiver = key.partition(".")
            if outcome not in NOTIFICATION_OUTCOMES or not receiver:
                continue
            self._receivers.add(receiver)
            delta = n - self._synced.get(key, 0)
            if delta > 0:
                self._synced[key] = n
                self._notifications.labels(receiver, outcome).inc(delta)
        if failed is not None:
            down = set(failed)
            for receiver in self._receivers | down:
                self._receiver_failed.labels(receiver).set(1 if receiver in down else 0)

    # -- state ---------------------------------------------------------------
    def lag(self, topic: str, partition: int, n: int) -> None:
        """Set the consumer lag of one partition (messages)."""
        self._lag.labels(topic, str(partition)).set(max(0, n))

    def tracked_keys(self, kind: str, n: int) -> None:
        """Set how many keys of ``kind`` (traffic, latency, composition, drives) have a model."""
        self._tracked.labels(kind).set(n)

    def track_engine(self, engine: Any, guards: Iterable[Any] = ()) -> None:
        """Set the tracked-keys gauges and the caps' and time guards' counters from an Engine.

        ``guards``: the runner's event-time guards (their ``rejected`` counts by reason).
        """
        for kind in ("traffic", "latency", "composition"):
            self.tracked_keys(kind, len(getattr(engine, kind)))
        for name, n in engine.key_stats().items():  # tracked.services, .hosts, .drives; the caps' counters
            what, _, kind = name.partition(".")
            if what == "tracked":
                self.tracked_keys(kind, n)
            else:  # services.evicted, requests.refused, ...: totals so far
                self._sync_total(self._keys_dropped, name, n, kind=what, action=kind)
        for g in guards:
            if g is None:
                continue
            for reason, n in g.rejected.items():
                self._sync_total(self._time_rejected, f"time.{id(g)}.{reason}", n, reason=reason)

    def _sync_total(self, counter: Any, key: str, n: int, **labels: str) -> None:
        delta = n - self._synced.get(key, 0)
        if delta > 0:
            self._synced[key] = n
            counter.labels(**labels).inc(delta)

    # -- exposition ----------------------------------------------------------
    def render(self) -> bytes:
        """The registry in the Prometheus text format."""
        return generate_latest(self.registry)

    def serve(self, host: str = "127.0.0.1", port: int = 9464) -> MetricsServer:
        """Serve ``/metrics`` from a daemon thread; ``port=0`` picks a free port."""
        server, thread = start_http_server(port, addr=host, registry=self.registry)
        return MetricsServer(server, thread)


class MetricsServer:
    """A running ``/metrics`` endpoint: :attr:`port` and :meth:`close`."""

    def __init__(self, server: Any, thread: Any) -> None:
        self.server = server
        self.thread = thread

    @property
    def host(self) -> str:
        return str(self.server.server_address[0])

    @property
    def port(self) -> int:
        return int(self.server.server_port)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/metrics"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _TP(Protocol):
    topic: str
    partition: int


class _Consumer(Protocol):
    def assignment(self) -> Iterable[_TP]: ...

    def highwater(self, tp: Any) -> int | None: ...

    async def position(self, tp: Any) -> int | None: ...


async def update_lag(metrics: Metrics, consumer: _Consumer) -> int:
    """Set the lag gauge of every assigned partition of a Faust consumer; return the total.

    Lag is the high-water mark (the offset the next produced message gets)
    minus the consumer's position (the next offset it reads).
    """
    total = 0
    for tp in list(consumer.assignment()):
        try:
            hw = consumer.highwater(tp)
            pos = await consumer.position(tp)
        except Exception as exc:  # noqa: BLE001 - a partition revoked mid-way must not stop the timer
            log.debug("no lag for %s/%s: %s", tp.topic, tp.partition, exc)
            continue
        if hw is None or pos is None:
            continue
        n = max(0, int(hw) - int(pos))
        metrics.lag(tp.topic, tp.partition, n)
        total += n
    return total


def _fields(obj: Any, *names: str) -> tuple[str, ...]:
    if isinstance(obj, dict):
        return tuple(str(obj.get(n) or "unknown") for n in names)
    return tuple(str(getattr(obj, n, None) or "unknown") for n in names)
