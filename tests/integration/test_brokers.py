"""The session's broker works with both Kafka clients tocsin uses; the embedded broker starts and stops."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from stream.broker import (
    BrokerError,
    EmbeddedBroker,
    create_topics,
    tansu_binary,
    wait_for_broker,
)
from stream.compat import track_produced_topics

N = 100


def _consume(consumer: KafkaConsumer, expect: int, timeout: float = 30.0) -> list:
    out: list = []
    deadline = time.monotonic() + timeout
    while len(out) < expect and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            out.extend(records)
    return out


def test_kafka_python_roundtrip(kafka_bootstrap, unique_names):
    topic, group = unique_names("topic"), unique_names("group")
    assert create_topics(kafka_bootstrap, [topic], partitions=2) == [topic]
    assert create_topics(kafka_bootstrap, [topic], partitions=2) == []  # exists: not an error

    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, linger_ms=5)
    futures = [
        producer.send(topic, key=f"k{i % 5}".encode(), value=f"message {i}".encode())
        for i in range(N)
    ]
    producer.flush(timeout=30)
    metadata = [f.get(timeout=10) for f in futures]
    producer.close()
    assert {m.topic for m in metadata} == {topic}

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=kafka_bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=6000,
        heartbeat_interval_ms=2000,
    )
    try:
        records = _consume(consumer, N)
        consumer.commit()
        committed = {
            p: consumer.committed(TopicPartition(topic, p)) for p in consumer.partitions_for_topic(topic)
        }
    finally:
        consumer.close()

    assert sorted(r.value for r in records) == sorted(f"message {i}".encode() for i in range(N))
    # Same key, same partition, in the order sent.
    by_key: dict[bytes, list[int]] = {}
    for r in records:
        by_key.setdefault(r.key, []).append(int(r.value.split()[1]))
    for key, numbers in by_key.items():
        assert numbers == sorted(numbers), key
        assert len({r.partition for r in records if r.key == key}) == 1
    # The group's committed offsets cover every message.
    assert sum(o or 0 for o in committed.values()) == N


async def test_aiokafka_roundtrip(kafka_bootstrap, unique_names):
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    topic, group = unique_names("topic"), unique_names("group")
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        for i in range(N):
            # One record per request: tansu misreports end offsets after multi-record batches.
            await producer.send_and_wait(topic, key=f"k{i % 5}".encode(), value=f"event {i}".encode())
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=kafka_bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=6000,
        heartbeat_interval_ms=2000,
    )
    await consumer.start()
    values: list[bytes] = []
    try:
        deadline = time.monotonic() + 30
        while len(values) < N and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                values.extend(r.value for r in records)
        await consumer.commit()
    finally:
        await consumer.stop()
    assert sorted(values) == sorted(f"event {i}".encode() for i in range(N))


async def test_producer_keeps_the_metadata_of_the_topics_it_sends_to(kafka_bootstrap, unique_names):
    """A topic first known from an all-topics answer is tracked once sent to.

    Without ``track_produced_topics``, aiokafka drops it at the next refresh
    (here, for a topic created later) and a batch of it queued then never
    finds its leader: the hang of ``tocsin demo`` that this fixes.
    """
    from aiokafka import AIOKafkaProducer

    old, new = unique_names("old"), unique_names("new")
    create_topics(kafka_bootstrap, [old], partitions=2)
    tracked, plain = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap), AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    track_produced_topics(tracked)
    await tracked.start()
    await plain.start()
    try:
        for producer in (tracked, plain):
            # A refresh while no topic is tracked asks for all of them (Faust
            # forces one after declaring a topic; tansu answers so at start).
            await producer.client.force_metadata_update()
            assert producer.client.cluster.partitions_for_topic(old) == {0, 1}
            await producer.send_and_wait(old, b"a")
        create_topics(kafka_bootstrap, [new], partitions=1)
        for producer in (tracked, plain):
            await producer.send_and_wait(new, b"b")  # a refresh of the tracked topics
        assert tracked.client.cluster.partitions_for_topic(old) == {0, 1}
        await asyncio.wait_for(tracked.send_and_wait(old, b"c", partition=1), 10)
        # What the wrapper works around (if aiokafka stops dropping it, the wrapper can go).
        assert plain.client.cluster.partitions_for_topic(old) is None
    finally:
        await tracked.stop()
        await plain.stop()


def _tansu_or_skip() -> None:
    try:
        tansu_binary()
    except BrokerError as exc:
        pytest.skip(str(exc))


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_embedded_broker_start_stop():
    _tansu_or_skip()
    first = EmbeddedBroker()
    second = EmbeddedBroker()
    with first, second:  # two at once: each has its own port and nothing else
        assert first.running and second.running
        assert first.bootstrap_servers != second.bootstrap_servers
        assert first.bootstrap_servers.startswith("127.0.0.1:")
        pid, port = first.pid, first.port
        assert pid is not None
        os.kill(pid, 0)  # alive
        wait_for_broker(first.bootstrap_servers, timeout=5)
        producer = KafkaProducer(bootstrap_servers=first.bootstrap_servers)
        producer.send("hello", b"world").get(timeout=10)
        producer.close()
        consumer = KafkaConsumer(
            "hello", bootstrap_servers=first.bootstrap_servers, auto_offset_reset="earliest"
        )
        assert [r.value for r in _consume(consumer, 1, timeout=10)] == [b"world"]
        consumer.close()
        t = time.monotonic()
    stop_seconds = time.monotonic() - t
    assert not first.running and not second.running
    assert first.pid is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not _port_open(port)
    assert stop_seconds < 15
    first.stop()  # idempotent
    # It starts again (empty: a memory broker).
    with EmbeddedBroker() as again:
        wait_for_broker(again.bootstrap_servers, timeout=5)


def _alive(pid: int) -> bool:
    """Running, and not a zombie waiting for a reaper."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


_PARENT = """
import sys, time
from stream.broker import EmbeddedBroker
broker = EmbeddedBroker().start()
print(broker.pid, flush=True)
time.sleep(600)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM])
def test_embedded_broker_dies_with_its_parent(how):
    """Killed, the parent runs no atexit hook: the kernel's parent-death signal stops tansu."""
    _tansu_or_skip()
    root = Path(__file__).resolve().parents[2]
    parent = subprocess.Popen([sys.executable, "-c", _PARENT], stdout=subprocess.PIPE, text=True, cwd=root)
    pid = 0
    try:
        pid = int(parent.stdout.readline())
        assert _alive(pid)
        parent.send_signal(how)
        parent.wait(timeout=10)
        deadline = time.monotonic() + 10
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(pid), f"tansu (pid {pid}) outlived its parent"
    finally:
        parent.kill()
        parent.wait()
        if pid and _alive(pid):  # the test failed: leave no orphan behind
            os.kill(pid, signal.SIGKILL)


def test_embedded_broker_missing_binary(tmp_path):
    broker = EmbeddedBroker(binary=tmp_path / "no-such-tansu")
    with pytest.raises(BrokerError, match="no broker binary"):
        broker.start()
    assert not broker.running


def test_wait_for_broker_times_out_clearly():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening
        t = time.monotonic()
        with pytest.raises(BrokerError, match="no broker listening"):
            wait_for_broker(f"127.0.0.1:{port}", timeout=1)
    assert time.monotonic() - t < 5
