"""Acknowledgements: someone is on it, so stop reminding them.

An :class:`Ack` says that ``author`` took the incident of one aggregation
group (its group key) at ``at``; it names the lead alert of the message that
was acknowledged (``fingerprint``). While it holds, the group's reminders
(``repeat_interval``) are muted; updates (an alert joining, a change of
cause, an escalation) and the resolve are still sent: an acknowledgement
mutes repetition, never news. It ends when that alert resolves
(:meth:`AckStore.clears`), so the next incident of the group reminds again.

Acks travel as records (schema ``tocsin.ack.v1``) on a topic every worker
reads whole, like silences: the click may reach one worker and the group be
delivered by another. The latest ``updated_at`` of a group key wins, so
records may be replayed in any order.

The notification pipeline consults the store through one small interface,
``mutes_reminder(group_key, now)`` (:class:`ReminderMuter`), as it consults
silences through ``mutes(labels, now)``.

>>> store = AckStore()
>>> rec = Ack("/:oncall:{service=\\"ent\\"}", "04b95f564b704143", "U024BE7LH", at=100.0).to_record()
>>> store.apply(rec).author, store.mutes_reminder('/:oncall:{service="ent"}', now=200.0)
('U024BE7LH', True)
>>> from alerts.model import Alert
>>> a = Alert({"service": "ent", "host": None, "disk": None}, "resolved", "warning", "t", "unknown", 0.5, 0.0,
...           ends_at=300.0, fingerprint="04b95f564b704143")
>>> [store.apply(c) for c in store.clears(a, now=300.0)] and store.mutes_reminder('/:oncall:{service="ent"}', 301.0)
False
"""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

import orjson

from detectors.timeutil import format_ts, parse_ts

from .errors import AlertsError
from .model import Alert, schema_record

__all__ = ["SCHEMA", "Ack", "AckError", "AckStore", "ReminderMuter", "ack_text", "decode"]

SCHEMA = "tocsin.ack.v1"


class AckError(AlertsError):
    """A record that is not an acknowledgement."""


class ReminderMuter(Protocol):
    """What mutes the reminders of a group (and nothing else): an :class:`AckStore`."""

    def mutes_reminder(self, group_key: str, now: float) -> bool: ...


@dataclass(frozen=True, slots=True)
class Ack:
    group_key: str
    fingerprint: str  #: the lead alert of the message acknowledged; the ack ends when it resolves
    author: str  #: a Slack user id (or a name from another source)
    at: float  #: when it was acknowledged
    cleared_at: float | None = None  #: when it ended (the alert resolved); None while it holds
    source: str = "slack"

    @property
    def updated_at(self) -> float:
        return self.at if self.cleared_at is None else max(self.at, self.cleared_at)

    def holds(self, now: float) -> bool:
        return self.at <= now and (self.cleared_at is None or now < self.cleared_at)

    def to_record(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "group_key": self.group_key,
            "fingerprint": self.fingerprint,
            "author": self.author,
            "source": self.source,
            "ts": format_ts(self.at),
            "cleared_at": None if self.cleared_at is None else format_ts(self.cleared_at),
        }


def decode(data: bytes | str | dict[str, Any]) -> Ack:
    """An Ack from its record; AckError when it is not one."""
    rec = schema_record(data, SCHEMA, "an ack", AckError)
    try:
        cleared = rec.get("cleared_at")
        return Ack(
            group_key=str(rec["group_key"]),
            fingerprint=str(rec["fingerprint"]),
            author=str(rec["author"]),
            at=parse_ts(rec["ts"]),
            cleared_at=None if cleared is None else parse_ts(cleared),
            source=str(rec.get("source", "slack")),
        )
    except KeyError as exc:
        raise AckError(f"ack record without {exc.args[0]}") from None
    except (ValueError, TypeError) as exc:
        raise AckError(f"bad ack record: {exc}") from None


class AckStore:
    """The acknowledgements a worker knows, one per group key; the latest update wins.

    ``table``: optional mapping (group key to record bytes) written through.
    """

    def __init__(self, table: MutableMapping[str, bytes] | None = None) -> None:
        self.table = table
        self._acks: dict[str, Ack] = {}

    def apply(self, record: bytes | str | dict[str, Any] | Ack) -> Ack:
        """Take an ack record (new or cleared); returns the ack now kept for its group."""
        a = record if isinstance(record, Ack) else decode(record)
        old = self._acks.get(a.group_key)
        # The latest update wins; on a tie a clear does (it is the later event).
        if old is not None and (old.updated_at, old.cleared_at is not None) > (a.updated_at, a.cleared_at is not None):
            return old
        self._acks[a.group_key] = a
        if self.table is not None:
            self.table[a.group_key] = orjson.dumps(a.to_record())
        return a

    def get(self, group_key: str, now: float) -> Ack | None:
        """The ack holding for ``group_key`` at ``now``, or None."""
        a = self._acks.get(group_key)
        return a if a is not None and a.holds(now) else None

    def mutes_reminder(self, group_key: str, now: float) -> bool:
        return self.get(group_key, now) is not None

    def clears(self, alert: Alert, now: float) -> list[Ack]:
        """The acks that ``alert`` ends (it resolved, and they were about it), as records to publish."""
        if alert.status != "resolved":
            return []
        end = alert.ends_at if alert.ends_at is not None else now
        return [replace(a, cleared_at=max(end, a.at)) for a in self._acks.values()
                if a.fingerprint == alert.fingerprint and a.cleared_at is None]

    def __len__(self) -> int:
        return len(self._acks)


def ack_text(a: Ack) -> str:
    """``acknowledged by <@U024BE7LH> at 08:20 UTC``: who and when, as Slack shows a user."""
    who = f"<@{a.author}>" if a.source == "slack" else a.author
    return f"acknowledged by {who} at {format_ts(a.at)[11:16]} UTC"
