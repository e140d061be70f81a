"""Fixtures for the alerts tests: factories for alerts and for fake Slack servers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest

from alerts.model import Alert, Evidence
from tests.alerts.fake_slack import FakeSlack

T0 = 1617696240.0  # 2021-04-06T08:04:00Z


@pytest.fixture
def make_alert() -> Callable[..., Alert]:
    """Build an alert; keyword arguments override the defaults."""

    def make(**overrides: Any) -> Alert:
        fields: dict[str, Any] = {
            "labels": {"service": "ent-grand-est", "host": None, "disk": None},
            "status": "firing",
            "severity": "critical",
            "title": "Traffic 8.2x usual on ent-grand-est: suspected attack",
            "cause": "suspected_attack",
            "confidence": 0.86,
            "starts_at": T0,
            "evidence": (
                Evidence(
                    "request_rate", 812.0, 99.0, "812 req/s against 99 usual for a Tuesday 08:00"
                ),
                Evidence("distinct_asn_share", 0.91, 0.2, "91% of requests from 3 hosting ASNs"),
            ),
            "anomalies": ("a1", "a2"),
        }
        fields.update(overrides)
        return Alert(**fields)

    return make


@pytest.fixture
def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """slack-sdk reads HTTP(S)_PROXY; the fake server is local."""
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    yield


@pytest.fixture
async def fake_slack_factory(
    no_proxy_env: None,
) -> AsyncIterator[Callable[..., Awaitable[FakeSlack]]]:
    """``await fake_slack_factory(**kwargs)`` starts a FakeSlack; all stop at teardown."""
    servers: list[FakeSlack] = []

    async def start(**kwargs: Any) -> FakeSlack:
        server = await FakeSlack(**kwargs).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.stop()


@pytest.fixture
async def fake_slack(fake_slack_factory: Callable[..., Awaitable[FakeSlack]]) -> FakeSlack:
    """One running fake Slack with the default token and channel ``alerts``."""
    return await fake_slack_factory()
