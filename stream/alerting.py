"""The alerting side of a worker: the notify agent, its tables, silences and their HTTP API.

``notify_alerts`` reads the ``alerts`` topic back and runs the notification
pipeline (routing, grouping, inhibition, silences, receivers), so every state
change is in Kafka before any receiver is called and a restarted worker
delivers what was not yet delivered. Delivery and group state live in Faust
tables (``deliveries``, ``alert_groups``), written from the agent.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import faust
import orjson

from alerts.model import alert_from_record
from alerts.notify.notifier import AlertNotifier
from alerts.silence import SilenceAPI, SilenceError, SilenceStore

if TYPE_CHECKING:
    from .app import TocsinApp

__all__ = ["TICK", "Notifications"]

log = logging.getLogger(__name__)

#: Internal message that makes the notify agent deliver the groups that are due.
TICK = b"tocsin:notify-tick"


class Notifications:
    """Tables, agent, timers and views of the notification side of one :class:`TocsinApp`."""

    def __init__(self, tapp: TocsinApp) -> None:
        self.tapp = tapp
        app = tapp.app
        t = tapp.config.topics
        self.deliveries_table = app.Table("deliveries", default=None, key_type=bytes, value_type=bytes)
        self.groups_table = app.Table("alert_groups", default=None, key_type=bytes, value_type=bytes)
        self.silences = SilenceStore()
        self.notifier = AlertNotifier(tapp.config.alerting, tapp.receivers, _BytesKeyed(self.deliveries_table),
                                      groups=_BytesKeyed(self.groups_table), silences=self.silences)
        self._notifier_restored = False
        # Group timers (group_wait, group_interval...) run in the notify agent,
        # where the tables can be written: a timer sends a tick to every
        # partition of this internal topic, which the agent reads with the
        # alerts. In-memory outputs (tests) have no ticks.
        self.silences_topic = tapp._topic(t.silences)
        self.ticks_topic = None if tapp.local_outputs else app.topic(
            f"{app.conf.id}-notify-ticks", key_type=bytes, value_type=bytes, key_serializer="raw",
            value_serializer="raw", partitions=tapp.config.kafka.partitions, internal=True)
        self.notify_source = tapp.alerts_topic if tapp.local_outputs else app.topic(
            t.alerts, self.ticks_topic.get_topic_name(), key_type=bytes, value_type=bytes,
            key_serializer="raw", value_serializer="raw")

        self._register(app)

    def _register(self, app: faust.App) -> None:
        tapp = self.tapp
        ticks_name = self.ticks_topic.get_topic_name() if self.ticks_topic is not None else None

        @app.agent(self.notify_source, name="notify_alerts")
        async def notify_alerts(stream: faust.StreamT) -> None:
            async for event in stream.events():
                if not self._notifier_restored:
                    self._notifier_restored = True
                    tapp.counts["groups_restored"] = self.notifier.restore()
                if event.message.topic == ticks_name or event.value == TICK:
                    await self.notifier.flush(tapp.clock())
                else:
                    try:
                        alert = alert_from_record(orjson.loads(event.value))
                    except (ValueError, KeyError, TypeError) as exc:
                        log.error("unreadable record on the alerts topic skipped: %s", exc)
                        tapp.counts["alerts.unreadable"] += 1
                        continue
                    await self.notifier.receive(alert, tapp.clock())
                    tapp.counts["alerts.notified"] += 1
                tapp.metrics.sync_notifications(self.notifier.counts)

        if tapp.local_outputs:
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
            partitions = tapp.config.kafka.partitions

            @app.timer(interval=1.0, name="notify_ticks")
            async def notify_ticks() -> None:
                if self.notifier.next_flush() is None:
                    return
                for p in range(partitions):
                    await ticks.send(key=None, value=TICK, partition=p)


        self.notify_alerts = notify_alerts
        self._register_views()

    def _apply_silence(self, value: bytes) -> None:
        try:
            self.silences.apply(value)
            self.tapp.counts["silences.applied"] += 1
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
        consumer = AIOKafkaConsumer(bootstrap_servers=self.tapp._servers, enable_auto_commit=False,
                                    auto_offset_reset="earliest", **self.tapp.config.kafka.aiokafka_options())
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
        clock = self.tapp.clock

        async def publish(rec: dict) -> None:
            await topic.send(key=rec["id"].encode(), value=orjson.dumps(rec))

        @self.tapp.app.page("/silences/")
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

        @self.tapp.app.page("/silences/{silence_id}")
        class OneSilence(View):
            async def delete(self, request: Request, silence_id: str) -> Response:
                try:
                    rec = api.expire_silence(silence_id, clock())
                except SilenceError as exc:
                    return self.json({"error": str(exc)}, status=exc.status)
                await publish(rec)
                return self.json(rec)

    async def close_receivers(self) -> None:
        for r in self.tapp.receivers.values():
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
