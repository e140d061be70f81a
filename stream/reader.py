"""The request path of a worker: batches from Kafka straight to the Engine.

Request events are the hot path (thousands a second per service), and
Faust's per-message stream machinery costs about 130 µs a message on these
machines whatever the agent does (``benchmarks/e2e.py``; a Faust agent that
only decodes reads ~7,000 messages/s where a bare aiokafka consumer reads
~250,000). So the worker reads the requests topic with its own aiokafka
consumer, ``getmany`` batches of up to ``max_records``, decodes and
aggregates them a batch at a time, and keeps everything else in Faust:

Which partitions
    Faust's consumer group decides. Requests partition ``r`` belongs to the
    worker that holds the active ``models`` table partition ``r % n`` (the
    table is co-partitioned with the app's other topics), so the models of
    the services read from ``r`` are recovered by the worker that reads
    ``r``. The reader follows every rebalance: on revocation it checkpoints
    and commits; when the new assignment (and table recovery) completes, it
    drops the services of the partitions it lost, loads the checkpointed
    models of the partitions it gained, and assigns itself those partitions.
Offsets
    Committed to the consumer group ``<app id>-requests`` (no members: the
    partitions are assigned by hand), after the models changed by those
    events are written to the table's changelog and the producer is flushed.
    A restarted worker thus resumes from a checkpoint at least as new as its
    offsets: at-least-once, never a gap in the models.
State
    Table keys carry their source partition (``r3/traffic:ent-idf``), so a
    worker that also holds standby copies restores only what it reads.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiokafka.errors import KafkaError

if TYPE_CHECKING:
    from .app import TocsinApp

__all__ = ["RequestReader", "follow_topic"]

log = logging.getLogger(__name__)


class RequestReader:
    """Reads the requests partitions this worker owns, in batches, into ``tapp``'s Engine.

    Parameters
    ----------
    tapp
        The app whose engine, tables and outputs are used.
    max_records
        Largest batch taken from one ``getmany``.
    commit_interval
        Seconds between checkpoint-and-commit rounds.
    """

    def __init__(self, tapp: TocsinApp, max_records: int = 5000, commit_interval: float | None = None) -> None:
        self.tapp = tapp
        self.topic = tapp.config.topics.requests
        self.group_id = f"{tapp.app.conf.id}-requests"
        self.max_records = max_records
        self.commit_interval = commit_interval if commit_interval is not None else tapp.checkpoint_interval
        self.owned: set[int] = set()
        self._next: dict[int, int] = {}  # partition -> next offset to read (= to commit)
        self._committed: dict[int, int] = {}
        self._generation = 0  # bumped at every revocation and assignment: batches fetched before are dropped
        self._paused = False  # from a revocation to the next assignment: read nothing
        self._lock = asyncio.Lock()
        self._consumer: Any = None
        self._last_commit = time.monotonic()

    # -- consumer ------------------------------------------------------------
    async def _start(self) -> None:
        """Start the consumer once (from the first rebalance or the loop, whichever comes first)."""
        if self._consumer is not None:
            return
        from aiokafka import AIOKafkaConsumer

        kafka = self.tapp.config.kafka
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.tapp._servers, group_id=self.group_id, client_id=f"{kafka.client_id}-requests",
            enable_auto_commit=False, auto_offset_reset="earliest", max_poll_records=self.max_records,
            fetch_max_bytes=32 * 1024 * 1024,
            # 4 MB a partition; 1 MB (aiokafka's default) on the embedded tansu.
            # (1 MB was chosen when `tocsin demo` stalled and 4 MB fetches were
            # suspected; the stall was a producer batch stuck on its metadata,
            # see broker.track_produced_topics. 1 MB is kept: the demo is not
            # limited by it.)
            max_partition_fetch_bytes=(1 if self.tapp.embedded else 4) * 1024 * 1024,
            # Live traffic: let the broker gather ~128 KB (a few hundred events)
            # or wait 100 ms, so that batches stay large enough to be cheap.
            fetch_min_bytes=128 * 1024, fetch_max_wait_ms=100,
            **kafka.aiokafka_options(),
        )
        await self._consumer.start()

    async def stop(self) -> None:
        if self._consumer is not None:
            async with self._lock:
                try:
                    await self._commit()
                finally:
                    await self._consumer.stop()
                    self._consumer = None

    async def _partitions(self) -> set[int]:
        # Faust declares the topics its agents read; this one is read here.
        await self.tapp.requests_topic.maybe_declare()
        return await _topic_partitions(self._consumer, self.topic, tries=60)

    # -- rebalances (Faust signals) ---------------------------------------------
    async def on_revoked(self) -> None:
        """Faust is revoking this worker's partitions: make what was read durable."""
        if self._consumer is None:
            return
        async with self._lock:
            await self._commit()
            # Until the group settles, another worker may be given these
            # partitions: read nothing more (what is read now would be read
            # again by the new owner).
            self._paused = True
            self._generation += 1
            log.info("paused reading %s partitions %s until the group settles", self.topic, sorted(self.owned))

    async def on_assigned(self, model_partitions: set[int]) -> None:
        """The assignment is final and the tables recovered: read what ``model_partitions`` imply."""
        from aiokafka import TopicPartition

        tapp = self.tapp
        n = tapp.config.kafka.partitions
        async with self._lock:
            # Faust runs app tasks only once started, after this first
            # rebalance: the consumer starts here then.
            await self._start()
            parts = await self._partitions()
            owned = {r for r in parts if r % n in model_partitions}
            lost, gained = self.owned - owned, owned - self.owned
            if lost:
                tapp.forget_partitions(lost)
                for r in lost:
                    self._next.pop(r, None)
                    self._committed.pop(r, None)
            if gained:
                tapp.restore(gained)
            self._generation += 1
            self._paused = False
            if owned != {tp.partition for tp in self._consumer.assignment()}:
                self._consumer.assign([TopicPartition(self.topic, r) for r in sorted(owned)])
            # assign() restarts a partition from its committed offset; the kept
            # ones go on from where this reader was (never a rewind, never a gap).
            for r in owned & self.owned:
                if r in self._next:
                    self._consumer.seek(TopicPartition(self.topic, r), self._next[r])
            self.owned = owned
            log.info("reading %s partitions %s (lost %s, gained %s)", self.topic, sorted(owned), sorted(lost), sorted(gained))

    # -- the loop ----------------------------------------------------------------
    async def run(self) -> None:
        async with self._lock:
            await self._start()
        try:
            while True:
                if self._paused or not self.owned:
                    await asyncio.sleep(0.05)
                    continue
                gen = self._generation
                batches = await self._consumer.getmany(timeout_ms=200, max_records=self.max_records)
                async with self._lock:
                    if gen == self._generation:
                        for tp, records in batches.items():
                            if tp.partition in self.owned and records:
                                await self.tapp.process_request_records(tp.partition, records)
                                self._next[tp.partition] = records[-1].offset + 1
                    else:
                        # Fetched before a rebalance: not processed, so read again
                        # (here or by the partition's new owner).
                        self._rewind(batches)
                    if time.monotonic() - self._last_commit >= self.commit_interval:
                        await self._commit()
                # Let Faust's heartbeats, rebalances and timers run between batches.
                await asyncio.sleep(0)
        finally:
            await self.stop()

    def _rewind(self, batches: dict) -> None:
        assigned = self._consumer.assignment()
        for tp, records in batches.items():
            if records and tp in assigned:
                self._consumer.seek(tp, self._next.get(tp.partition, records[0].offset))

    async def _commit(self) -> None:
        """Checkpoint the changed models, flush the producer, then commit the offsets read."""
        from aiokafka import TopicPartition

        self._last_commit = time.monotonic()
        self.tapp.checkpoint()
        try:
            await self.tapp.app.producer.flush()
        except RuntimeError as exc:  # stopping: the producer went first
            log.info("offsets of %s not committed (%s): the next start reads them again", self.topic, exc)
            return
        due = {r: o for r, o in self._next.items() if r in self.owned and self._committed.get(r) != o}
        if due:
            try:
                await self._consumer.commit({TopicPartition(self.topic, r): o for r, o in due.items()})
            except KafkaError as exc:
                # A broker outage or a rebalance: the offsets stay where they
                # were (these events will be read again), the next round retries.
                log.warning("offsets of %s not committed, retried at the next checkpoint: %r", self.topic, exc)
                return
            self._committed.update(due)

    async def lag(self, metrics: Any) -> None:
        from .metrics import update_lag

        if self._consumer is not None:
            await update_lag(metrics, self._consumer)


async def follow_topic(tapp: TocsinApp, topic: Any, handle: Callable[[bytes], None]) -> None:
    """Hand every record of every partition of ``topic`` to ``handle``, from the start, for ever.

    A consumer of its own, outside the worker's consumer group: a group would
    share the partitions out, and each worker would see only some of the
    records, where every worker needs all of them (silences, drive signals).
    Such topics are small, so reading them whole at start is cheap.
    """
    from aiokafka import AIOKafkaConsumer, TopicPartition

    await topic.maybe_declare()
    name = topic.get_topic_name()
    consumer = AIOKafkaConsumer(bootstrap_servers=tapp._servers, enable_auto_commit=False,
                                auto_offset_reset="earliest", **tapp.config.kafka.aiokafka_options())
    await consumer.start()
    try:
        parts = await _topic_partitions(consumer, name)
        consumer.assign([TopicPartition(name, p) for p in sorted(parts)])
        await consumer.seek_to_beginning()
        while True:
            batches = await consumer.getmany(timeout_ms=1000)
            for records in batches.values():
                for rec in records:
                    handle(rec.value)
    finally:
        await consumer.stop()


async def _topic_partitions(consumer: Any, name: str, tries: int | None = None) -> set[int]:
    """The partitions of topic ``name``, refreshing the metadata every 0.5 s until it has some."""
    n = 0
    while True:
        parts = consumer.partitions_for_topic(name)
        if parts:
            return set(parts)
        n += 1
        if tries is not None and n >= tries:
            raise RuntimeError(f"topic {name!r} has no partitions (does it exist?)")
        await consumer._client.force_metadata_update()
        await asyncio.sleep(0.5)
