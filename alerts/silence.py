"""Silences (Alertmanager's): mute the alerts that match, for a while, with an author and a reason.

A :class:`Silence` has matchers (all must match; ``cause`` and ``severity``
match like labels), ``starts_at``, ``ends_at``, ``created_by`` and
``comment``. It is *active* from ``starts_at`` (inclusive) to ``ends_at``
(exclusive).

Silences travel as JSON records (schema ``tocsin.silence.v1``), so the
stream layer can keep them on a Kafka topic (``silences``, keyed by id) that
every worker reads: :func:`encode` / :func:`decode` turn a silence into
bytes and back, and :meth:`SilenceStore.apply` takes a record read back.
Expiring a silence is a record too: the same id with ``ends_at`` moved to
the expiry time and a later ``updated_at``; the latest ``updated_at`` wins,
so records may be replayed in any order.

The API layer (:class:`SilenceAPI`, no HTTP in it) validates what a user
sends and says clearly what is wrong: ``create_silence(payload, now)`` and
``expire_silence(id, now)`` return the record to publish (and apply it to
the local store at once), ``list_silences(now)`` lists them with their state.

>>> store = SilenceStore()
>>> api = SilenceAPI(store)
>>> rec = api.create_silence({"matchers": ['service="ent"'], "ends_at": "2021-04-06T10:00:00Z",
...                           "created_by": "ana", "comment": "maintenance"}, now=1617696000.0)
>>> rec["status"], Silencer(store).mutes({"service": "ent"}, now=1617696000.0)
('active', True)
>>> _ = api.expire_silence(rec["id"], now=1617696060.0)
>>> Silencer(store).mutes({"service": "ent"}, now=1617696060.0)
False
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass, replace
from typing import Any

import orjson

from detectors.configfile import parse_duration
from detectors.timeutil import format_ts, parse_ts

from .errors import AlertsError
from .matchers import Matcher, matches_all

__all__ = [
    "SCHEMA",
    "Silence",
    "SilenceAPI",
    "SilenceError",
    "SilenceNotFound",
    "SilenceStore",
    "Silencer",
    "decode",
    "encode",
]

SCHEMA = "tocsin.silence.v1"
#: How long an expired silence is kept (listed, and its id known), as in Alertmanager.
RETENTION = 120 * 3600.0


class SilenceError(AlertsError):
    """A silence request that cannot be done; ``status`` is the HTTP status to answer."""

    status = 400


class SilenceNotFound(SilenceError):
    status = 404


@dataclass(frozen=True, slots=True)
class Silence:
    id: str
    matchers: tuple[Matcher, ...]
    starts_at: float
    ends_at: float
    created_by: str
    comment: str
    updated_at: float

    def state(self, now: float) -> str:
        """``pending``, ``active`` or ``expired`` at ``now``."""
        if now < self.starts_at:
            return "pending"
        return "active" if now < self.ends_at else "expired"

    def mutes(self, labels: dict[str, str | None], now: float) -> bool:
        return self.starts_at <= now < self.ends_at and matches_all(self.matchers, labels)

    def to_record(self, now: float | None = None) -> dict[str, Any]:
        rec: dict[str, Any] = {
            "schema": SCHEMA,
            "id": self.id,
            "matchers": [str(m) for m in self.matchers],
            "starts_at": format_ts(self.starts_at),
            "ends_at": format_ts(self.ends_at),
            "created_by": self.created_by,
            "comment": self.comment,
            "updated_at": format_ts(self.updated_at),
        }
        if now is not None:
            rec["status"] = self.state(now)
        return rec


def encode(silence: Silence) -> bytes:
    """The record of ``silence`` as JSON bytes (a Kafka message value)."""
    return orjson.dumps(silence.to_record())


def decode(data: bytes | str | dict[str, Any]) -> Silence:
    """A silence from its record (bytes, str or dict); SilenceError when it is not one."""
    try:
        rec = orjson.loads(data) if isinstance(data, bytes | str) else data
    except orjson.JSONDecodeError as exc:
        raise SilenceError(f"not a silence record: invalid JSON ({exc})") from None
    if not isinstance(rec, dict) or rec.get("schema") != SCHEMA:
        raise SilenceError(f"not a silence record (schema must be {SCHEMA})")
    try:
        return Silence(
            id=str(rec["id"]),
            matchers=tuple(Matcher.parse(m) for m in rec["matchers"]),
            starts_at=parse_ts(rec["starts_at"]),
            ends_at=parse_ts(rec["ends_at"]),
            created_by=str(rec["created_by"]),
            comment=str(rec["comment"]),
            updated_at=parse_ts(rec["updated_at"]),
        )
    except KeyError as exc:
        raise SilenceError(f"silence record without {exc.args[0]}") from None
    except (ValueError, TypeError) as exc:
        raise SilenceError(f"bad silence record: {exc}") from None


class SilenceStore:
    """The silences a worker knows, by id; the latest ``updated_at`` of an id wins.

    ``table``: optional mapping (id to record bytes) the store writes through
    and loads from (a Faust global table in the worker).
    """

    def __init__(self, table: MutableMapping[str, bytes] | None = None) -> None:
        self.table = table
        self._silences: dict[str, Silence] = {}
        if table is not None:
            for key in list(table):
                raw = table.get(key)
                if raw is not None:
                    self.apply(raw)

    def apply(self, record: bytes | str | dict[str, Any] | Silence) -> Silence:
        """Take a silence record (new, updated or expired); returns the silence now kept for its id."""
        s = record if isinstance(record, Silence) else decode(record)
        old = self._silences.get(s.id)
        # The latest update wins; on a tie the earlier end (an expiry) does.
        if old is not None and (old.updated_at, -old.ends_at) > (s.updated_at, -s.ends_at):
            return old
        self._silences[s.id] = s
        if self.table is not None:
            self.table[s.id] = encode(s)
        return s

    def get(self, silence_id: str) -> Silence | None:
        return self._silences.get(silence_id)

    def __iter__(self):
        return iter(list(self._silences.values()))

    def __len__(self) -> int:
        return len(self._silences)

    def active(self, now: float) -> list[Silence]:
        return [s for s in self._silences.values() if s.starts_at <= now < s.ends_at]

    def gc(self, now: float, retention: float = RETENTION) -> int:
        """Forget silences expired more than ``retention`` seconds ago; returns how many."""
        old = [i for i, s in self._silences.items() if s.ends_at + retention < now]
        for i in old:
            del self._silences[i]
            if self.table is not None and self.table.get(i) is not None:
                del self.table[i]
        return len(old)


class Silencer:
    """``mutes(labels, now)``: does an active silence match these labels?"""

    def __init__(self, store: SilenceStore) -> None:
        self.store = store

    def mutes(self, labels: dict[str, str | None], now: float | None = None) -> bool:
        t = time.time() if now is None else now
        return any(s.mutes(labels, t) for s in self.store)

    def silenced_by(self, labels: dict[str, str | None], now: float) -> list[str]:
        """Ids of the active silences that match."""
        return [s.id for s in self.store if s.mutes(labels, now)]


_CREATE_FIELDS = {"matchers", "starts_at", "ends_at", "duration", "created_by", "comment"}


def _time(payload: dict[str, Any], name: str) -> float:
    try:
        return parse_ts(payload[name])
    except ValueError as exc:
        raise SilenceError(f"{name}: {exc}") from None


class SilenceAPI:
    """Create, expire and list silences; the HTTP view or CLI around it only translates.

    Every error is a :class:`SilenceError` whose message says which field is
    wrong and why, and whose ``status`` is the HTTP status to answer.
    """

    def __init__(self, store: SilenceStore) -> None:
        self.store = store

    def create_silence(self, payload: dict[str, Any], now: float) -> dict[str, Any]:
        """Validate ``payload`` and make a silence; returns its record (to publish).

        Fields: ``matchers`` (list of ``name="value"``-style strings, required),
        ``ends_at`` (RFC 3339 or epoch seconds) or ``duration`` (``2h``),
        ``starts_at`` (default now), ``created_by`` and ``comment`` (required).
        """
        if not isinstance(payload, dict):
            raise SilenceError("a silence is a JSON object with matchers, ends_at or duration, created_by, comment")
        unknown = set(payload) - _CREATE_FIELDS
        if unknown:
            raise SilenceError(
                f"unknown field(s): {', '.join(sorted(unknown))} (allowed: {', '.join(sorted(_CREATE_FIELDS))})"
            )
        matchers = payload.get("matchers")
        if not isinstance(matchers, list) or not matchers:
            raise SilenceError('matchers: a non-empty list of matchers is required, e.g. ["service=\\"ent\\""]')
        parsed = []
        for i, m in enumerate(matchers):
            if not isinstance(m, str):
                raise SilenceError(f"matchers.{i}: a matcher is a string like service=\"ent\"")
            try:
                parsed.append(Matcher.parse(m))
            except ValueError as exc:
                raise SilenceError(f"matchers.{i}: {exc}") from None
        if all(m.matches({}) for m in parsed):
            raise SilenceError("matchers: at least one matcher must not match an empty value (it would silence everything)")
        starts = _time(payload, "starts_at") if payload.get("starts_at") is not None else now
        if payload.get("ends_at") is not None and payload.get("duration") is not None:
            raise SilenceError("give ends_at or duration, not both")
        if payload.get("ends_at") is not None:
            ends = _time(payload, "ends_at")
        elif payload.get("duration") is not None:
            try:
                ends = starts + parse_duration(payload["duration"])
            except ValueError as exc:
                raise SilenceError(f"duration: {exc}") from None
        else:
            raise SilenceError("ends_at: required (or duration, e.g. 2h)")
        if ends <= starts:
            raise SilenceError(f"ends_at: {format_ts(ends)} is not after starts_at {format_ts(starts)}")
        if ends <= now:
            raise SilenceError(f"ends_at: {format_ts(ends)} is in the past")
        for name in ("created_by", "comment"):
            v = payload.get(name)
            if not isinstance(v, str) or not v.strip():
                raise SilenceError(f"{name}: required (a non-empty string)")
        s = Silence(
            id=str(uuid.uuid4()),
            matchers=tuple(parsed),
            starts_at=max(starts, now),  # a start in the past means now
            ends_at=ends,
            created_by=payload["created_by"].strip(),
            comment=payload["comment"].strip(),
            updated_at=now,
        )
        return self.store.apply(s).to_record(now)

    def expire_silence(self, silence_id: str, now: float) -> dict[str, Any]:
        """End a silence now; returns the expiry record (to publish)."""
        s = self.store.get(str(silence_id))
        if s is None:
            raise SilenceNotFound(f"no silence with id {silence_id!r}")
        if s.state(now) == "expired":
            raise SilenceError(f"silence {silence_id} already expired at {format_ts(s.ends_at)}")
        starts = min(s.starts_at, now)
        return self.store.apply(replace(s, starts_at=starts, ends_at=now, updated_at=max(now, s.updated_at))).to_record(now)

    def list_silences(self, now: float, states: Iterable[str] = ("pending", "active", "expired")) -> list[dict[str, Any]]:
        """Records with their ``status``, active first, then pending, then expired, newest first."""
        order = {"active": 0, "pending": 1, "expired": 2}
        wanted = set(states)
        items = [s for s in self.store if s.state(now) in wanted]
        items.sort(key=lambda s: (order[s.state(now)], -s.updated_at))
        return [s.to_record(now) for s in items]
