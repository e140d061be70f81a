"""aiokafka drops the metadata of a topic a producer sends to; a batch queued for it then never goes."""

import asyncio
import sys
import uuid

import aiokafka
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic


async def main(bootstrap: str) -> int:
    old, new = f"repro-old-{uuid.uuid4().hex[:8]}", f"repro-new-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(old, 2, 1)])
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=1000)
    await producer.start()
    try:
        # 1. The client tracks no topic yet, so a refresh asks for all topics
        #    (Faust forces one after declaring each topic).
        await producer.client.force_metadata_update()
        # 2. A send to a topic already in that answer: _wait_on_metadata finds
        #    it in the cache and never calls add_topic, so it stays untracked.
        await producer.send_and_wait(old, b"a", partition=0)
        print("tracked topics:", sorted(producer.client._topics))
        # 3. A batch for it waits in the accumulator (linger_ms)...
        queued = await producer.send(old, b"b", partition=1)
        # 4. ...while a send to another topic tracks that one, and the refresh
        #    that follows asks for the tracked topics only: the first topic is dropped.
        await admin.create_topics([NewTopic(new, 1, 1)])
        await producer.send_and_wait(new, b"c")
        print(f"partitions of {old} after the refresh:", producer.client.cluster.partitions_for_topic(old))
        try:
            await asyncio.wait_for(asyncio.shield(queued), 15)
            print(f"aiokafka {aiokafka.__version__}: the queued batch was delivered (not reproduced)")
            return 0
        except TimeoutError:
            print(f"aiokafka {aiokafka.__version__}: the queued batch for {old} was not delivered in 15 s "
                  "(the sender waits for a leader that no refresh will bring)")
            return 1
    finally:
        await admin.close()
        try:
            await asyncio.wait_for(producer.stop(), 5)  # stop() flushes: it waits on that batch too
        except TimeoutError:
            print("producer.stop() did not return in 5 s either")


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "localhost:9092")))
