"""The Faust application: topics, tables and agents wired to one :class:`~stream.runner.Runner`.

One place builds the App (:class:`TocsinApp`). The processing itself is the
runner's (decode, dead letters, engine, emit, checkpoint, restore); this
module gives it its ports and feeds it:

requests (:class:`~stream.reader.RequestReader`)
    batches of raw messages from a consumer of its own, following Faust's
    partition assignment, into ``Runner.process_request_records``. With
    in-memory outputs (tests without a broker) a ``detect_requests`` agent
    hands the runner the same records one at a time.
``detect_disks``
    disk-health messages into ``Runner.process_disk_value``.
outputs (:class:`TopicOutbox`)
    the runner's records are buffered and sent to their topics after each
    call: anomalies, alert state changes, dead letters, drive signals.
checkpoints (:class:`TableStore`)
    the ``models`` table (changelog-backed), keys naming the partition the
    state comes from (``r3/traffic:ent-idf``).
``notify_alerts`` and the silences (:mod:`stream.alerting`)
    read ``alerts`` back and run the notification pipeline, so every state
    change is in Kafka before any receiver is called.
``read_drive_signals``
    every drive signal goes to the internal ``<app id>-drive-signals``
    topic, which every worker reads whole: a service's diagnosis may need
    the drives another worker reads.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

import faust

from alerts.notify.base import Receiver
from alerts.notify.factory import build_receivers
from detectors.timeguard import EventTimeGuard

from . import compat
from .alerting import Notifications
from .engine import Engine, Output
from .metrics import Metrics, update_lag
from .reader import RequestReader, follow_topic
from .runner import Runner, time_guards
from .settings import Config
from .web import faust_web_settings

__all__ = ["TableStore", "TocsinApp", "TopicOutbox", "wait_until"]

log = logging.getLogger(__name__)


class TopicOutbox:
    """The runner's outbox on Faust: records are buffered, then :meth:`drain` sends them.

    The runner is synchronous; sending is not. Each call into the runner is
    followed by one ``await drain()``, so the records leave in the order
    they were made. A record that cannot be sent is logged and counted,
    and the others still go: one unsendable dead letter must not stop the
    worker.
    """

    def __init__(self, counts: Counter[str]) -> None:
        self.counts = counts
        self._pending: list[tuple[str, bytes | None, bytes]] = []
        self._senders: dict[str, Callable[[bytes | None, bytes], Any]] = {}

    def connect(self, kind: str, send: Callable[[bytes | None, bytes], Any]) -> None:
        """``send(key, value)`` (async) for one kind of record: anomaly, alert, dead_letter, signal."""
        self._senders[kind] = send

    def anomaly(self, key: bytes, value: bytes) -> None:
        self._pending.append(("anomaly", key, value))

    def alert(self, key: bytes, value: bytes) -> None:
        self._pending.append(("alert", key, value))

    def dead_letter(self, value: bytes) -> None:
        self._pending.append(("dead_letter", None, value))

    def signal(self, key: bytes, value: bytes) -> None:
        self._pending.append(("signal", key, value))

    async def drain(self) -> None:
        pending, self._pending = self._pending, []
        senders = self._senders
        for kind, key, value in pending:
            send = senders.get(kind)
            if send is None:
                continue
            try:
                await send(key, value)
            except Exception as exc:  # noqa: BLE001 - one record that cannot be sent does not stop the others
                self.counts[f"send_failed.{kind}"] += 1
                log.error("a %s record of %d bytes was not sent: %r", kind, len(value), exc)


class TableStore:
    """The runner's checkpoint store on the ``models`` table (raw bytes, changelog-backed)."""

    def __init__(self, table: Any) -> None:
        self.table = table

    def put(self, key: bytes, value: bytes | None, partition: int) -> None:
        if value is None:  # an alert that ended: delete its checkpoint
            self.table.data.pop(key, None)
        else:
            self.table.data[key] = value
        self.table.send_changelog(partition, key, value)

    def items(self) -> Iterable[tuple[bytes, bytes | None]]:
        return list(self.table.data.items())


class TocsinApp:
    """Builds the Faust app of one tocsin worker and wires it to a :class:`~stream.runner.Runner`.

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
    web
        Serve the worker's HTTP API (silences) on ``config.web``.
    local_outputs
        Write anomalies, alerts and dead letters to in-memory channels (tests).
    clock
        Wall clock of the notification timers (group_wait...), injected in tests.
    guards
        The runner's event-time guards of requests and disk readings (None:
        built from the configuration).
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
        guards: tuple[EventTimeGuard, EventTimeGuard] | None = None,
    ) -> None:
        self.config = config
        self.servers = bootstrap_servers
        self.embedded = embedded
        self.local_outputs = local_outputs
        self.clock = clock
        self.metrics = metrics or Metrics()
        self.receivers = receivers if receivers is not None else build_receivers(config.alerting)
        self.app = self._build_app(app_id, web, data_dir)
        t = config.topics
        self.requests_topic = self._topic(t.requests)
        self.disk_topic = self._topic(t.disk_health)
        # local_outputs: in-memory channels instead of topics, so agents can be
        # tested with ``agent.test_context()`` and no broker (faust testing guide).
        out = (lambda _name: self.app.channel(maxsize=100_000)) if local_outputs else self._topic
        self.anomalies_topic = out(t.anomalies)
        self.alerts_topic = out(t.alerts)
        self.dead_letter_topic = out(t.dead_letter)
        # Drive signals shared by every worker (see Engine.apply_signal); one
        # worker alone needs none. Compacted: the latest state of each drive.
        self.signals_topic = None if local_outputs else self.app.topic(
            f"{self.app.conf.id}-drive-signals", key_type=bytes, value_type=bytes, key_serializer="raw",
            value_serializer="raw", partitions=1, internal=True, compacting=True)
        # Keys and values are raw bytes (the app's serializers): compact, no pickle.
        self.models_table = self.app.Table("models", default=None, key_type=bytes, value_type=bytes)

        self.counts: Counter[str] = Counter()
        self.outbox = TopicOutbox(self.counts)
        self._connect_outbox()
        guard, disk_guard = guards if guards is not None else time_guards(config.detectors)
        self.runner = Runner(
            engine or Engine(config.detectors, config.alerting), self.outbox, TableStore(self.models_table),
            partitions=config.kafka.partitions, checkpoint_interval=checkpoint_interval, metrics=self.metrics,
            guard=guard, disk_guard=disk_guard, requests_topic=t.requests, disk_topic=t.disk_health,
        )
        # The runner counts what it handed to the outbox; those counts join
        # the app's once the records are sent (:meth:`_drain`), so that
        # "processed" means written out, as callers waiting on it expect.
        self._handed = self.runner.counts
        self.engine = self.runner.engine
        self.reader: RequestReader | None = None
        self._register_agents()
        # The notification side: its own agents, tables, silences and views.
        self.notifications = Notifications(
            self.app, config, self.receivers, alerts_topic=self.alerts_topic,
            silences_topic=self._topic(t.silences), counts=self.counts, metrics=self.metrics, clock=clock,
            follow=None if local_outputs else self._follow, web=web,
            acks_topic=self._topic(t.acks), labels_topic=self._topic(t.labels),
        )
        # Labels from Slack (or the CLI) teach the cause model.
        self.notifications.label_listeners.append(self.runner.apply_label)
        self.notifier = self.notifications.notifier
        self.silences = self.notifications.silences
        self.silences_topic = self.notifications.silences_topic
        self.notify_alerts = self.notifications.notify_alerts

    # -- building -------------------------------------------------------------
    def _build_app(self, app_id: str | None, web: bool, data_dir: str | None) -> faust.App:
        kafka = self.config.kafka
        opts: dict[str, Any] = {}
        creds = kafka.faust_credentials()
        if creds is not None:
            opts["broker_credentials"] = creds
        if self.embedded:
            opts.update(broker_session_timeout=6.0, broker_heartbeat_interval=1.0, producer_max_batch_size=1)
        app = faust.App(
            app_id or kafka.group_id,
            broker=[f"kafka://{s.strip()}" for s in self.servers.split(",")],
            broker_client_id=kafka.client_id,
            value_serializer="raw",
            key_serializer="raw",
            store="memory://",
            processing_guarantee="at_least_once",
            topic_partitions=kafka.partitions,
            topic_replication_factor=kafka.replication_factor,
            consumer_auto_offset_reset="earliest",
            web_enabled=web,
            **faust_web_settings(self.config.web),
            autodiscover=False,
            stream_wait_empty=False,
            datadir=data_dir or tempfile.mkdtemp(prefix="tocsin-faust-"),
            **opts,
        )
        # Every producer Faust makes keeps the metadata of the topics it sends to
        # (and an aiokafka / Faust that compat.py was not checked with is refused here).
        compat.track_app_producers(app)
        return app

    def _topic(self, name: str) -> faust.TopicT:
        return self.app.topic(name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")

    def _connect_outbox(self) -> None:
        box = self.outbox
        if self.local_outputs:
            for kind, topic in (("anomaly", self.anomalies_topic), ("alert", self.alerts_topic),
                                ("dead_letter", self.dead_letter_topic)):
                box.connect(kind, lambda k, v, t=topic: t.send(key=k, value=v))
            return
        # Anomalies, one per window closed, go to Faust's producer directly,
        # without the Topic's per-message machinery: same producer, so the
        # same partitioner, and the reader's producer.flush() before each
        # commit covers them.
        name = self.anomalies_topic.get_topic_name()
        producer = self.app.producer
        box.connect("anomaly", lambda k, v: producer.send(name, k, v, None, None, None))
        box.connect("alert", lambda k, v: self.alerts_topic.send(key=k, value=v))
        box.connect("dead_letter", lambda k, v: self.dead_letter_topic.send(key=k, value=v))
        signals = self.signals_topic
        assert signals is not None
        box.connect("signal", lambda k, v: signals.send(key=k, value=v))

    async def _follow(self, topic: Any, handle: Callable[[bytes], None]) -> None:
        await follow_topic(self.servers, self.config.kafka, topic, handle)

    # -- agents ------------------------------------------------------------------
    def _register_agents(self) -> None:
        app = self.app
        runner = self.runner
        if self.local_outputs:
            @app.agent(self.requests_topic, name="detect_requests")
            async def detect_requests(stream: faust.StreamT) -> None:
                async for event in stream.events():
                    await self.process_request_records(event.message.partition, [event.message])
            self.detect_requests = detect_requests
        else:
            self.reader = reader = RequestReader(
                self.servers, self.config.kafka, self.config.topics.requests,
                group_id=f"{app.conf.id}-requests",
                process=self.process_request_records, before_commit=self._durable,
                on_lost=runner.forget_partitions, on_gained=runner.restore,
                declare=self.requests_topic.maybe_declare,
                commit_interval=runner.checkpoint_interval,
                max_partition_fetch_bytes=(1 if self.embedded else 4) * 1024 * 1024,
            )
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
                await reader.on_assigned(parts, self.config.kafka.partitions)
                runner.restored = True

            signals = self.signals_topic

            @app.task
            async def read_drive_signals() -> None:
                await self._follow(signals, runner.apply_signal)

        @app.agent(self.disk_topic, name="detect_disks")
        async def detect_disks(stream: faust.StreamT) -> None:
            async for event in stream.events():
                if not runner.restored:
                    runner.restore()
                msg = event.message
                runner.process_disk_value(msg.partition, msg.offset, event.value, arrival=time.time())
                await self._drain()
                runner.maybe_checkpoint()

        @app.timer(interval=max(1.0, self.config.detectors.window / 4), name="close_idle_windows")
        async def close_idle_windows() -> None:
            # Live traffic: event time follows the clock, so a service that
            # went silent (an outage!) still gets its windows closed.
            await self.tick(time.time())
            self.metrics.track_engine(self.engine, (self.runner.guard, self.runner.disk_guard))
            await update_lag(self.metrics, self.app.consumer)
            if self.reader is not None:
                await self.reader.lag(self.metrics)

        self.detect_disks = detect_disks

    async def _durable(self) -> bool:
        """Before the reader commits offsets: checkpoint, then flush the producer. False when stopping."""
        self.runner.checkpoint()
        await self._drain()
        try:
            await self.app.producer.flush()
        except RuntimeError as exc:  # stopping: the producer went first
            log.info("offsets not committed (%s): the next start reads them again", exc)
            return False
        return True

    # -- calls into the runner, then out through the outbox -----------------------
    async def _drain(self) -> None:
        await self.outbox.drain()
        if self._handed:
            self.counts.update(self._handed)
            self._handed.clear()

    async def process_request_records(self, partition: int, records: list[Any]) -> None:
        """A batch of messages (``offset``, ``value``) of one requests partition."""
        runner = self.runner
        if not runner.restored:
            runner.restore()
        runner.process_request_records(partition, records, arrival=time.time())
        await self._drain()
        if self.reader is None:  # tests: the reader checkpoints in Kafka mode
            runner.maybe_checkpoint()

    async def emit(self, out: Output) -> None:
        self.runner.emit(out)
        await self._drain()

    async def tick(self, now: float, live_within: float = 600.0) -> None:
        self.runner.tick(now, 2 * self.config.detectors.window, live_within)
        await self._drain()

    async def flush(self) -> None:
        """Close the open windows and publish what they give (end of a demo)."""
        self.runner.flush()
        await self._drain()

    def checkpoint(self) -> int:
        return self.runner.checkpoint()

    def restore(self, partitions: set[int] | None = None) -> int:
        return self.runner.restore(partitions)

    def crash_reason(self) -> BaseException | None:
        """Why the app or one of its agents crashed (Faust then runs on without it), or None."""
        return compat.crash_reason(self.app)

    async def close_receivers(self) -> None:
        await self.notifications.close_receivers()


async def wait_until(cond: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        await asyncio.sleep(interval)
    return cond()
