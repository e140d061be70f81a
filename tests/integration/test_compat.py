"""The upstream behaviours stream.compat works around, on the session's broker.

Each test shows the behaviour on a plain aiokafka object next to the worked
around one; when a release stops doing it, the "upstream" assertion fails
and the workaround can go. (The producer's metadata drop is
``test_brokers.py::test_producer_keeps_the_metadata_of_the_topics_it_sends_to``.)
"""

from __future__ import annotations

import asyncio

from stream import compat
from stream.broker import create_topics


async def test_a_consumer_learns_a_new_topics_partitions_only_by_a_refresh(kafka_bootstrap, unique_names):
    from aiokafka import AIOKafkaConsumer

    first, later = unique_names("first"), unique_names("later")
    create_topics(kafka_bootstrap, [first], partitions=1)
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        create_topics(kafka_bootstrap, [later], partitions=3)
        # Upstream: the topic exists, the consumer's public API still does not know it...
        await asyncio.sleep(0.5)
        assert consumer.partitions_for_topic(later) is None
        assert later in await consumer.topics()  # ...even after listing it (a separate fetch)
        assert consumer.partitions_for_topic(later) is None
        await compat.refresh_metadata(consumer)
        assert consumer.partitions_for_topic(later) == {0, 1, 2}
    finally:
        await consumer.stop()


async def test_faust_producers_keep_the_metadata_of_the_topics_they_send_to(kafka_bootstrap, unique_names):
    """The metadata drop through Faust's own producer (as the worker has it), with and without the patch."""
    import faust

    old, new = unique_names("old"), unique_names("new")
    create_topics(kafka_bootstrap, [old], partitions=2)
    producers = []
    for patched in (True, False):
        app = faust.App(unique_names("app"), broker=f"kafka://{kafka_bootstrap}", store="memory://",
                        autodiscover=False)
        if patched:
            compat.track_app_producers(app)
        producer = app.producer._new_producer()
        await producer.start()
        producers.append(producer)
    tracked, plain = producers
    try:
        for producer in producers:
            await producer.client.force_metadata_update()  # an all-topics answer, as at Faust's start
            await producer.send_and_wait(old, b"a")
        create_topics(kafka_bootstrap, [new], partitions=1)
        for producer in producers:
            await producer.send_and_wait(new, b"b")  # a refresh of the tracked topics only
        assert tracked.client.cluster.partitions_for_topic(old) == {0, 1}
        await asyncio.wait_for(tracked.send_and_wait(old, b"c", partition=1), 10)
        assert plain.client.cluster.partitions_for_topic(old) is None  # upstream: dropped
    finally:
        for producer in producers:
            await producer.stop()
