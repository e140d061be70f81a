"""``tocsin silence add | expire | list``: silences through the ``silences`` topic.

Every worker reads the topic and honours what it says; this command reads it
too (from the start), applies the change through the same
:class:`~alerts.silence.SilenceAPI` as the worker's HTTP endpoint, and
publishes the resulting record (key = silence id).
"""

from __future__ import annotations

import sys
import time
from typing import Any

import orjson

from alerts.silence import SilenceAPI, SilenceError, SilenceStore

from .settings import Config

__all__ = ["run_silence"]


def _load(cfg: Config, servers: str, timeout_ms: int = 3000) -> SilenceStore:
    from kafka import KafkaConsumer

    store = SilenceStore()
    consumer = KafkaConsumer(cfg.topics.silences, bootstrap_servers=servers, auto_offset_reset="earliest",
                             enable_auto_commit=False, consumer_timeout_ms=timeout_ms,
                             **cfg.kafka.kafka_python_options())
    try:
        for m in consumer:
            try:
                store.apply(m.value)
            except (ValueError, KeyError, TypeError, SilenceError):
                continue
    finally:
        consumer.close()
    return store


def _publish(cfg: Config, servers: str, rec: dict[str, Any]) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=servers, acks="all", **cfg.kafka.kafka_python_options())
    try:
        producer.send(cfg.topics.silences, key=rec["id"].encode(), value=orjson.dumps(rec)).get(timeout=15)
    finally:
        producer.close()


def run_silence(args: Any, cfg: Config) -> int:
    servers = args.bootstrap_servers or cfg.kafka.bootstrap_servers
    if not servers:
        print("tocsin: error: silence: name the brokers (--bootstrap-servers or kafka.bootstrap_servers)", file=sys.stderr)
        return 2
    now = time.time()
    api = SilenceAPI(_load(cfg, servers), cfg.web.silence_limits())
    try:
        if args.action == "add":
            payload = {"matchers": args.matcher, "created_by": args.author, "comment": args.comment,
                       "match_all": bool(getattr(args, "match_all", False))}
            if args.ends_at:
                payload["ends_at"] = args.ends_at
            else:
                payload["duration"] = args.duration
            rec = api.create_silence(payload, now)
            _publish(cfg, servers, rec)
            print(f"silence {rec['id']} until {rec['ends_at']}")
        elif args.action == "expire":
            rec = api.expire_silence(args.id, now)
            _publish(cfg, servers, rec)
            print(f"silence {args.id} expired")
        else:
            for rec in api.list_silences(now):
                print(orjson.dumps(rec).decode())
    except SilenceError as exc:
        print(f"tocsin: error: silence: {exc}", file=sys.stderr)
        return 2
    return 0
