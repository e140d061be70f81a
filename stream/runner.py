"""The worker's processing loop without Faust: decode, engine, emit, checkpoint, restore.

:class:`Runner` is the one path from raw event bytes to anomaly, alert and
dead-letter records. It talks to the outside through two narrow ports:

:class:`Outbox`
    where records go (``anomaly``, ``alert``, ``dead_letter``, ``signal``).
    The Faust edge (:mod:`stream.app`) buffers them and sends them to their
    topics; ``tocsin backtest`` (:mod:`stream.backtest`) writes them to files;
    tests keep them in lists (:class:`ListOutbox`).
:class:`CheckpointStore`
    where the engine's changed models are written and read back from
    (the ``models`` Faust table in the worker, a dict in tests).

Nothing here is async and nothing imports Kafka: the worker's request
reader, the disk agent, ``tocsin backtest`` and the tests all call the same
methods, so the tests exercise the production path.
"""

from __future__ import annotations

import base64
import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

import orjson

from detectors.config import DetectorsConfig
from detectors.diagnosis import DiskSignal
from detectors.errors import InvalidEvent
from detectors.events import DiskHealthEvent, RequestBatch, decode_disk, decode_requests
from detectors.timeguard import EventTimeGuard

from .engine import Engine, Output

__all__ = [
    "DEAD_LETTER_SCHEMA",
    "DRIVE_SIGNAL_SCHEMA",
    "CheckpointStore",
    "DictStore",
    "ListOutbox",
    "Outbox",
    "Runner",
    "dead_letter_record",
    "time_guards",
]

log = logging.getLogger(__name__)

DEAD_LETTER_SCHEMA = "tocsin.dead-letter.v1"
#: Schema tag of the records on the internal ``<app id>-drive-signals`` topic.
DRIVE_SIGNAL_SCHEMA = "tocsin.drive-signal.v1"

#: Bytes of a bad message's payload kept in its dead letter. Kafka's default
#: message limit is 1 MB, and base64 makes a payload a third larger: a whole
#: 920 KB message would not fit in its own dead letter, and the worker could
#: never move past it. A prefix always fits; the size says what was cut.
DEAD_LETTER_PAYLOAD_MAX = 64 * 1024


def dead_letter_record(source: dict[str, Any], error: str, payload: bytes | None,
                       limit: int = DEAD_LETTER_PAYLOAD_MAX) -> bytes:
    """A ``tocsin.dead-letter.v1`` record; payloads over ``limit`` bytes keep their first ``limit`` bytes.

    >>> rec = orjson.loads(dead_letter_record({"topic": "requests", "partition": 0, "offset": 7}, "bad", b"x" * 10, limit=4))
    >>> rec["payload"], rec["size"], rec["truncated"]
    ('eHh4eA==', 10, True)
    """
    data = payload or b""
    kept = data[:limit]
    rec: dict[str, Any] = {
        "schema": DEAD_LETTER_SCHEMA,
        "source": source,
        "error": error[:1000],
        "payload": base64.b64encode(kept).decode(),
        "size": len(data),
    }
    if len(kept) < len(data):
        rec["truncated"] = True
    return orjson.dumps(rec)


def time_guards(config: DetectorsConfig) -> tuple[EventTimeGuard, EventTimeGuard]:
    """The event-time guards of the requests and of the disk readings, from the ``time_guard`` settings.

    Disk readings come in rounds (every few minutes, hours or days): in a
    replay the next round is a whole interval ahead of the last, hence their
    own margin. They are only judged for being ahead: a late reading updates
    its own drive only (nothing is windowed), and the recent readings of a
    small fleet span days, too long for the reference time's estimate to
    judge lateness by.
    """
    c = config.time_guard
    return (EventTimeGuard(c.max_ahead, c.max_behind, c.span),
            EventTimeGuard(c.disk_max_ahead, math.inf, c.span))


class Outbox(Protocol):
    """Where the runner's records go. Keys and values are the bytes written to Kafka."""

    def anomaly(self, key: bytes, value: bytes) -> None: ...

    def alert(self, key: bytes, value: bytes) -> None: ...

    def dead_letter(self, value: bytes) -> None: ...

    def signal(self, key: bytes, value: bytes) -> None: ...


class CheckpointStore(Protocol):
    """Checkpointed models: ``put`` a value (None deletes) under a key, to a partition; ``items`` reads them all."""

    def put(self, key: bytes, value: bytes | None, partition: int) -> None: ...

    def items(self) -> Iterable[tuple[bytes, bytes | None]]: ...


class ListOutbox:
    """An outbox that keeps the records in lists (tests, the demo's counters).

    >>> box = ListOutbox()
    >>> box.alert(b"f1", b"{}")
    >>> box.alerts
    [(b'f1', b'{}')]
    """

    def __init__(self) -> None:
        self.anomalies: list[tuple[bytes, bytes]] = []
        self.alerts: list[tuple[bytes, bytes]] = []
        self.dead_letters: list[bytes] = []
        self.signals: list[tuple[bytes, bytes]] = []

    def anomaly(self, key: bytes, value: bytes) -> None:
        self.anomalies.append((key, value))

    def alert(self, key: bytes, value: bytes) -> None:
        self.alerts.append((key, value))

    def dead_letter(self, value: bytes) -> None:
        self.dead_letters.append(value)

    def signal(self, key: bytes, value: bytes) -> None:
        self.signals.append((key, value))


class DictStore:
    """A checkpoint store in a dict (tests; a backtest needs none)."""

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}
        self.writes: list[tuple[bytes, bytes | None, int]] = []

    def put(self, key: bytes, value: bytes | None, partition: int) -> None:
        if value is None:
            self.data.pop(key, None)
        else:
            self.data[key] = value
        self.writes.append((key, value, partition))

    def items(self) -> Iterable[tuple[bytes, bytes | None]]:
        return list(self.data.items())


class Runner:
    """Raw events in, records out through the ports, for one worker (or one backtest).

    Parameters
    ----------
    engine
        Detectors, diagnosis and alert lifecycle (:class:`~stream.engine.Engine`).
    outbox
        Where anomalies, alerts, dead letters and drive signals go.
    store
        Where checkpoints go (None: no checkpoints, as in a backtest).
    partitions
        Partitions of the ``models`` table: a checkpoint of source partition
        ``p`` goes to partition ``p % partitions``.
    checkpoint_interval
        Seconds between two checkpoints of the changed models (:meth:`maybe_checkpoint`).
    metrics
        A :class:`~stream.metrics.Metrics` (None: counters only).
    guard, disk_guard
        Event-time guards of the requests and of the disk readings
        (:class:`~detectors.timeguard.EventTimeGuard`, see :func:`time_guards`):
        events whose time a wrong clock set are dead-lettered instead of
        moving the watermark. None: every decoded event is processed.
    requests_topic, disk_topic
        Topic names written in the dead letters' ``source``.
    monotonic
        The clock of the checkpoint interval and of quiet partitions.
    """

    def __init__(
        self,
        engine: Engine,
        outbox: Outbox,
        store: CheckpointStore | None = None,
        *,
        partitions: int = 1,
        checkpoint_interval: float = 5.0,
        metrics: Any = None,
        guard: EventTimeGuard | None = None,
        disk_guard: EventTimeGuard | None = None,
        requests_topic: str = "requests",
        disk_topic: str = "disk-health",
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine = engine
        self.outbox = outbox
        self.store = store
        self.partitions = partitions
        self.checkpoint_interval = checkpoint_interval
        self.metrics = metrics
        self.guard = guard
        self.disk_guard = disk_guard
        self.requests_topic = requests_topic
        self.disk_topic = disk_topic
        self.monotonic = monotonic
        self.counts: Counter[str] = Counter()
        self.restored = False
        self._last_checkpoint = monotonic()
        self._last_seen: dict[int, float] = {}  # requests partition -> monotonic time of its last batch
        self._drive_partition: dict[str, int] = {}  # "host/disk" -> disk-health partition

    # -- dead letters ----------------------------------------------------------
    def dead_letter(self, source: dict[str, Any], error: str, payload: bytes | None, kind: str) -> None:
        """Send one bad input to the dead-letter port; a failure to do so is counted and logged, never raised."""
        self.counts[f"dead_letter.{kind}"] += 1
        if self.metrics is not None:
            self.metrics.dead_letter(error, source.get("topic", kind))
        try:
            self.outbox.dead_letter(dead_letter_record(source, error, payload))
        except Exception as exc:  # noqa: BLE001 - a dead letter that cannot be written must not stop the worker
            self.counts["dead_letter.failed"] += 1
            log.error("dead letter of %s not written (%s): %r", source, error, exc)

    # -- requests ----------------------------------------------------------------
    def admit_requests(self, values: Sequence[bytes], source: int,
                       where: Callable[[int], dict[str, Any]], arrival: float | None = None) -> RequestBatch:
        """Decode request messages; dead-letter the malformed and the mis-timed ones; return the rest.

        ``where(i)`` gives the coordinates of ``values[i]`` for its dead letter
        (``{"topic", "partition", "offset"}``, or ``{"file", "line"}`` in a
        backtest); ``arrival`` is when the batch arrived (wall clock, live),
        None when replaying.
        """
        evs, bad = decode_requests(list(values))
        return self.admit_decoded(evs, bad, values, source, where, arrival)

    def admit_decoded(self, evs: RequestBatch, bad: list[tuple[int, str]], values: Sequence[bytes], source: int,
                      where: Callable[[int], dict[str, Any]], arrival: float | None = None) -> RequestBatch:
        """:meth:`admit_requests` after ``decode_requests(values)`` gave ``evs`` and ``bad``."""
        for i, reason in bad:
            self.dead_letter(where(i), reason, values[i], "requests")
        if self.guard is not None and len(evs):
            evs, late = self.guard.split(evs, source, arrival)
            if late:
                gone = {i for i, _ in bad}
                kept = [i for i in range(len(values)) if i not in gone] if gone else None
                for j, reason in late:
                    i = kept[j] if kept is not None else j
                    self.dead_letter(where(i), reason, values[i], "requests")
        return evs

    def process_request_batch(self, evs: RequestBatch, source: int = 0) -> Output:
        """Decoded requests of one source into the engine; what they give is emitted and returned."""
        if not len(evs):
            return Output()
        self.counts["processed.requests"] += len(evs)
        out = self.engine.process_requests(evs, source)
        if out:
            self.emit(out)
        return out

    def process_request_records(self, partition: int, records: Sequence[Any], arrival: float | None = None) -> Output:
        """A batch of Kafka messages (``offset``, ``value``) of one requests partition."""
        self._last_seen[partition] = self.monotonic()
        t0 = time.perf_counter()
        topic = self.requests_topic
        values = [r.value for r in records]
        evs = self.admit_requests(values, partition,
                                  lambda i: {"topic": topic, "partition": partition, "offset": records[i].offset},
                                  arrival)
        out = self.process_request_batch(evs, partition)
        if self.metrics is not None and values:
            self.metrics.event_in(topic, len(values))
            self.metrics.processing_time((time.perf_counter() - t0) / len(values))
        return out

    # -- disks ---------------------------------------------------------------------
    def process_disk_event(self, ev: DiskHealthEvent, partition: int = 0) -> Output:
        self._drive_partition[f"{ev.host}/{ev.disk}"] = partition
        self.counts["processed.disk-health"] += 1
        out = self.engine.process_disk(ev)
        if out:
            self.emit(out)
        return out

    def process_disk_value(self, partition: int, offset: int, value: bytes | None,
                           arrival: float | None = None) -> Output:
        """One disk-health message: decoded, checked, processed, or dead-lettered with the reason."""
        if self.metrics is not None:
            self.metrics.event_in(self.disk_topic)
        where = {"topic": self.disk_topic, "partition": partition, "offset": offset}
        try:
            ev = decode_disk(value if value is not None else b"")
            reason = self.check_disk_time(ev, partition, arrival)
            if reason:
                raise InvalidEvent(reason)
        except InvalidEvent as exc:
            self.dead_letter(where, str(exc), value, "disk-health")
            return Output()
        return self.process_disk_event(ev, partition)

    def check_disk_time(self, ev: DiskHealthEvent, partition: int = 0, arrival: float | None = None) -> str | None:
        """Why a disk reading's time is not plausible (the disk guard's verdict), or None."""
        return None if self.disk_guard is None else self.disk_guard.check(ev.ts, partition, arrival)

    # -- drive signals shared by the workers ---------------------------------------
    def apply_signal(self, value: bytes) -> None:
        """A drive signal from the drive-signals topic (maybe this worker's own) into the engine."""
        try:
            sig = DiskSignal.from_record(orjson.loads(value))
        except (ValueError, KeyError, TypeError) as exc:
            log.error("unreadable drive signal skipped: %s", exc)
            self.counts["disk_signals.unreadable"] += 1
            return
        self.engine.apply_signal(sig)

    # -- labels people gave -----------------------------------------------------------
    def apply_label(self, rec: dict[str, Any]) -> bool:
        """A ``tocsin.label.v1`` record (the cause someone confirmed or corrected): the cause model learns it.

        Every worker reads every label; the one that still holds the alert's
        features learns from it (True), the others count it as not theirs.
        """
        fingerprint, cause = rec.get("fingerprint"), rec.get("cause")
        if not isinstance(fingerprint, str) or not isinstance(cause, str):
            self.counts["labels.unreadable"] += 1
            return False
        learnt = self.engine.learn_label(fingerprint, cause)
        self.counts["labels.learnt" if learnt else "labels.not_held"] += 1
        return learnt

    # -- output ----------------------------------------------------------------------
    def emit(self, out: Output) -> None:
        box = self.outbox
        counts = self.counts
        metrics = self.metrics
        for a in out.anomalies:
            box.anomaly(a.entity.key.encode(), orjson.dumps(a.to_record()))
            counts[f"anomalies.{a.detector}"] += 1
            if metrics is not None:
                metrics.anomaly(a)
        for al in out.alerts:
            box.alert(al.fingerprint.encode(), orjson.dumps(al.to_record()))
            counts[f"alerts.{al.status}"] += 1
            if metrics is not None:
                metrics.alert(al)
        for sig in out.signals:
            box.signal(f"{sig.host}/{sig.disk}".encode(),
                       orjson.dumps({"schema": DRIVE_SIGNAL_SCHEMA, **sig.to_record()}))

    # -- time --------------------------------------------------------------------------
    def tick(self, now: float, quiet_after: float, live_within: float = 600.0) -> Output:
        """Advance event time to ``now`` for partitions that went quiet on live traffic.

        A partition is quiet when nothing arrived from it for ``quiet_after``
        seconds; it is live when its last event time is recent. Partitions
        that lag (a consumer catching up) are not quiet and are left alone.
        A service that went silent (an outage!) still gets its windows closed.
        """
        out = Output()
        mono = self.monotonic()
        agg = self.engine.aggregator
        for partition, seen in list(self._last_seen.items()):
            if mono - seen >= quiet_after and 0.0 <= now - agg.source_watermark(partition) <= live_within:
                o = self.engine.advance(now, partition)
                if o:
                    self.emit(o)
                    out.extend(o)
        return out

    def flush(self) -> Output:
        """Close the open windows and emit what they give (end of a replay or a demo)."""
        out = self.engine.flush()
        if out:
            self.emit(out)
        return out

    # -- state -------------------------------------------------------------------------
    def maybe_checkpoint(self) -> int:
        if self.monotonic() - self._last_checkpoint >= self.checkpoint_interval:
            return self.checkpoint()
        return 0

    def _state_key(self, name: str) -> tuple[str, int] | None:
        """Store key and source partition of one engine state name (``kind:key``)."""
        kind, _, key = name.partition(":")
        owner = key.split("|", 1)[0]
        if kind == "drive" or owner.startswith("@"):
            p = self._drive_partition.get(key if kind == "drive" else owner[1:])
            return None if p is None else (f"d{p}/{name}", p)
        if kind == "shared":  # state of no one key (the disk model's fleet): every worker keeps its own
            return f"s0/{name}", 0
        source = self.engine.source_of(owner)
        if source is None:
            return None
        return f"r{source}/{name}", source

    def checkpoint(self) -> int:
        """Write the changed models to the store, each to the partition it comes from."""
        self._last_checkpoint = self.monotonic()
        if self.store is None:
            return 0
        n = 0
        for name, value in self.engine.dirty_states().items():
            where = self._state_key(name)
            if where is None:
                continue
            self.store.put(where[0].encode(), value, where[1] % self.partitions)
            n += 1
        self.counts["checkpointed"] += n
        return n

    def restore(self, partitions: set[int] | None = None) -> int:
        """Load the checkpointed models of these requests/disk partitions (all when None).

        The first window of each restored service is partial: its earlier
        events were counted by the process that died.
        """
        self.restored = True
        if self.store is None:
            return 0
        n = 0
        services: set[str] = set()
        for k, v in self.store.items():
            if v is None:
                continue
            where, _, name = k.decode().partition("/")
            if partitions is not None and where[0] != "s" and int(where[1:]) not in partitions:
                continue
            if not self.engine.load_state(name, v):
                continue  # refused (logged and counted as checkpoint.refused): that state starts afresh
            kind, _, key = name.partition(":")
            owner = key.split("|", 1)[0]
            if where[0] == "d" and (kind == "drive" or owner.startswith("@")):
                # A drive's state goes back where it came from, even if the drive never reports
                # again (pulled): its alert's end and its forgetting are written there.
                self._drive_partition.setdefault(key if kind == "drive" else owner[1:], int(where[1:]))
            if kind not in ("drive", "alert", "shared"):
                services.add(owner)
            n += 1
        if n:
            log.info("restored %d models from the checkpoint store", n)
            self.engine.mark_resumed(services)
        self.counts["restored"] += n
        return n

    def forget_partitions(self, partitions: set[int]) -> None:
        """Drop the services read from these requests partitions (another worker has them now)."""
        self.engine.forget_sources(partitions)
        if self.guard is not None:
            self.guard.forget(partitions)
        for p in partitions:
            self._last_seen.pop(p, None)
