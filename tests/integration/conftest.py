"""Integration tests: a real Kafka broker for the whole session.

The broker is `TOCSIN_TEST_BROKER` (HOST:PORT) when set, as in CI where
`scripts/kafka-local` starts Apache Kafka; otherwise an embedded tansu broker
(`stream.broker.EmbeddedBroker`) is started on first use and stopped at the
end of the session. Every test in this folder gets the `integration` marker,
so `pytest -m "not integration"` runs without any broker.
"""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path

import pytest

from stream.broker import BrokerError, EmbeddedBroker, tansu_binary, wait_for_broker

HERE = Path(__file__).resolve().parent
ENV = "TOCSIN_TEST_BROKER"

# What the session's broker is, for the report: set by the fixture.
_used: dict[str, str] = {}


def _describe_env_broker(servers: str) -> str:
    return f"broker: Apache Kafka at {servers} ({ENV})"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        try:
            inside = Path(str(item.path)).resolve().is_relative_to(HERE)
        except (OSError, ValueError):
            inside = False
        if inside:
            item.add_marker(pytest.mark.integration)


def pytest_report_header(config: pytest.Config) -> str:
    servers = os.environ.get(ENV, "").strip()
    if servers:
        return _describe_env_broker(servers)
    return "broker: embedded tansu (started on first use; set TOCSIN_TEST_BROKER to use another)"


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    # Also shown under -q, which hides the report header.
    if _used:
        terminalreporter.write_line(_used["description"])


@pytest.fixture(scope="session")
def kafka_bootstrap(request: pytest.FixtureRequest):
    """Bootstrap servers ("HOST:PORT") of the session's Kafka broker."""
    servers = os.environ.get(ENV, "").strip()
    if servers:
        try:
            wait_for_broker(servers, timeout=30)
        except BrokerError as exc:
            pytest.fail(f"{ENV}={servers} does not answer: {exc}", pytrace=False)
        _used["description"] = _describe_env_broker(servers)
        _used["kind"] = "external"
        yield servers
        return

    try:
        tansu_binary()
    except BrokerError as exc:
        pytest.skip(f"no broker for integration tests: set {ENV}, or {exc}")
    broker = EmbeddedBroker()
    try:
        broker.start()
    except BrokerError as exc:
        pytest.fail(f"the embedded tansu broker did not start: {exc}", pytrace=False)
    _used["description"] = f"broker: embedded tansu at {broker.bootstrap_servers}"
    _used["kind"] = "embedded"
    try:
        yield broker.bootstrap_servers
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def embedded_broker(kafka_bootstrap: str) -> bool:
    """True when the session's broker is the embedded tansu (tests adapt to its limits)."""
    return _used.get("kind") == "embedded"


@pytest.fixture
def unique_names(request: pytest.FixtureRequest):
    """Factory of names unique to this test run, for topics and consumer groups.

    ``unique_names()`` -> "it-test-name-1a2b3c4d"; ``unique_names("orders")``
    -> "it-orders-test-name-5e6f7a8b". Only characters Kafka accepts.
    """
    test = re.sub(r"[^A-Za-z0-9._-]+", "-", request.node.name).strip("-")[:60]

    def make(prefix: str = "") -> str:
        parts = ["it", prefix, test, uuid.uuid4().hex[:8]]
        return "-".join(p for p in parts if p)

    return make
