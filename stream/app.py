"""The Faust application: topics, tables and agents around one Engine.

One place builds the App (:class:`TocsinApp`); the agents are short loops:

``detect_requests`` / ``detect_disks``
    raw bytes in, decoded with msgspec (a ``faust.Record`` costs 13x more),
    malformed messages to ``dead-letter`` with the reason and the original
    bytes, good ones to the Engine; anomalies to ``anomalies``, alert state
    changes to ``alerts``.
``notify_alerts``
    reads ``alerts`` back and runs the notification pipeline, so every state
    change is in Kafka before any receiver is called and a restarted worker
    delivers what was not yet delivered.

Per-key models are checkpointed every few seconds into the ``models`` table
(backed by its changelog topic) and loaded back when the worker starts.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import faust
import orjson

from alerts.model import alert_from_record
from alerts.notify.base import Receiver
from alerts.notify.factory import build_receivers
from alerts.notify.notifier import AlertNotifier
from alerts.silence import SilenceAPI, SilenceError, SilenceStore
from detectors.errors import InvalidEvent
from detectors.events import decode_disk, decode_request

from .engine import Engine, Output
from .metrics import Metrics, update_lag
from .settings import Config

__all__ = ["TocsinApp", "dead_letter_record"]

log = logging.getLogger(__name__)

DEAD_LETTER_SCHEMA = "tocsin.dead-letter.v1"
#: Internal message that makes the notify agent deliver the groups that are due.
TICK = b"tocsin:notify-tick"


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
        kafka = config.kafka
        opts: dict[str, Any] = {}
        creds = kafka.faust_credentials()
        if creds is not None:
            opts["broker_credentials"] = creds
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
        t = config.topics
        topic = self._topic
        self.requests_topic = topic(t.requests)
        self.disk_topic = topic(t.disk_health)
        # local_outputs: in-memory channels instead of topics, so agents can be
        # tested with ``agent.test_context()`` and no broker (faust testing guide).
        out = (lambda _name: self.app.channel(maxsize=100_000)) if local_outputs else topic
        self.anomalies_topic = out(t.anomalies)
        self.alerts_topic = out(t.alerts)
        self.dead_letter_topic = out(t.dead_letter)
        # Keys and values are raw bytes (the app's serializers): compact, no pickle.
        self.models_table = self.app.Table("models", default=None, key_type=bytes, value_type=bytes)
        self.deliveries_table = self.app.Table("deliveries", default=None, key_type=bytes, value_type=bytes)
        self.groups_table = self.app.Table("alert_groups", default=None, key_type=bytes, value_type=bytes)
        self.silences = SilenceStore()
        self.notifier = AlertNotifier(config.alerting, self.receivers, _BytesKeyed(self.deliveries_table),
                                      groups=_BytesKeyed(self.groups_table), silences=self.silences)
        self._notifier_restored = False
        # Group timers (group_wait, group_interval...) run in the notify agent,
        # where the tables can be written: a timer sends a tick to every
        # partition of this internal topic, which the agent reads with the
        # alerts. In-memory outputs (tests) have no ticks.
        self.silences_topic = topic(t.silences)
        self.ticks_topic = None if local_outputs else self.app.topic(
            f"{self.app.conf.id}-notify-ticks", key_type=bytes, value_type=bytes, key_serializer="raw",
            value_serializer="raw", partitions=kafka.partitions, internal=True)
        self.notify_source = self.alerts_topic if local_outputs else self.app.topic(
            t.alerts, self.ticks_topic.get_topic_name(), key_type=bytes, value_type=bytes,
            key_serializer="raw", value_serializer="raw")
        self._register_agents()

    def _topic(self, name: str) -> faust.TopicT:
        return self.app.topic(name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")

    # -- agents ------------------------------------------------------------
    def _register_agents(self) -> None:
        app = self.app

        @app.agent(self.requests_topic, name="detect_requests")
        async def detect_requests(stream: faust.StreamT) -> None:
            async for event in stream.events():
                self._last_seen[event.message.partition] = time.monotonic()
                await self._consume(event, "requests", decode_request,
                                    lambda ev, p=event.message.partition: self.engine.process_request(ev, p))

        @app.agent(self.disk_topic, name="detect_disks")
        async def detect_disks(stream: faust.StreamT) -> None:
            async for event in stream.events():
                await self._consume(event, "disk-health", decode_disk, self.engine.process_disk)

        ticks_name = self.ticks_topic.get_topic_name() if self.ticks_topic is not None else None

        @app.agent(self.notify_source, name="notify_alerts")
        async def notify_alerts(stream: faust.StreamT) -> None:
            async for event in stream.events():
                if not self._notifier_restored:
                    self._notifier_restored = True
                    self.counts["groups_restored"] = self.notifier.restore()
                if event.message.topic == ticks_name or event.value == TICK:
                    await self.notifier.flush(self.clock())
                else:
                    try:
                        alert = alert_from_record(orjson.loads(event.value))
                    except (ValueError, KeyError, TypeError) as exc:
                        log.error("unreadable record on the alerts topic skipped: %s", exc)
                        self.counts["alerts.unreadable"] += 1
                        continue
                    await self.notifier.receive(alert, self.clock())
                    self.counts["alerts.notified"] += 1
                self.metrics.sync_notifications(self.notifier.counts)

        if self.local_outputs:
            @app.agent(self.silences_topic, name="apply_silences")
            async def apply_silences(stream: faust.StreamT) -> None:
                async for value in stream:
                    self._apply_silence(value)
        else:
            @app.task
            async def read_silences() -> None:
                await self._read_silences()

        self._register_views()

        if self.ticks_topic is not None:
            ticks = self.ticks_topic
            partitions = self.config.kafka.partitions

            @app.timer(interval=1.0, name="notify_ticks")
            async def notify_ticks() -> None:
                if self.notifier.next_flush() is None:
                    return
                for p in range(partitions):
                    await ticks.send(key=None, value=TICK, partition=p)

        @app.timer(interval=max(1.0, self.config.detectors.window / 4), name="close_idle_windows")
        async def close_idle_windows() -> None:
            # Live traffic: event time follows the clock, so a service that
            # went silent (an outage!) still gets its windows closed.
            await self.tick(time.time())
            self.metrics.track_engine(self.engine)
            await update_lag(self.metrics, self.app.consumer)

        self.detect_requests = detect_requests
        self.detect_disks = detect_disks
        self.notify_alerts = notify_alerts

    def _apply_silence(self, value: bytes) -> None:
        try:
            self.silences.apply(value)
            self.counts["silences.applied"] += 1
        except (ValueError, KeyError, TypeError, SilenceError) as exc:
            log.error("unreadable silence record skipped: %s", exc)

    async def _read_silences(self) -> None:
        """Every worker reads every partition of the silences topic, from the start.

        A consumer of its own, outside the worker's consumer group (a group
        would share the partitions out, and each worker would honour only some
        silences): silences are few, reading them all is cheap.
        """
        from aiokafka import AIOKafkaConsumer, TopicPartition

        await self.silences_topic.maybe_declare()
        name = self.silences_topic.get_topic_name()
        consumer = AIOKafkaConsumer(bootstrap_servers=self._servers, enable_auto_commit=False,
                                    auto_offset_reset="earliest", **self.config.kafka.aiokafka_options())
        await consumer.start()
        try:
            parts: set[int] | None = None
            while parts is None:
                parts = consumer.partitions_for_topic(name)
                if parts is None:
                    await consumer._client.force_metadata_update()
                    await asyncio.sleep(0.5)
            consumer.assign([TopicPartition(name, p) for p in sorted(parts)])
            await consumer.seek_to_beginning()
            while True:
                batches = await consumer.getmany(timeout_ms=1000)
                for records in batches.values():
                    for rec in records:
                        self._apply_silence(rec.value)
        finally:
            await consumer.stop()

    def _register_views(self) -> None:
        """HTTP API of the silences (``/silences/``), on the worker's web server."""
        from faust.web import Request, Response, View

        api = SilenceAPI(self.silences)
        topic = self.silences_topic
        clock = self.clock

        async def publish(rec: dict) -> None:
            await topic.send(key=rec["id"].encode(), value=orjson.dumps(rec))

        @self.app.page("/silences/")
        class Silences(View):
            async def get(self, request: Request) -> Response:
                return self.json(api.list_silences(clock()))

            async def post(self, request: Request) -> Response:
                try:
                    payload = await request.json()
                    rec = api.create_silence(payload, clock())
                except SilenceError as exc:
                    return self.json({"error": str(exc)}, status=exc.status)
                except ValueError:
                    return self.json({"error": "the body must be a JSON object"}, status=400)
                await publish(rec)
                return self.json(rec, status=201)

        @self.app.page("/silences/{silence_id}")
        class OneSilence(View):
            async def delete(self, request: Request, silence_id: str) -> Response:
                try:
                    rec = api.expire_silence(silence_id, clock())
                except SilenceError as exc:
                    return self.json({"error": str(exc)}, status=exc.status)
                await publish(rec)
                return self.json(rec)

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
        now = time.monotonic()
        if now - self._last_checkpoint >= self.checkpoint_interval:
            self._last_checkpoint = now
            self.checkpoint()

    async def emit(self, out: Output) -> None:
        for a in out.anomalies:
            await self.anomalies_topic.send(key=a.entity.key.encode(), value=orjson.dumps(a.to_record()))
            self.counts[f"anomalies.{a.detector}"] += 1
            self.metrics.anomaly(a)
        for al in out.alerts:
            await self.alerts_topic.send(key=al.fingerprint.encode(), value=orjson.dumps(al.to_record()))
            self.counts[f"alerts.{al.status}"] += 1
            self.metrics.alert(al)

    # -- state ---------------------------------------------------------------
    def checkpoint(self) -> int:
        """Write the changed models to the table (call from an agent: the table needs an event)."""
        states = self.engine.dirty_states()
        for k, v in states.items():
            self.models_table[k.encode()] = v
        self.counts["checkpointed"] += len(states)
        return len(states)

    def restore(self) -> int:
        """Load the checkpointed models (after table recovery, at the first event)."""
        self._restored = True
        n = 0
        for k, v in list(self.models_table.items()):
            if v is not None:
                self.engine.load_state(k.decode(), v)
                n += 1
        if n:
            log.info("restored %d models from the models table", n)
            self.engine.mark_resumed()
        self.counts["restored"] = n
        return n

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

    async def create_topics(self) -> None:
        for tp in (self.requests_topic, self.disk_topic, self.anomalies_topic, self.alerts_topic, self.dead_letter_topic):
            await tp.maybe_declare()

    async def close_receivers(self) -> None:
        for r in self.receivers.values():
            await r.aclose()


class _BytesKeyed:
    """A str-keyed view of a bytes-keyed table (what the pipeline expects)."""

    def __init__(self, table: Any) -> None:
        self.table = table

    def get(self, key: str, default: Any = None) -> Any:
        v = self.table.get(key.encode())
        return default if v is None else v

    def __getitem__(self, key: str) -> Any:
        return self.table[key.encode()]

    def __setitem__(self, key: str, value: bytes) -> None:
        self.table[key.encode()] = value

    def __delitem__(self, key: str) -> None:
        del self.table[key.encode()]

    def __iter__(self):
        return (k.decode() for k in self.table)

    def __len__(self) -> int:
        return len(self.table)


async def wait_until(cond: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        await asyncio.sleep(interval)
    return cond()
