"""The Faust application: topics, tables and agents around one Engine.

One place builds the App (:class:`TocsinApp`); the agents are short loops:

requests (:mod:`stream.reader`) / ``detect_disks``
    raw bytes in, decoded with msgspec (a ``faust.Record`` costs 13x more),
    malformed messages to ``dead-letter`` with the reason and the original
    bytes, good ones to the Engine; anomalies to ``anomalies``, alert state
    changes to ``alerts``. Request events, the hot path, are read in batches
    by a :class:`~stream.reader.RequestReader` that follows Faust's partition
    assignment; with in-memory outputs (tests) a ``detect_requests`` agent
    feeds the same batch function one event at a time.
``notify_alerts`` (in :mod:`stream.alerting`)
    reads ``alerts`` back and runs the notification pipeline, so every state
    change is in Kafka before any receiver is called and a restarted worker
    delivers what was not yet delivered.
``read_drive_signals``
    every drive signal (a flagged or replaced drive) goes to the internal
    ``<app id>-drive-signals`` topic, which every worker reads whole: the
    disk-health topic is keyed by host and the requests by service, so with
    several workers the diagnosis of a service needs drives another worker
    reads. A restarted worker gets its drives' signals back the same way.

Per-key models are checkpointed every few seconds into the ``models`` table
(backed by its changelog topic), under a key that names the partition they
come from (``r3/traffic:ent-idf``, ``d1/drive:host/sda``), and loaded back
when a rebalance gives the worker that partition.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import faust
import orjson

from alerts.notify.base import Receiver
from alerts.notify.factory import build_receivers
from detectors.diagnosis import DiskSignal
from detectors.errors import InvalidEvent
from detectors.events import decode_disk, decode_requests

from .alerting import Notifications
from .broker import track_produced_topics
from .engine import Engine, Output
from .metrics import Metrics, update_lag
from .reader import RequestReader, follow_topic
from .settings import Config

__all__ = ["TocsinApp", "dead_letter_record"]

log = logging.getLogger(__name__)

#: Schema tag of the records on the internal ``<app id>-drive-signals`` topic.
_SIGNAL = "tocsin.drive-signal.v1"

DEAD_LETTER_SCHEMA = "tocsin.dead-letter.v1"


def dead_letter_record(topic: str, partition: int, offset: int, error: str, payload: bytes | None) -> bytes:
    return orjson.dumps({
        "schema": DEAD_LETTER_SCHEMA,
        "source": {"topic": topic, "partition": partition, "offset": offset},
        "error": error,
        "payload": base64.b64encode(payload or b"").decode(),
    })


class TocsinApp:
    """Builds and holds the Faust app of one tocsin worker.

    Parameters
    ----------
    config
        The loaded configuration.
    bootstrap_servers
        ``host:port[,host:port]`` of the brokers.
    embedded
        True on the embedded tansu broker: applies the settings it needs
        (6 s session timeout, 1-record producer batches, at-least-once).
    engine, receivers
        Injected for the demo and tests; built from ``config`` otherwise.
    app_id
        Faust app id (consumer group and table topic prefix).
    checkpoint_interval
        Seconds between checkpoints of the changed models.
    local_outputs
        Write anomalies, alerts and dead letters to in-memory channels (tests).
    clock
        Wall clock of the notification timers (group_wait...), injected in tests.
    """

    def __init__(
        self,
        config: Config,
        bootstrap_servers: str,
        *,
        embedded: bool = False,
        engine: Engine | None = None,
        receivers: dict[str, Receiver] | None = None,
        app_id: str | None = None,
        checkpoint_interval: float = 5.0,
        web: bool = False,
        data_dir: str | None = None,
        local_outputs: bool = False,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.engine = engine or Engine(config.detectors, config.alerting)
        self.receivers = receivers if receivers is not None else build_receivers(config.alerting)
        self.checkpoint_interval = checkpoint_interval
        self.clock = clock
        self.local_outputs = local_outputs
        self._servers = bootstrap_servers
        self.counts: Counter[str] = Counter()
        self.metrics = metrics or Metrics()
        self._last_checkpoint = time.monotonic()
        self._last_seen: dict[int, float] = {}  # requests partition -> wall time of its last event
        self._restored = False
        self._drive_partition: dict[str, int] = {}  # drive key -> disk-health partition
        kafka = config.kafka
        opts: dict[str, Any] = {}
        creds = kafka.faust_credentials()
        if creds is not None:
            opts["broker_credentials"] = creds
        self.embedded = embedded
        if embedded:
            opts.update(
                broker_session_timeout=6.0,
                broker_heartbeat_interval=1.0,
                producer_max_batch_size=1,
            )
        self.app = faust.App(
            app_id or kafka.group_id,
            broker=[f"kafka://{s.strip()}" for s in bootstrap_servers.split(",")],
            broker_client_id=kafka.client_id,
            value_serializer="raw",
            key_serializer="raw",
            store="memory://",
            processing_guarantee="at_least_once",
            topic_partitions=kafka.partitions,
            topic_replication_factor=kafka.replication_factor,
            consumer_auto_offset_reset="earliest",
            web_enabled=web,
            web_host=config.web.host,
            web_port=config.web.port,
            autodiscover=False,
            stream_wait_empty=False,
            datadir=data_dir or tempfile.mkdtemp(prefix="tocsin-faust-"),
            **opts,
        )
        # Every producer Faust makes keeps the metadata of the topics it sends to.
        fproducer: Any = self.app.producer
        new_producer = fproducer._new_producer

        def tracked_producer(*args: Any, **kwargs: Any) -> Any:
            producer = new_producer(*args, **kwargs)
            track_produced_topics(producer)
            return producer

        fproducer._new_producer = tracked_producer
        t = config.topics
        topic = self._topic
        self.requests_topic = topic(t.requests)
        self.requests_name = t.requests
        self.disk_topic = topic(t.disk_health)
        # local_outputs: in-memory channels instead of topics, so agents can be
        # tested with ``agent.test_context()`` and no broker (faust testing guide).
        out = (lambda _name: self.app.channel(maxsize=100_000)) if local_outputs else topic
        self.anomalies_topic = out(t.anomalies)
        self._send_anomaly = self._anomaly_sender()
        self.alerts_topic = out(t.alerts)
        self.dead_letter_topic = out(t.dead_letter)
        # Drive signals shared by every worker (see Engine.apply_signal); one
        # worker alone needs none. Compacted: the latest state of each drive.
        self.signals_topic = None if local_outputs else self.app.topic(
            f"{self.app.conf.id}-drive-signals", key_type=bytes, value_type=bytes, key_serializer="raw",
            value_serializer="raw", partitions=1, internal=True, compacting=True)
        # Keys and values are raw bytes (the app's serializers): compact, no pickle.
        self.models_table = self.app.Table("models", default=None, key_type=bytes, value_type=bytes)
        self._register_agents()
        # The notification side: its own agent, tables, silences and views.
        self.notifications = Notifications(self)
        self.notifier = self.notifications.notifier
        self.silences = self.notifications.silences
        self.silences_topic = self.notifications.silences_topic
        self.notify_alerts = self.notifications.notify_alerts

    def _anomaly_sender(self) -> Callable[[bytes, bytes], Awaitable[Any]]:
        """``send(key, value)`` to the anomalies topic.

        Anomalies are the output of the hot path (about one per window
        closed): on a broker they go to Faust's producer directly, without
        the Topic's per-message machinery, which cost about as much as
        closing the windows (`benchmarks/e2e.py` under py-spy). Same
        producer, so the same partitioner, and the reader's
        ``producer.flush()`` before each commit covers them.
        """
        topic = self.anomalies_topic
        if self.local_outputs:
            return lambda key, value: topic.send(key=key, value=value)
        name = topic.get_topic_name()
        producer = self.app.producer
        return lambda key, value: producer.send(name, key, value, None, None, None)

    def _topic(self, name: str) -> faust.TopicT:
        return self.app.topic(name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")

    # -- agents ------------------------------------------------------------
    def _register_agents(self) -> None:
        app = self.app

        self.reader: RequestReader | None = None
        if self.local_outputs:
            @app.agent(self.requests_topic, name="detect_requests")
            async def detect_requests(stream: faust.StreamT) -> None:
                async for event in stream.events():
                    if not self._restored:
                        self.restore()
                    msg = event.message
                    await self.process_request_records(msg.partition, [msg])
            self.detect_requests = detect_requests
        else:
            reader = self.reader = RequestReader(self)
            models_changelog = self.models_table.changelog_topic.get_topic_name()

            @app.task
            async def read_requests() -> None:
                await reader.run()

            @app.on_partitions_revoked.connect
            async def on_revoked(sender: Any, revoked: Any, **kwargs: Any) -> None:
                await reader.on_revoked()

            @app.on_rebalance_complete.connect
            async def on_assigned(sender: Any, **kwargs: Any) -> None:
                actives = sender.assignor.assigned_actives()
                parts = {tp.partition for tp in actives if tp.topic == models_changelog}
                await reader.on_assigned(parts)
                self._restored = True

            @app.task
            async def read_drive_signals() -> None:
                await follow_topic(self, self.signals_topic, self._apply_signal)

        @app.agent(self.disk_topic, name="detect_disks")
        async def detect_disks(stream: faust.StreamT) -> None:
            async for event in stream.events():
                await self._consume(event, "disk-health", decode_disk,
                                    lambda ev, p=event.message.partition: self._process_disk(ev, p))

        @app.timer(interval=max(1.0, self.config.detectors.window / 4), name="close_idle_windows")
        async def close_idle_windows() -> None:
            # Live traffic: event time follows the clock, so a service that
            # went silent (an outage!) still gets its windows closed.
            await self.tick(time.time())
            self.metrics.track_engine(self.engine)
            await update_lag(self.metrics, self.app.consumer)
            if self.reader is not None:
                await self.reader.lag(self.metrics)

        self.detect_disks = detect_disks

    async def _consume(self, event: faust.EventT, kind: str, decode: Callable, process: Callable[[Any], Output]) -> None:
        msg = event.message
        if not self._restored:
            self.restore()
        self.metrics.event_in(msg.topic)
        timed = self.metrics.sample()
        t0 = time.perf_counter() if timed else 0.0
        try:
            ev = decode(event.value)
        except InvalidEvent as exc:
            self.counts[f"dead_letter.{kind}"] += 1
            self.metrics.dead_letter(str(exc), msg.topic)
            await self.dead_letter_topic.send(
                key=None, value=dead_letter_record(msg.topic, msg.partition, msg.offset, str(exc), event.value)
            )
            return
        self.counts[f"processed.{kind}"] += 1
        out = process(ev)
        if timed:
            self.metrics.processing_time(time.perf_counter() - t0)
        if out:
            await self.emit(out)
        self._maybe_checkpoint()

    async def emit(self, out: Output) -> None:
        for a in out.anomalies:
            await self._send_anomaly(a.entity.key.encode(), orjson.dumps(a.to_record()))
            self.counts[f"anomalies.{a.detector}"] += 1
            self.metrics.anomaly(a)
        for al in out.alerts:
            await self.alerts_topic.send(key=al.fingerprint.encode(), value=orjson.dumps(al.to_record()))
            self.counts[f"alerts.{al.status}"] += 1
            self.metrics.alert(al)
        if self.signals_topic is not None:
            for sig in out.signals:
                await self.signals_topic.send(key=f"{sig.host}/{sig.disk}".encode(),
                                              value=orjson.dumps({"schema": _SIGNAL, **sig.to_record()}))

    def _apply_signal(self, value: bytes) -> None:
        """A drive signal from the drive-signals topic (maybe our own) into the engine."""
        try:
            sig = DiskSignal.from_record(orjson.loads(value))
        except (ValueError, KeyError, TypeError) as exc:
            log.error("unreadable drive signal skipped: %s", exc)
            self.counts["disk_signals.unreadable"] += 1
            return
        self.engine.apply_signal(sig)

    async def process_request_records(self, partition: int, records: list[Any]) -> None:
        """Decode, dead-letter and process a batch of messages (with ``offset`` and ``value``) of one requests partition."""
        topic = self.requests_name
        metrics = self.metrics
        self._last_seen[partition] = time.monotonic()
        t0 = time.perf_counter()
        values = [r.value for r in records]
        evs, bad = decode_requests(values)
        for i, reason in bad:
            offset, value = records[i].offset, values[i]
            self.counts["dead_letter.requests"] += 1
            metrics.dead_letter(reason, topic)
            await self.dead_letter_topic.send(
                key=None, value=dead_letter_record(topic, partition, offset, reason, value))
        out = self.engine.process_requests(evs, partition) if evs else None
        good = len(evs)
        self.counts["processed.requests"] += good
        metrics.event_in(topic, len(values))
        metrics.processing_time((time.perf_counter() - t0) / len(values))
        if out:
            await self.emit(out)
        if self.reader is None:  # tests: the reader checkpoints in Kafka mode
            self._maybe_checkpoint()

    def _process_disk(self, ev: Any, partition: int) -> Output:
        self._drive_partition[f"{ev.host}/{ev.disk}"] = partition
        return self.engine.process_disk(ev)

    # -- state ---------------------------------------------------------------
    def _maybe_checkpoint(self) -> None:
        if time.monotonic() - self._last_checkpoint >= self.checkpoint_interval:
            self.checkpoint()

    def _state_key(self, name: str) -> tuple[str, int] | None:
        """Table key and partition of one engine state name (``kind:key``)."""
        kind, _, key = name.partition(":")
        owner = key.split("|", 1)[0]
        if kind == "drive" or owner.startswith("@"):
            p = self._drive_partition.get(key if kind == "drive" else owner[1:])
            return None if p is None else (f"d{p}/{name}", p)
        source = self.engine.source_of(owner)
        if source is None:
            return None
        return f"r{source}/{name}", source

    def checkpoint(self) -> int:
        """Write the changed models to the ``models`` table, each to the partition it comes from.

        No event context needed (the partition is explicit), so the request
        reader checkpoints between batches and the disk agent from its loop.
        """
        self._last_checkpoint = time.monotonic()  # whoever calls (reader or disk agent), one clock
        table = self.models_table
        n_parts = self.config.kafka.partitions
        states = self.engine.dirty_states()
        n = 0
        for name, value in states.items():
            where = self._state_key(name)
            if where is None:
                continue
            key = where[0].encode()
            if value is None:  # an alert that ended: delete its checkpoint
                table.data.pop(key, None)
            else:
                table.data[key] = value
            table.send_changelog(where[1] % n_parts, key, value)
            n += 1
        self.counts["checkpointed"] += n
        return n

    def restore(self, partitions: set[int] | None = None) -> int:
        """Load the checkpointed models of these requests/disk partitions (all when None).

        Called when a rebalance gives this worker partitions (after table
        recovery), or at the first event in tests. The first window of each
        restored service is partial: its earlier events were counted by the
        process that died.
        """
        self._restored = True
        n = 0
        services: set[str] = set()
        for k, v in list(self.models_table.data.items()):
            if v is None:
                continue
            where, _, name = k.decode().partition("/")
            if partitions is not None and int(where[1:]) not in partitions:
                continue
            self.engine.load_state(name, v)
            kind, _, key = name.partition(":")
            if kind not in ("drive", "alert"):
                services.add(key.split("|", 1)[0])
            n += 1
        if n:
            log.info("restored %d models from the models table", n)
            self.engine.mark_resumed(services)
        self.counts["restored"] += n
        return n

    def forget_partitions(self, partitions: set[int]) -> None:
        """Drop the services read from these requests partitions (another worker has them now)."""
        self.engine.forget_sources(partitions)
        for p in partitions:
            self._last_seen.pop(p, None)

    async def tick(self, now: float, live_within: float = 600.0) -> None:
        """Advance event time to ``now`` for partitions that went quiet on live traffic.

        A partition is quiet when nothing arrived from it for two windows of
        wall time; it is live when its last event time is recent. Partitions
        that lag (a consumer catching up) are not quiet and are left alone.
        """
        quiet_after = 2 * self.config.detectors.window
        mono = time.monotonic()
        agg = self.engine.aggregator
        for partition, seen in list(self._last_seen.items()):
            if mono - seen >= quiet_after and 0.0 <= now - agg.source_watermark(partition) <= live_within:
                out = self.engine.advance(now, partition)
                if out:
                    await self.emit(out)

    async def flush(self) -> None:
        """Close the open windows and publish what they give (end of a demo)."""
        out = self.engine.flush()
        if out:
            await self.emit(out)

    def crash_reason(self) -> BaseException | None:
        """Why the app or one of its agents crashed (Faust then runs on without it), or None."""
        app = self.app
        return app._crash_reason or next(
            (a._crash_reason for a in app.agents.values() if a._crash_reason), None)

    async def close_receivers(self) -> None:
        await self.notifications.close_receivers()



async def wait_until(cond: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        await asyncio.sleep(interval)
    return cond()
