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

import re
import time
import uuid
from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass, replace
from typing import Any

import orjson

from detectors.configfile import parse_duration
from detectors.timeutil import format_ts, parse_ts

from .errors import AlertsError
from .matchers import Matcher
from .model import CAUSES, schema_record

__all__ = [
    "ALERTNAME",
    "SCHEMA",
    "Silence",
    "SilenceAPI",
    "SilenceError",
    "SilenceLimits",
    "SilenceNotFound",
    "SilenceStore",
    "Silencer",
    "alertmanager_filter",
    "decode",
    "encode",
    "from_alertmanager",
    "matches_every_alert",
    "to_alertmanager",
]

SCHEMA = "tocsin.silence.v1"
#: How long an expired silence is kept (listed, and its id known), as in Alertmanager.
RETENTION = 120 * 3600.0
#: The ``alertname`` label every tocsin alert has in Alertmanager's format (see alerts.notify.amformat).
ALERTNAME = "tocsin"
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_ALERTNAME: dict[str, str | None] = {"alertname": ALERTNAME}


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
        if not self.starts_at <= now < self.ends_at:
            return False
        # ``alertname`` (from silences made in Alertmanager's format) is tocsin's, on every alert.
        return all(m.matches(_ALERTNAME if m.name == "alertname" and "alertname" not in labels else labels)
                   for m in self.matchers)

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
    rec = schema_record(data, SCHEMA, "a silence", SilenceError)
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

    def count_live(self, now: float) -> int:
        """How many silences are pending or active at ``now``."""
        return sum(1 for s in self._silences.values() if now < s.ends_at)

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


_CREATE_FIELDS = {"matchers", "starts_at", "ends_at", "duration", "created_by", "comment", "match_all"}

#: Values an alert field can take; free labels (service, host, disk...) are probed with made-up names.
_ENUMERATED: dict[str, tuple[str, ...]] = {
    "cause": CAUSES,
    "severity": ("info", "warning", "critical"),
    "status": ("firing", "resolved"),
    "alertname": (ALERTNAME,),
}
_PROBES = ("tocsin-probe-name", "Z", "a.b-c_d/9 x", "0")


def _selective(m: Matcher) -> bool:
    """Does ``m`` leave out some alerts? (Rejects a value of an enumerated field, or a made-up name.)"""
    return not all(m.matches({m.name: v}) for v in _ENUMERATED.get(m.name, _PROBES))


def matches_every_alert(matchers: Iterable[Matcher]) -> bool:
    """True when no matcher narrows the silence down: it would mute (nearly) every alert.

    >>> matches_every_alert([Matcher.parse('severity=~".+"')]), matches_every_alert([Matcher.parse('service=~".+"')])
    (True, True)
    >>> matches_every_alert([Matcher.parse('severity=~".+"'), Matcher.parse('service="ent"')])
    False
    """
    return not any(_selective(m) for m in matchers)


@dataclass(frozen=True, slots=True)
class SilenceLimits:
    """Bounds a silence request is checked against before anything is stored."""

    max_duration: float = 30 * 86400.0  #: longest silence (ends_at - starts_at)
    max_start_ahead: float = 30 * 86400.0  #: latest start, from now
    max_matchers: int = 32
    max_text: int = 1024  #: characters of a matcher, created_by or comment
    max_silences: int = 10_000  #: pending and active silences kept at once


def _time(payload: dict[str, Any], name: str) -> float:
    try:
        return parse_ts(payload[name])
    except ValueError as exc:
        raise SilenceError(f"{name}: {exc}") from None


def _text(payload: dict[str, Any], name: str, limit: int) -> str:
    v = payload.get(name)
    if not isinstance(v, str) or not v.strip():
        raise SilenceError(f"{name}: required (a non-empty string)")
    if len(v) > limit:
        raise SilenceError(f"{name}: {len(v)} characters, at most {limit}")
    return v.strip()


def _storable(m: Matcher, where: str) -> Matcher:
    """``m`` if its text form reads back the same (silence records keep matchers as text)."""
    try:
        if Matcher.parse(str(m)) == m:
            return m
    except ValueError:
        pass
    raise SilenceError(f"{where}: the value {m.value!r} cannot be kept in a silence (a double quote in it)")


class SilenceAPI:
    """Create, expire and list silences; the HTTP view or CLI around it only translates.

    Every error is a :class:`SilenceError` whose message says which field is
    wrong and why, and whose ``status`` is the HTTP status to answer.
    :meth:`new_silence` and :meth:`expiry` validate and store nothing (a
    server publishes the result first, then applies it to the store);
    :meth:`create_silence` and :meth:`expire_silence` also apply it.
    """

    def __init__(self, store: SilenceStore, limits: SilenceLimits | None = None) -> None:
        self.store = store
        self.limits = limits or SilenceLimits()

    def new_silence(self, payload: dict[str, Any], now: float, silence_id: str | None = None) -> Silence:
        """Validate ``payload`` against the limits; the silence it asks for (not stored).

        Fields: ``matchers`` (list of ``name="value"``-style strings, required),
        ``ends_at`` (RFC 3339 or epoch seconds) or ``duration`` (``2h``,
        ``1h30m``), ``starts_at`` (default now), ``created_by`` and
        ``comment`` (required), ``match_all`` (true to allow a silence that
        mutes every alert).
        """
        lim = self.limits
        if not isinstance(payload, dict):
            raise SilenceError("a silence is a JSON object with matchers, ends_at or duration, created_by, comment")
        unknown = set(payload) - _CREATE_FIELDS
        if unknown:
            raise SilenceError(
                f"unknown field(s): {', '.join(sorted(map(str, unknown)))[:200]} "
                f"(allowed: {', '.join(sorted(_CREATE_FIELDS))})"
            )
        matchers = payload.get("matchers")
        if not isinstance(matchers, list) or not matchers:
            raise SilenceError('matchers: a non-empty list of matchers is required, e.g. ["service=\\"ent\\""]')
        if len(matchers) > lim.max_matchers:
            raise SilenceError(f"matchers: {len(matchers)} matchers, at most {lim.max_matchers}")
        parsed = []
        for i, m in enumerate(matchers):
            if isinstance(m, Matcher):
                parsed.append(_storable(m, f"matchers.{i}"))
                continue
            if not isinstance(m, str):
                raise SilenceError(f"matchers.{i}: a matcher is a string like service=\"ent\"")
            if len(m) > lim.max_text:
                raise SilenceError(f"matchers.{i}: {len(m)} characters, at most {lim.max_text}")
            try:
                parsed.append(_storable(Matcher.parse(m), f"matchers.{i}"))
            except ValueError as exc:
                raise SilenceError(f"matchers.{i}: {exc}") from None
        match_all = payload.get("match_all", False)
        if not isinstance(match_all, bool):
            raise SilenceError("match_all: true or false")
        if not match_all and matches_every_alert(parsed):
            raise SilenceError(
                "matchers: no matcher narrows this silence down, it would silence everything "
                "(name a service, host, disk or cause; if that is what you want, set match_all: true "
                "in tocsin's own API: POST /silences/ or tocsin silence add --match-all)"
            )
        starts = _time(payload, "starts_at") if payload.get("starts_at") is not None else now
        if payload.get("ends_at") is not None and payload.get("duration") is not None:
            raise SilenceError("give ends_at or duration, not both")
        if payload.get("ends_at") is not None:
            ends = _time(payload, "ends_at")
        elif payload.get("duration") is not None:
            try:
                length = parse_duration(payload["duration"])
            except ValueError as exc:
                raise SilenceError(f"duration: {exc}") from None
            if length > lim.max_duration:
                raise SilenceError(f"duration: {payload['duration']} is longer than the limit, "
                                   f"{_human(lim.max_duration)}")
            ends = max(starts, now) + length
        else:
            raise SilenceError("ends_at: required (or duration, e.g. 2h)")
        if ends <= starts:
            raise SilenceError(f"ends_at: {format_ts(ends)} is not after starts_at {format_ts(starts)}")
        if ends <= now:
            raise SilenceError(f"ends_at: {format_ts(ends)} is in the past")
        starts = max(starts, now)  # a start in the past means now
        if starts > now + lim.max_start_ahead:
            raise SilenceError(f"starts_at: {format_ts(starts)} is more than {_human(lim.max_start_ahead)} ahead")
        if ends - starts > lim.max_duration:
            raise SilenceError(f"ends_at: {format_ts(ends)} makes the silence longer than the limit, "
                               f"{_human(lim.max_duration)}")
        created_by = _text(payload, "created_by", lim.max_text)
        comment = _text(payload, "comment", lim.max_text)
        old = self.store.get(silence_id) if silence_id is not None else None
        if old is None and self.store.count_live(now) >= lim.max_silences:
            raise SilenceError(f"{lim.max_silences} silences are pending or active already: expire some first")
        s = Silence(
            id=silence_id or str(uuid.uuid4()),
            matchers=tuple(parsed),
            starts_at=starts,
            ends_at=ends,
            created_by=created_by,
            comment=comment,
            updated_at=max(now, old.updated_at) if old is not None else now,
        )
        s.to_record(now)  # every field formats: what is stored can always be listed
        return s

    def create_silence(self, payload: dict[str, Any], now: float) -> dict[str, Any]:
        """Validate ``payload``, keep the silence; returns its record (to publish)."""
        return self.store.apply(self.new_silence(payload, now)).to_record(now)

    def expiry(self, silence_id: str, now: float) -> Silence:
        """The silence ``silence_id`` ended now (not stored)."""
        s = self.store.get(str(silence_id))
        if s is None:
            raise SilenceNotFound(f"no silence with id {str(silence_id)[:100]!r}")
        if s.state(now) == "expired":
            raise SilenceError(f"silence {silence_id} already expired at {format_ts(s.ends_at)}")
        return replace(s, starts_at=min(s.starts_at, now), ends_at=now, updated_at=max(now, s.updated_at))

    def expire_silence(self, silence_id: str, now: float) -> dict[str, Any]:
        """End a silence now; returns the expiry record (to publish)."""
        return self.store.apply(self.expiry(silence_id, now)).to_record(now)

    def update(self, silence_id: str, payload: dict[str, Any], now: float) -> list[Silence]:
        """Alertmanager's update of a silence: the silences to publish (not stored).

        The same id is kept when the matchers are the same and the silence has
        not expired; otherwise the old one is expired and a new one made, as
        Alertmanager does.
        """
        old = self.store.get(str(silence_id))
        if old is None:
            raise SilenceNotFound(f"no silence with id {str(silence_id)[:100]!r}")
        fresh = self.new_silence(payload, now)
        if old.state(now) != "expired" and fresh.matchers == old.matchers:
            return [replace(fresh, id=old.id, updated_at=max(now, old.updated_at))]
        if old.state(now) == "expired":
            return [fresh]
        return [self.expiry(old.id, now), fresh]

    def list_silences(self, now: float, states: Iterable[str] = ("pending", "active", "expired")) -> list[dict[str, Any]]:
        """Records with their ``status``, active first, then pending, then expired, newest first."""
        return [s.to_record(now) for s in self.silences(now, states)]

    def silences(self, now: float, states: Iterable[str] = ("pending", "active", "expired")) -> list[Silence]:
        order = {"active": 0, "pending": 1, "expired": 2}
        wanted = set(states)
        items = [s for s in self.store if s.state(now) in wanted]
        items.sort(key=lambda s: (order[s.state(now)], -s.updated_at))
        return items


def _human(seconds: float) -> str:
    """``30d``, ``12h``, ``90m`` or ``45s``: the largest unit that divides ``seconds``."""
    for unit, n in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= n and seconds % n == 0:
            return f"{int(seconds // n)}{unit}"
    return f"{seconds:g}s"


# -- Alertmanager's API v2 format ---------------------------------------------------
# What ``amtool`` and Alertmanager's UI speak: matchers as objects
# ({"name", "value", "isRegex", "isEqual"}), camelCase times, a status object.

_AM_FIELDS = {"id", "matchers", "startsAt", "endsAt", "createdBy", "comment"}
_AM_OPS = {(False, True): "=", (False, False): "!=", (True, True): "=~", (True, False): "!~"}


def from_alertmanager(body: Any) -> tuple[str | None, dict[str, Any]]:
    """A postable silence of Alertmanager's API (v2) as ``(id or None, payload for new_silence)``."""
    if not isinstance(body, dict):
        raise SilenceError("a silence is a JSON object with matchers, startsAt, endsAt, createdBy, comment")
    unknown = set(body) - _AM_FIELDS
    if unknown:
        raise SilenceError(f"unknown field(s): {', '.join(sorted(map(str, unknown)))[:200]} "
                           f"(allowed: {', '.join(sorted(_AM_FIELDS))})")
    raw = body.get("matchers")
    if not isinstance(raw, list) or not raw:
        raise SilenceError("matchers: a non-empty list of {name, value, isRegex, isEqual} is required")
    matchers: list[Matcher] = []
    for i, m in enumerate(raw):
        if not isinstance(m, dict) or not isinstance(m.get("name"), str) or not isinstance(m.get("value"), str):
            raise SilenceError(f"matchers.{i}: an object with name and value (strings), isRegex and isEqual")
        is_regex, is_equal = m.get("isRegex", False), m.get("isEqual", True)
        if not isinstance(is_regex, bool) or not isinstance(is_equal, bool):
            raise SilenceError(f"matchers.{i}: isRegex and isEqual are true or false")
        name, value = m["name"], m["value"]
        if not _LABEL_NAME.match(name):
            raise SilenceError(f"matchers.{i}: {name[:100]!r} is not a label name")
        if is_regex:
            try:
                re.compile(value)
            except re.error as exc:
                raise SilenceError(f"matchers.{i}: bad regular expression: {exc}") from None
        matchers.append(Matcher(name, _AM_OPS[is_regex, is_equal], value))
    payload: dict[str, Any] = {"matchers": matchers}
    for am, ours in (("startsAt", "starts_at"), ("endsAt", "ends_at"), ("createdBy", "created_by"),
                     ("comment", "comment")):
        if body.get(am) is not None:
            payload[ours] = body[am]
    if payload.get("ends_at") is None:
        raise SilenceError("endsAt: required")
    sid = body.get("id")
    if sid is not None and (not isinstance(sid, str) or len(sid) > 200):
        raise SilenceError("id: a silence id (string)")
    return (sid or None), payload


def _am_matcher(m: Matcher) -> dict[str, Any]:
    return {"name": m.name, "value": m.value, "isRegex": m.op in ("=~", "!~"), "isEqual": m.op in ("=", "=~")}


def to_alertmanager(s: Silence, now: float) -> dict[str, Any]:
    """A gettable silence of Alertmanager's API (v2)."""
    return {
        "id": s.id,
        "status": {"state": s.state(now)},
        "updatedAt": format_ts(s.updated_at),
        "matchers": [_am_matcher(m) for m in s.matchers],
        "startsAt": format_ts(s.starts_at),
        "endsAt": format_ts(s.ends_at),
        "createdBy": s.created_by,
        "comment": s.comment,
    }


def alertmanager_filter(silences: Iterable[Silence], filters: Iterable[str]) -> list[Silence]:
    """The silences whose matchers satisfy every filter (``GET /api/v2/silences?filter=...``).

    As in Alertmanager: a silence's matchers are read as a label set
    (name to value) and each filter matcher must match it.
    """
    try:
        fs = [Matcher.parse(f) for f in filters]
    except ValueError as exc:
        raise SilenceError(f"filter: {exc}") from None
    out = []
    for s in silences:
        labels: dict[str, str | None] = {m.name: m.value for m in s.matchers}
        if all(f.matches(labels) for f in fs):
            out.append(s)
    return out
