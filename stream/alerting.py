"""The alerting side of a worker: the notify agents, their tables, silences and their HTTP API.

Every alert state change is in Kafka (the ``alerts`` topic, keyed by
fingerprint) before any receiver is called, and a restarted worker delivers
what was not yet delivered. On a broker, two agents share the work so that
grouping is right with any number of workers (Faust's ``group_by``, by hand):

``notify_alerts``
    reads ``alerts`` and, for each route the alert matches, forwards it to the
    internal ``<app id>-notify-groups`` topic keyed by the group key (a
    repartition: every alert of one aggregation group lands on one partition,
    so one worker). It also sends each state change to every partition of
    that topic as an ``observe`` record, so every worker's inhibitor knows
    every firing alert.
``deliver_groups``
    reads ``<app id>-notify-groups``: grouping, inhibition, silences and
    delivery (:class:`~alerts.notify.notifier.AlertNotifier`), with the groups
    of each partition in the ``alert_groups`` table and the notification log
    in ``deliveries`` (at least once, never twice: a replayed record finds its
    delivery id there). A group belongs to the partition it was read from;
    a timer sends a tick to each partition this worker owns whose groups are
    due (or not yet loaded), and a tick flushes that partition's groups only.

In-memory mode (``local_outputs``, tests without a broker) keeps one agent,
``notify_alerts`` on the alerts channel, doing everything, ticks included.

Acting from Slack (``slack_actions``, :mod:`alerts.notify.slack_actions`):
clicks come in on the request URL ``POST /slack/actions`` or over Socket
Mode (:mod:`stream.slack_socket`); a silence goes to the silences topic, a
corrected cause to the ``labels`` topic, an acknowledgement to the ``acks``
topic that every worker reads whole (:class:`~alerts.ack.AckStore`). When
``notify_alerts`` reads an alert resolving, it ends the acks and the "until
resolved" silences that were about it.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import faust
import orjson

from alerts.ack import AckError, AckStore
from alerts.model import Alert, alert_from_record
from alerts.notify.base import Receiver
from alerts.notify.notifier import AlertNotifier
from alerts.notify.slack_actions import LABEL_CAUSES, LABEL_SCHEMA, until_resolved_expiries
from alerts.silence import SilenceError, SilenceStore

__all__ = ["TICK", "Notifications"]

log = logging.getLogger(__name__)

#: Internal message that makes the notify agent deliver the groups that are due.
TICK = b"tocsin:notify-tick"

_ENVELOPE = "tocsin.notify-group.v1"


class Notifications:
    """Tables, agents, timers and views of the notification side of one worker.

    Parameters
    ----------
    app
        The Faust app to register the agents, tables and views on.
    config
        The worker's configuration (``alerting``, ``kafka.partitions``).
    receivers
        Receivers by name.
    alerts_topic, silences_topic
        Where alert state changes and silences are read from.
    counts, metrics, clock
        The worker's counters, metrics and wall clock.
    follow
        ``await follow(topic, handle)`` reads a topic whole, on every worker
        (silences). None: in-memory mode (tests without a broker), one agent
        does everything.
    web
        Register the HTTP views.
    """

    def __init__(
        self,
        app: faust.App,
        config: Any,
        receivers: dict[str, Receiver],
        *,
        alerts_topic: Any,
        silences_topic: Any,
        counts: Counter[str],
        metrics: Any,
        clock: Callable[[], float],
        follow: Callable[[Any, Callable[[bytes], None]], Awaitable[None]] | None,
        web: bool = True,
        acks_topic: Any,
        labels_topic: Any,
    ) -> None:
        self.app = app
        self.receivers = receivers
        self.alerts_topic = alerts_topic
        self.counts = counts
        self.metrics = metrics
        self.clock = clock
        self.follow = follow
        self.web_settings = config.web
        self.deliveries_table = app.Table("deliveries", default=None, key_type=bytes, value_type=bytes)
        self.groups_table = app.Table("alert_groups", default=None, key_type=bytes, value_type=bytes)
        self.silences = SilenceStore()
        self.acks = AckStore()  # acknowledgements from Slack: they mute the groups' reminders
        for r in receivers.values():
            if hasattr(r, "acks"):
                r.acks = self.acks  # a Slack receiver with buttons shows who acknowledged on the parent
        self.notifier = AlertNotifier(config.alerting, receivers, _BytesKeyed(self.deliveries_table),
                                      groups=_BytesKeyed(self.groups_table), silences=self.silences,
                                      acks=self.acks)
        self._notifier_restored = False
        self.silences_topic = silences_topic
        self.acks_topic = acks_topic
        self.labels_topic = labels_topic
        #: Called with every label record read from the labels topic, on every worker (the cause model's
        #: learn_label: the worker that holds an alert's features may not be the one that was clicked).
        self.label_listeners: list[Callable[[dict[str, Any]], None]] = []
        self.slack_config = getattr(config, "slack_actions", None)
        self.slack_actions: Any = None
        self.slack_socket: Any = None
        local = follow is None
        # On a broker: the repartitioned stream, keyed by group key, with the
        # ticks; the firing alerts every partition has seen (the inhibitor's
        # memory across restarts); the partitions whose groups are loaded.
        self.partitions = config.kafka.partitions
        self.groups_topic = None if local else app.topic(
            f"{app.conf.id}-notify-groups", key_type=bytes, value_type=bytes, key_serializer="raw",
            value_serializer="raw", partitions=self.partitions, internal=True)
        self.firing_table = None if local else app.Table(
            "firing_alerts", default=None, key_type=bytes, value_type=bytes)
        self._loaded: set[int] = set()

        self._register(app, web)

    def _register(self, app: faust.App, web: bool) -> None:
        counts, metrics, clock = self.counts, self.metrics, self.clock

        if self.groups_topic is None:
            @app.agent(self.alerts_topic, name="notify_alerts")
            async def notify_alerts(stream: faust.StreamT) -> None:
                async for value in stream:
                    if not self._notifier_restored:
                        self._notifier_restored = True
                        counts["groups_restored"] = self.notifier.restore()
                    if value == TICK:
                        await self.notifier.flush(clock())
                    else:
                        alert = self._decode(value)
                        if alert is not None:
                            await self._ended(alert)
                            await self.notifier.receive(alert, clock())
                            counts["alerts.notified"] += 1
                    metrics.sync_notifications(self.notifier.counts, self.notifier.failed_receivers())
            self.notify_alerts = notify_alerts
        else:
            self._register_repartition(app)  # sets notify_alerts and deliver_groups

        # Topics every worker reads whole (a silence, an ack or a label concerns every
        # worker's groups and models): one agent each in memory (tests), a follow task on a broker.
        for name, topic, handle in (("silences", self.silences_topic, self._apply_silence),
                                    ("acks", self.acks_topic, self._apply_ack),
                                    ("labels", self.labels_topic, self._apply_label)):
            self._read_whole(app, name, topic, handle)

        if self.slack_config is not None and self.slack_config.enabled:
            self._register_slack_actions(app, web)

        if web:
            self._register_views()

    def _decode(self, value: bytes) -> Alert | None:
        try:
            return alert_from_record(orjson.loads(value))
        except (ValueError, KeyError, TypeError) as exc:
            log.error("unreadable record on the alerts topic skipped: %s", exc)
            self.counts["alerts.unreadable"] += 1
            return None

    def _register_repartition(self, app: faust.App) -> None:
        counts, metrics, clock = self.counts, self.metrics, self.clock
        groups_topic = self.groups_topic
        assert groups_topic is not None
        groups_name = groups_topic.get_topic_name()
        notifier = self.notifier

        @app.agent(self.alerts_topic, name="notify_alerts")
        async def notify_alerts(stream: faust.StreamT) -> None:
            async for value in stream:
                alert = self._decode(value)
                if alert is None:
                    continue
                await self._ended(alert)
                rec = alert.to_record()
                for key in notifier.group_keys(alert):
                    await groups_topic.send(key=key.encode(), value=orjson.dumps(
                        {"schema": _ENVELOPE, "kind": "group", "group": key, "alert": rec}))
                observe = orjson.dumps({"schema": _ENVELOPE, "kind": "observe", "alert": rec})
                for p in range(self.partitions):
                    await groups_topic.send(key=alert.fingerprint.encode(), value=observe, partition=p)
                counts["alerts.forwarded"] += 1

        @app.agent(groups_topic, name="deliver_groups")
        async def deliver_groups(stream: faust.StreamT) -> None:
            async for event in stream.events():
                p = event.message.partition
                self._load(p)
                if event.value == TICK:
                    await notifier.flush(clock(), p)
                else:
                    try:
                        env = orjson.loads(event.value)
                        alert = alert_from_record(env["alert"])
                    except (ValueError, KeyError, TypeError) as exc:
                        log.error("unreadable record on %s skipped: %s", groups_name, exc)
                        counts["alerts.unreadable"] += 1
                        continue
                    if env.get("kind") == "observe":
                        self._observe(alert)
                    else:
                        await notifier.receive(alert, clock(), key=env["group"], shard=p)
                        counts["alerts.notified"] += 1
                metrics.sync_notifications(notifier.counts, notifier.failed_receivers())

        @app.timer(interval=1.0, name="notify_ticks")
        async def notify_ticks() -> None:
            now = clock()
            for p in self._owned():
                due = notifier.next_flush(p)
                if p not in self._loaded or (due is not None and due <= now):
                    await groups_topic.send(key=None, value=TICK, partition=p)

        @app.on_partitions_revoked.connect
        async def forget_revoked(sender: Any, revoked: Any = (), **kwargs: Any) -> None:
            for tp in revoked:
                if tp.topic == groups_name and tp.partition in self._loaded:
                    self._loaded.discard(tp.partition)
                    notifier.forget(tp.partition)

        self.notify_alerts = notify_alerts
        self.deliver_groups = deliver_groups

    def _owned(self) -> list[int]:
        """The partitions of the groups topic assigned to this worker."""
        assert self.groups_topic is not None
        name = self.groups_topic.get_topic_name()
        try:
            assigned = self.app.consumer.assignment()
        except Exception:  # noqa: BLE001 - not started or rebalancing: nothing to tick yet
            return []
        return sorted(tp.partition for tp in assigned if tp.topic == name)

    def _load(self, partition: int) -> None:
        """First event of a partition since it was assigned: its groups and the firing alerts it saw."""
        if partition in self._loaded:
            return
        self._loaded.add(partition)
        assert self.firing_table is not None
        for raw in list(self.firing_table.values()):
            if raw is not None:
                self.notifier.observe(alert_from_record(orjson.loads(raw)))
        n = self.notifier.restore(partition)
        self.counts["groups_restored"] += n
        if n:
            log.info("restored %d alert groups of partition %d", n, partition)

    def _observe(self, alert: Alert) -> None:
        """An alert state change for the inhibitor, remembered in this partition's ``firing_alerts``."""
        assert self.firing_table is not None
        self.notifier.observe(alert)
        key = alert.fingerprint.encode()
        # Written on every partition's changelog (a delete only sends a
        # tombstone for a key the table holds, so set it first).
        self.firing_table[key] = orjson.dumps(alert.to_record())
        if alert.status == "resolved":
            del self.firing_table[key]

    def _apply_silence(self, value: bytes) -> None:
        try:
            self.silences.apply(value)
            self.counts["silences.applied"] += 1
        except (ValueError, KeyError, TypeError, SilenceError) as exc:
            log.error("unreadable silence record skipped: %s", exc)

    def _apply_ack(self, value: bytes) -> None:
        try:
            self.acks.apply(value)
            self.counts["acks.applied"] += 1
        except AckError as exc:
            log.error("unreadable ack record skipped: %s", exc)

    def _apply_label(self, value: bytes) -> None:
        """One record of the labels topic to the label listeners; an unreadable one is logged and skipped."""
        try:
            rec = orjson.loads(value)
            if not isinstance(rec, dict) or rec.get("schema") != LABEL_SCHEMA:
                raise ValueError(f"schema is not {LABEL_SCHEMA}")
            if rec.get("cause") not in LABEL_CAUSES or not isinstance(rec.get("fingerprint"), str):
                raise ValueError(f"cause {str(rec.get('cause'))[:40]!r} or fingerprint missing or unknown")
        except ValueError as exc:
            log.error("unreadable label record skipped: %s", exc)
            self.counts["labels.unreadable"] += 1
            return
        self.counts["labels.read"] += 1
        for listen in self.label_listeners:
            try:
                listen(rec)
            except Exception:  # noqa: BLE001 - one failing learner must not stop the others nor the reader
                log.exception("a label listener failed on the label of %s", rec["fingerprint"])

    async def _ended(self, alert: Alert) -> None:
        """An alert resolved: end the acks and the "until resolved" silences about it (published, then kept)."""
        if alert.status != "resolved":
            return

        now = self.clock()
        for s in until_resolved_expiries(self.silences, alert, now):
            try:
                await self._publish_silence(s.to_record())
                self.silences.apply(s)
            except Exception as exc:  # noqa: BLE001 - the silence then runs its full length; say so
                log.error("could not expire silence %s of resolved alert %s: %r", s.id, alert.fingerprint, exc)
        for a in self.acks.clears(alert, now):
            try:
                await _send(self.acks_topic, a.group_key, a.to_record())
                self.acks.apply(a)
            except Exception as exc:  # noqa: BLE001 - reminders then stay muted for that group; say so
                log.error("could not clear the ack of group %s: %r", a.group_key, exc)

    async def _publish_silence(self, rec: dict) -> None:
        await _send(self.silences_topic, rec["id"], rec)

    async def publish_label(self, rec: dict) -> None:
        """A label record to the labels topic (key: fingerprint); every worker reads it back (:meth:`_apply_label`)."""
        await _send(self.labels_topic, rec["fingerprint"], rec)

    async def publish_ack(self, rec: dict) -> None:
        await _send(self.acks_topic, rec["group_key"], rec)

    def _register_slack_actions(self, app: faust.App, web: bool) -> None:
        """Slack interactivity: the request URL on the web server, Socket Mode as a task."""
        from slack_sdk.web.async_client import AsyncWebClient

        from alerts.notify.slack_actions import AllowList, RequestVerifier, SlackActions

        cfg = self.slack_config
        token = cfg.bot_token()
        kw: dict[str, Any] = {"base_url": cfg.api_url} if cfg.api_url else {}
        client = AsyncWebClient(token=token.get(), **kw) if token is not None else None
        secret = cfg.signing_secret_value() if cfg.http else None
        self.slack_actions = actions = SlackActions(
            silences=self.silences, limits=self.web_settings.silence_limits(),
            publish_silence=self._publish_silence, publish_label=self.publish_label, publish_ack=self.publish_ack,
            acks=self.acks,
            allow=AllowList(tuple(cfg.allowed_users), tuple(cfg.allowed_user_groups), client, cfg.user_group_ttl),
            client=client,
            verifier=RequestVerifier(secret, self.clock, cfg.max_request_age) if secret is not None else None,
            clock=self.clock,
        )
        if cfg.http and web:
            from .web import install_slack_actions

            install_slack_actions(app, actions, self.web_settings)
        if cfg.socket_mode:
            from .slack_socket import SlackSocket

            app_token = cfg.app_token_value()
            if app_token is None:
                log.error("slack_actions.socket_mode: no app token (%s): Socket Mode is off", cfg.app_token_env)
                return
            self.slack_socket = sock = SlackSocket(app_token, actions, base_url=cfg.api_url)

            @app.task
            async def slack_socket_mode() -> None:
                await sock.start()

    def _read_whole(self, app: faust.App, name: str, topic: Any, handle: Callable[[bytes], None]) -> None:
        """Hand every record of ``topic`` to ``handle``, on this worker as on every other."""
        follow = self.follow
        if follow is None:
            async def apply(stream: faust.StreamT) -> None:
                async for value in stream:
                    handle(value)

            app.agent(topic, name=f"apply_{name}")(apply)
            return

        async def read() -> None:
            await follow(topic, handle)

        read.__name__ = f"read_{name}"
        app.task(read)

    def _register_views(self) -> None:
        """HTTP API of the silences (tocsin's and Alertmanager's), on the worker's web server."""
        from .web import install_views

        install_views(self.app, self.silences, self._publish_silence, self.clock, self.web_settings)

    async def close_receivers(self) -> None:
        if self.slack_socket is not None:
            await self.slack_socket.stop()
        if self.slack_actions is not None and self.slack_actions.client is not None:
            session = getattr(self.slack_actions.client, "session", None)
            if session is not None:
                await session.close()
        for r in self.receivers.values():
            await r.aclose()


async def _send(topic: Any, key: str, rec: dict) -> None:
    """One record to ``topic``, waiting for the broker's acknowledgement (only then is it kept)."""
    fut = await topic.send(key=key.encode(), value=orjson.dumps(rec))
    await fut


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
