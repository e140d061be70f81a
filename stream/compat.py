"""Every use of a private API of aiokafka or Faust, in one place, for the versions checked.

tocsin works around two aiokafka behaviours through attributes that are not
part of its API; each function below says what it touches and why, and
``tests/integration/test_compat.py`` has a test per workaround that shows the
upstream behaviour (so a release that fixes it shows up as a failing
"upstream still does this" assertion, and the workaround can go).

- :func:`track_produced_topics` (``AIOKafkaClient._wait_on_metadata``): a
  producer drops the metadata of a topic it sends to at the next refresh,
  and a batch queued for it then waits for ever (docs/aiokafka-metadata.md).
- :func:`track_app_producers` (Faust's ``Producer._new_producer``): Faust
  has no hook on the aiokafka producers it builds; this wraps its factory so
  every one of them gets :func:`track_produced_topics`.
- :func:`refresh_metadata` (``AIOKafkaConsumer._client``): a consumer that
  assigns partitions by hand has no public way to learn the partitions of a
  topic created after it started.

:func:`check_versions` runs first (from :func:`track_app_producers`, that is
when a :class:`~stream.app.TocsinApp` is built): it refuses, with a message
that says what to do, an aiokafka or faust-streaming outside the versions
these were checked with, and any version where an attribute they use is gone.
``TOCSIN_ALLOW_UNTESTED_CLIENTS=1`` turns the version refusal into a warning.

:func:`crash_reason` needs no private API (mode's ``Service.crash_reason``
is public); it is here so that the app and the demo read it one way.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
from typing import Any

from detectors.errors import TocsinError

__all__ = [
    "TESTED",
    "CompatError",
    "check_versions",
    "crash_reason",
    "refresh_metadata",
    "track_app_producers",
    "track_produced_topics",
]

log = logging.getLogger(__name__)

#: (major, minor) releases of each client whose private attributes used here
#: were read and tested (tests/integration/test_compat.py ran on each).
TESTED: dict[str, tuple[tuple[int, int], ...]] = {
    "aiokafka": ((0, 12), (0, 13), (0, 14)),
    "faust-streaming": ((0, 15),),
}

_ALLOW_ENV = "TOCSIN_ALLOW_UNTESTED_CLIENTS"
_TRACKED_MARK = "_tocsin_tracks_topics"


class CompatError(TocsinError):
    """An aiokafka or Faust that tocsin's workarounds were not checked against."""


def _minor(version: str) -> tuple[int, int] | None:
    parts = version.split(".")
    try:
        return int(parts[0]), int(parts[1])
    except (IndexError, ValueError):
        return None


def check_versions(versions: dict[str, str] | None = None) -> dict[str, str]:
    """Refuse an untested aiokafka / faust-streaming, or one without the attributes used here.

    ``versions`` (package -> version) is read from the installed packages
    when not given. Returns it. Raises :class:`CompatError`.
    """
    if versions is None:
        versions = {name: importlib.metadata.version(name) for name in TESTED}
    for name, version in versions.items():
        minor = _minor(version)
        if minor in TESTED[name]:
            continue
        tested = ", ".join(f"{a}.{b}.x" for a, b in TESTED[name])
        message = (
            f"{name} {version} is installed, and tocsin's workarounds of its private API "
            f"(stream/compat.py) were tested with {tested} only: install one of those "
            f"(pip install 'tocsin' resolves them), or set {_ALLOW_ENV}=1 to run anyway"
        )
        if os.environ.get(_ALLOW_ENV, "") not in ("", "0"):
            log.warning("%s (%s=1: running anyway)", message, _ALLOW_ENV)
        else:
            raise CompatError(message)
    missing = _missing_attributes()
    if missing:
        raise CompatError(
            f"aiokafka {versions.get('aiokafka')} / faust-streaming {versions.get('faust-streaming')} "
            f"lack what stream/compat.py patches: {', '.join(missing)}"
        )
    return versions


def _missing_attributes() -> list[str]:
    from aiokafka import AIOKafkaConsumer
    from aiokafka.client import AIOKafkaClient
    from faust.transport.drivers.aiokafka import Producer

    wanted = [
        (AIOKafkaClient, "_wait_on_metadata"),
        (AIOKafkaClient, "add_topic"),
        (AIOKafkaClient, "force_metadata_update"),
        (Producer, "_new_producer"),
        (AIOKafkaConsumer, "partitions_for_topic"),
    ]
    return [f"{cls.__module__}.{cls.__name__}.{attr}" for cls, attr in wanted if not hasattr(cls, attr)]


def track_produced_topics(producer: Any) -> None:
    """Make an AIOKafkaProducer keep the metadata of every topic it sends to.

    aiokafka refreshes the metadata of the topics its client tracks and
    drops the rest from its cache. A producer's first answer lists every
    topic, so a send to a topic already in that answer is not tracked; the
    next refresh (Faust forces one after declaring each topic) drops the
    topic, and a batch of it still queued then has no leader for ever: the
    sender asks for metadata in a tight loop, the batch never goes, and a
    ``flush`` waits on it (docs/aiokafka-metadata.md). Here, the first send
    to a topic adds it to the tracked ones.

    Private API: ``producer.client._wait_on_metadata``, replaced on this one
    client by a wrapper that calls the original.
    """
    client = producer.client
    wait = client._wait_on_metadata
    if getattr(wait, _TRACKED_MARK, False):
        return
    tracked: set[str] = set()

    async def wait_on_metadata(topic: str) -> Any:
        if topic not in tracked:
            tracked.add(topic)
            client.add_topic(topic)  # refreshes the metadata once if it was not tracked
        return await wait(topic)

    setattr(wait_on_metadata, _TRACKED_MARK, True)
    client._wait_on_metadata = wait_on_metadata


def track_app_producers(app: Any) -> None:
    """Every aiokafka producer that this Faust app builds gets :func:`track_produced_topics`.

    Checks the versions first (:func:`check_versions`). Private API: Faust's
    ``app.producer._new_producer``, wrapped on this app's producer only.
    """
    check_versions()
    fproducer = app.producer
    new_producer = fproducer._new_producer
    if getattr(new_producer, _TRACKED_MARK, False):
        return

    def tracked_producer(*args: Any, **kwargs: Any) -> Any:
        producer = new_producer(*args, **kwargs)
        track_produced_topics(producer)
        return producer

    setattr(tracked_producer, _TRACKED_MARK, True)
    fproducer._new_producer = tracked_producer


async def refresh_metadata(consumer: Any) -> None:
    """Fetch the cluster metadata into an AIOKafkaConsumer's cache now.

    A consumer that assigns partitions by hand asks for the metadata of the
    topics it was told of; a topic created afterwards stays unknown to
    ``partitions_for_topic`` until a refresh, and the consumer has no public
    method for one. Private API: ``consumer._client.force_metadata_update()``.
    """
    await consumer._client.force_metadata_update()


def crash_reason(app: Any) -> BaseException | None:
    """Why a Faust app or one of its agents crashed (Faust then runs on without it), or None.

    Public API of mode's ``Service`` (``crash_reason``), on the app and on
    each agent.
    """
    reason = app.crash_reason
    if reason is not None:
        return reason
    return next((a.crash_reason for a in app.agents.values() if a.crash_reason is not None), None)
