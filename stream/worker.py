"""``tocsin worker``: the Faust worker on the configured broker, or an embedded one."""

from __future__ import annotations

import logging
import sys

from .app import TocsinApp
from .settings import load_config

__all__ = ["run_worker"]

log = logging.getLogger(__name__)


def run_worker(config_path: str | None, loglevel: str = "info") -> int:
    import faust

    cfg = load_config(config_path)
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
        tapp = TocsinApp(cfg, servers, embedded=broker is not None, web=True)
        srv = tapp.metrics.serve(cfg.metrics.host, cfg.metrics.port)
        print(f"tocsin worker: Prometheus metrics on {srv.url}", file=sys.stderr)
        worker = faust.Worker(tapp.app, loglevel=loglevel, quiet=True)
        try:
            worker.execute_from_commandline()
        except SystemExit as exc:
            return int(exc.code or 0)
        finally:
            srv.close()
        return 0
    finally:
        if broker is not None:
            broker.stop()
