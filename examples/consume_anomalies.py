"""Print one line per anomaly from tocsin's ``anomalies`` topic, with kafka-python.

    python examples/consume_anomalies.py --bootstrap-servers localhost:9092 [--from-beginning]

Records follow ``schemas/anomaly.v1.json``; the message key is the entity
(``service``, ``service/endpoint``, ``host`` or ``host/disk``).
"""

from __future__ import annotations

import argparse
import json

from kafka import KafkaConsumer


def format_anomaly(entity: str, a: dict) -> str:
    return (f"{a['ts']}  {a['severity']:8s} {a['detector']:7s} {entity}  {a['signal']}={a['value']:g} "
            f"expected {a['expected']:g} [{a['lower']:g}..{a['upper']:g}]  score {a['score']:.2f}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bootstrap-servers", default="localhost:9092")
    p.add_argument("--topic", default="anomalies")
    p.add_argument("--group", default=None, help="consumer group (default: none, nothing committed)")
    p.add_argument("--from-beginning", action="store_true")
    p.add_argument("--idle-timeout", type=float, default=None, help="stop after this many seconds without a message")
    args = p.parse_args(argv)
    opts = {"consumer_timeout_ms": int(args.idle_timeout * 1000)} if args.idle_timeout else {}
    consumer = KafkaConsumer(
        args.topic,
        bootstrap_servers=args.bootstrap_servers.split(","),
        group_id=args.group,
        auto_offset_reset="earliest" if args.from_beginning else "latest",
        **opts,
    )
    try:
        for msg in consumer:
            print(format_anomaly((msg.key or b"").decode(), json.loads(msg.value)), flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()


if __name__ == "__main__":
    main()
