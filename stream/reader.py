"""The request path of a worker: batches from Kafka straight to the Engine.

Request events are the hot path (thousands a second per service), and
Faust's per-message stream machinery costs far more than the detectors do
per event (figures in ``benchmarks/README.md``). So the worker reads the
requests topic with its own aiokafka consumer, ``getmany`` batches of up to
``max_records``, hands each batch to a ``process`` port (the runner) and
keeps everything else in Faust. The reader knows nothing of the app: it is
given its ports.

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
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka.errors import KafkaError

from . import compat

__all__ = ["RequestReader", "follow_topic"]

log = logging.getLogger(__name__)


class RequestReader:
    """Reads the requests partitions this worker owns, in batches, into the ``process`` port.

    Parameters
    ----------
    servers, kafka
        Bootstrap servers and the ``kafka`` configuration (security options).
    topic, group_id
        The requests topic, and the consumer group its offsets are committed to.
    process
        ``await process(partition, records)``: one batch of one partition.
    before_commit
        ``await before_commit()`` makes what was processed durable
        (checkpoint, producer flush); False: do not commit now (stopping).
    on_lost, on_gained
        Called with the requests partitions another worker took, or this one got.
    declare
        ``await declare()`` creates the topic if needed (Faust's ``maybe_declare``).
    max_records
        Largest batch taken from one ``getmany``.
    commit_interval
        Seconds between checkpoint-and-commit rounds.
    max_partition_fetch_bytes
        Largest fetch of one partition.
    """

    def __init__(
        self,
        servers: str,
        kafka: Any,
        topic: str,
        *,
        group_id: str,
        process: Callable[[int, list[Any]], Awaitable[None]],
        before_commit: Callable[[], Awaitable[bool]],
        on_lost: Callable[[set[int]], Any],
        on_gained: Callable[[set[int]], Any],
        declare: Callable[[], Awaitable[Any]] | None = None,
        max_records: int = 5000,
        commit_interval: float = 5.0,
        max_partition_fetch_bytes: int = 4 * 1024 * 1024,
    ) -> None:
        self.servers = servers
        self.kafka = kafka
        self.topic = topic
        self.group_id = group_id
        self.process = process
        self.before_commit = before_commit
        self.on_lost = on_lost
        self.on_gained = on_gained
        self.declare = declare
        self.max_records = max_records
        self.commit_interval = commit_interval
        self.max_partition_fetch_bytes = max_partition_fetch_bytes
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

        kafka = self.kafka
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.servers, group_id=self.group_id, client_id=f"{kafka.client_id}-requests",
            enable_auto_commit=False, auto_offset_reset="earliest", max_poll_records=self.max_records,
            fetch_max_bytes=32 * 1024 * 1024,
            max_partition_fetch_bytes=self.max_partition_fetch_bytes,
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
        if self.declare is not None:
            await self.declare()
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

    async def on_assigned(self, model_partitions: set[int], n: int) -> None:
        """The assignment is final and the tables recovered: read what ``model_partitions`` (of ``n``) imply."""
        from aiokafka import TopicPartition

        async with self._lock:
            # Faust runs app tasks only once started, after this first
            # rebalance: the consumer starts here then.
            await self._start()
            parts = await self._partitions()
            owned = {r for r in parts if r % n in model_partitions}
            lost, gained = self.owned - owned, owned - self.owned
            if lost:
                self.on_lost(lost)
                for r in lost:
                    self._next.pop(r, None)
                    self._committed.pop(r, None)
            if gained:
                self.on_gained(gained)
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
                                await self.process(tp.partition, records)
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
        if not await self.before_commit():
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


async def follow_topic(servers: str, kafka: Any, topic: Any, handle: Callable[[bytes], None]) -> None:
    """Hand every record of every partition of ``topic`` to ``handle``, from the start, for ever.

    A consumer of its own, outside the worker's consumer group: a group would
    share the partitions out, and each worker would see only some of the
    records, where every worker needs all of them (silences, drive signals).
    Such topics are small, so reading them whole at start is cheap.
    """
    from aiokafka import AIOKafkaConsumer, TopicPartition

    await topic.maybe_declare()
    name = topic.get_topic_name()
    consumer = AIOKafkaConsumer(bootstrap_servers=servers, enable_auto_commit=False,
                                auto_offset_reset="earliest", **kafka.aiokafka_options())
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
        await compat.refresh_metadata(consumer)
        await asyncio.sleep(0.5)
