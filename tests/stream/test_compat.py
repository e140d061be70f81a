"""stream.compat without a broker: the version check, and the Faust producer factory wrapped."""

from __future__ import annotations

import faust
import pytest

from stream import compat
from stream.compat import CompatError, check_versions


def test_the_installed_clients_are_tested_ones():
    versions = check_versions()
    assert set(versions) == {"aiokafka", "faust-streaming"}


@pytest.mark.parametrize("name, version", [("aiokafka", "0.15.0"), ("aiokafka", "0.11.0"),
                                           ("faust-streaming", "0.16.1"), ("aiokafka", "garbage")])
def test_an_untested_version_fails_loudly(monkeypatch, name, version):
    monkeypatch.delenv("TOCSIN_ALLOW_UNTESTED_CLIENTS", raising=False)
    versions = {"aiokafka": "0.14.0", "faust-streaming": "0.15.3", name: version}
    with pytest.raises(CompatError, match=f"{name} {version} is installed.*tested with"):
        check_versions(versions)


def test_an_untested_version_can_be_allowed(monkeypatch, caplog):
    monkeypatch.setenv("TOCSIN_ALLOW_UNTESTED_CLIENTS", "1")
    check_versions({"aiokafka": "0.99.0", "faust-streaming": "0.15.3"})
    assert "aiokafka 0.99.0 is installed" in caplog.text


def test_a_missing_private_attribute_fails_loudly(monkeypatch):
    from aiokafka.client import AIOKafkaClient

    monkeypatch.delattr(AIOKafkaClient, "_wait_on_metadata")
    with pytest.raises(CompatError, match="AIOKafkaClient._wait_on_metadata"):
        check_versions()


async def test_every_producer_faust_builds_tracks_its_topics():
    """Faust builds its aiokafka producers in ``_new_producer`` with no hook of
    its own; after track_app_producers each one carries the metadata fix."""
    app = faust.App("compat-test", broker="kafka://127.0.0.1:9", store="memory://", autodiscover=False)
    plain = app.producer._new_producer()
    assert not getattr(plain.client._wait_on_metadata, "_tocsin_tracks_topics", False)
    compat.track_app_producers(app)
    compat.track_app_producers(app)  # idempotent: one wrapper
    tracked = app.producer._new_producer()
    wait = tracked.client._wait_on_metadata
    assert getattr(wait, "_tocsin_tracks_topics", False)
    compat.track_produced_topics(tracked)
    assert tracked.client._wait_on_metadata is wait
    for producer in (plain, tracked):  # never started: nothing to close but the client object
        await producer.client.close()


def test_crash_reason_reads_the_app_and_its_agents():
    app = faust.App("compat-crash", broker="kafka://127.0.0.1:9", store="memory://", autodiscover=False)

    @app.agent(app.topic("t"))
    async def agent(stream):
        async for _ in stream:
            pass

    assert compat.crash_reason(app) is None
    boom = RuntimeError("boom")
    agent.crash_reason = boom  # what mode's Service.crash() records
    assert compat.crash_reason(app) is boom
    app.crash_reason = ValueError("app")
    assert isinstance(compat.crash_reason(app), ValueError)
