"""``tocsin worker``: the Faust worker on the configured broker, or an embedded one."""

from __future__ import annotations

import logging
import sys

from kafka.errors import KafkaError

from detectors.errors import ConfigError

from .app import TocsinApp
from .settings import Config, config_problems, load_config

__all__ = ["run_worker"]

log = logging.getLogger(__name__)


def declare_topics(cfg: Config, servers: str) -> None:
    """Create tocsin's topics that do not exist yet, before Faust subscribes.

    Faust creates only its internal topics; a source topic missing when the
    consumer subscribes is ignored until a later metadata refresh, so an
    ``alerts`` topic created by the first alert would not be read for
    minutes. Where the client may not create topics (ACLs), say so and go on:
    the operators created them.
    """
    from .broker import BrokerError, create_topics

    t = cfg.topics
    names = [t.requests, t.disk_health, t.anomalies, t.alerts, t.dead_letter, t.silences, t.labels, t.acks]
    try:
        created = create_topics(servers, names, partitions=cfg.kafka.partitions,
                                replication=cfg.kafka.replication_factor, **cfg.kafka.kafka_python_options())
    except (BrokerError, KafkaError) as exc:
        log.warning("could not check or create the topics %s: %s", names, exc)
        return
    if created:
        print(f"tocsin worker: created topics {', '.join(created)} ({cfg.kafka.partitions} partitions)", file=sys.stderr)


def serve(tapp: TocsinApp, cfg: Config, loglevel: str = "info", label: str = "tocsin worker") -> int:
    """Serve the Prometheus metrics and run ``tapp`` as a Faust worker until it stops; its exit status."""
    import faust

    srv = tapp.metrics.serve(cfg.metrics.host, cfg.metrics.port)
    print(f"{label}: Prometheus metrics on {srv.url}", file=sys.stderr)
    worker = faust.Worker(tapp.app, loglevel=loglevel, quiet=True)
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        return int(exc.code or 0)
    finally:
        srv.close()
    return 0


def run_worker(config_path: str | None, loglevel: str = "info") -> int:

    cfg = load_config(config_path)
    # A receiver whose secret is missing fails now, before a broker is started or a topic created.
    problems = config_problems(cfg)
    if problems:
        raise ConfigError("; ".join(problems))
    broker = None
    servers = cfg.kafka.bootstrap_servers
    if not servers:
        from .broker import EmbeddedBroker

        broker = EmbeddedBroker()
        broker.start()
        servers = broker.bootstrap_servers
        print(f"tocsin worker: no broker configured, started the embedded tansu broker at {servers} "
              "(memory only: a restart loses every topic)", file=sys.stderr)
    else:
        print(f"tocsin worker: broker {servers}", file=sys.stderr)
    try:
        declare_topics(cfg, servers)
        tapp = TocsinApp(cfg, servers, embedded=broker is not None, web=True)
        return serve(tapp, cfg, loglevel)
    finally:
        if broker is not None:
            broker.stop()
