"""Input events: decoding and validation against the CONTRACT.

One decoder per event kind turns raw bytes (a Kafka message value or a JSONL
line) into a typed, validated struct, or raises :class:`InvalidEvent` with a
one-line reason that goes to the dead-letter topic: a wrong type, a missing
field, or a value outside its plausible range (the table below; README.md,
"Value ranges of the input events"). msgspec does the decoding
and the type checks in one pass, many times cheaper than a ``faust.Record``
(figures in benchmarks/README.md).

:func:`decode_requests` does many at once (a Kafka batch, a block of a
file) with the same verdicts, a fifth or so faster (the per-message loop runs in C).

>>> ev = decode_request(b'{"ts": "2021-04-06T08:00:01Z", "service": "ent", "status": 503, "latency_ms": 4200}')
>>> ev.service, ev.status, ev.latency_ms, ev.ts
('ent', 503, 4200.0, 1617696001.0)
>>> decode_request(b'{"ts": 1, "service": "ent", "status": 700, "latency_ms": 1}')
Traceback (most recent call last):
...
detectors.errors.InvalidEvent: Expected `int` <= 599 - at `$.status`
"""

from __future__ import annotations

from operator import attrgetter
from typing import Annotated, Any, cast

import msgspec

from .errors import InvalidEvent
from .timeutil import (
    EVENT_TS_MAX,
    EVENT_TS_MIN,
    _fast_utc,
    fast_utc_many,
    native_module,
    parse_event_ts,
)

__all__ = [
    "MAX_EVENT_BYTES",
    "RequestEvent",
    "RequestBatch",
    "DiskHealthEvent",
    "decode_request",
    "decode_requests",
    "decode_disk",
]

# -- plausible ranges ---------------------------------------------------------
# A value outside them is a producer's bug or an attack, never a measurement:
# one such event would page someone (a SMART count of 1e308), or swamp a
# window's sums, or grow per-key memory (a megabyte-long name). The Structs
# carry them as msgspec constraints, checked in C while decoding; ``ts`` and
# the SMART map are checked here (clearer reasons); the JSON Schemas in
# schemas/ are generated from the same definitions (detectors/eventschema.py).
# README.md, "Value ranges of the input events", lists them.

#: Larger messages are dead-lettered without being parsed.
MAX_EVENT_BYTES = 64 * 1024
#: Names and other identifiers (service, host, disk, region, model):
#: longer is no name but a payload, and every distinct name costs state.
MAX_NAME = 256
#: Free text kept per distinct value (endpoint, user_agent): real route
#: templates and browser user agents stay well under it.
MAX_TEXT = 1024
#: A textual IPv6 address is at most 45 characters; room for a zone id.
MAX_CLIENT_IP = 64
#: An ISO 3166 alpha-2 code (the CONTRACT's ``country``).
MAX_COUNTRY = 2
#: Latencies, in milliseconds: a day is longer than any server or drive
#: timeout; beyond it the value is a wrong unit or garbage.
MAX_LATENCY_MS = 86_400_000.0
#: Byte counts: the integers a float holds exactly (I-JSON, RFC 7493); 8 PiB,
#: more than any response or drive.
MAX_BYTES = 2**53 - 1
#: Autonomous system numbers are 32-bit (RFC 6793).
MAX_ASN = 2**32 - 1
#: SMART raw values are 48-bit counters (the raw field of an attribute is
#: six bytes); ``io_errors`` counts errors between two readings, no more.
MAX_COUNTER = 2**48 - 1
#: SMART attribute ids are one byte, 1 to 255: at most 255 attributes.
MAX_SMART_ATTRIBUTES = 255
SMART_ID_PATTERN = "^(?:[1-9][0-9]?|1[0-9][0-9]|2[0-4][0-9]|25[0-5])$"
_SMART_IDS = frozenset(str(i) for i in range(1, 256))  # the strings SMART_ID_PATTERN matches


Name = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_NAME)]
ShortText = Annotated[str, msgspec.Meta(max_length=MAX_NAME)]
Text = Annotated[str, msgspec.Meta(max_length=MAX_TEXT)]
Time = str | float
Latency = Annotated[float, msgspec.Meta(ge=0, le=MAX_LATENCY_MS)]
Bytes = Annotated[int, msgspec.Meta(ge=0, le=MAX_BYTES)]


def _about(text: str) -> msgspec.Meta:
    """The description of a field (in the JSON Schemas)."""
    return msgspec.Meta(description=text)


class RequestEvent(msgspec.Struct, frozen=True, gc=False):
    """One finished HTTP request (topic ``requests``)."""

    ts: float
    service: Annotated[Name, _about("the application")]
    status: Annotated[int, msgspec.Meta(ge=100, le=599, description="HTTP status")]
    latency_ms: Annotated[Latency, _about("time to serve the request, ms")]
    endpoint: Annotated[Text, _about("route template, e.g. /login")] | None = None
    host: Annotated[ShortText, _about("server that handled it")] | None = None
    region: Annotated[ShortText, _about("deployment region")] | None = None
    client_ip: Annotated[str, msgspec.Meta(max_length=MAX_CLIENT_IP), _about("IPv4 or IPv6 of the client")] | None = None
    country: Annotated[str, msgspec.Meta(max_length=MAX_COUNTRY), _about("ISO 3166 alpha-2 of the client")] | None = None
    asn: Annotated[int, msgspec.Meta(ge=0, le=MAX_ASN, description="autonomous system of the client")] | None = None
    user_agent: Annotated[Text, _about("User-Agent header")] | None = None
    bytes: Annotated[Bytes, _about("response size")] | None = None


class DiskHealthEvent(msgspec.Struct, frozen=True, gc=False):
    """One reading of one drive (topic ``disk-health``), Backblaze-style."""

    ts: float
    host: Annotated[Name, _about("machine the drive is in")]
    disk: Annotated[Name, _about("drive serial number")]
    # Ids and raw values are checked by decode_disk (its reasons name the attribute).
    smart: Annotated[dict[str, float], msgspec.Meta(
        max_length=MAX_SMART_ATTRIBUTES, description="SMART attribute id (1-255) to raw value (a 48-bit counter)")]
    model: Annotated[ShortText, _about("drive model")] | None = None
    # Backblaze's drive-stats rows write -1 for a capacity they do not know:
    # taken as absent, so that such a reading is not lost.
    capacity_bytes: Annotated[int, msgspec.Meta(ge=-1, le=MAX_BYTES,
                                                description="drive capacity (-1: unknown, as absent)")] | None = None
    io_latency_ms: Annotated[Latency, _about("recent mean I/O latency of the drive, ms")] | None = None
    io_errors: Annotated[int, msgspec.Meta(
        ge=0, le=MAX_COUNTER, description="I/O errors since the previous reading")] | None = None
    failure: Annotated[bool, _about("the drive's last reading before it was replaced")] | None = None


# The wire form differs from the struct only in ``ts`` (string or number).
class _RequestWire(RequestEvent, frozen=True, gc=False):
    ts: Time  # type: ignore[assignment]


class _DiskWire(DiskHealthEvent, frozen=True, gc=False):
    ts: Time  # type: ignore[assignment]


_req_decoder = msgspec.json.Decoder(_RequestWire)
_disk_decoder = msgspec.json.Decoder(_DiskWire)
_REQ_FIELDS = RequestEvent.__struct_fields__
assert _REQ_FIELDS == (
    "ts", "service", "status", "latency_ms", "endpoint", "host", "region",
    "client_ip", "country", "asn", "user_agent", "bytes",
), "decode_request lists the fields of RequestEvent"
_DISK_FIELDS = DiskHealthEvent.__struct_fields__


def _check_size(raw: bytes) -> None:
    if len(raw) > MAX_EVENT_BYTES:
        raise InvalidEvent(f"message of {len(raw)} bytes exceeds the {MAX_EVENT_BYTES}-byte limit")


def _decode(raw: bytes | str, decoder: msgspec.json.Decoder):
    if isinstance(raw, str):
        raw = raw.encode()
    _check_size(raw)
    try:
        return decoder.decode(raw)
    except msgspec.ValidationError as exc:
        msg = str(exc)
        if msg.startswith("Number out of range"):  # msgspec's words for a number past a float (1e400)
            msg = "number is out of range (beyond a 64-bit float)" + msg[len("Number out of range"):]
        raise InvalidEvent(msg) from None
    except msgspec.DecodeError as exc:
        raise InvalidEvent(f"not valid JSON: {_not_utf8(raw) or exc}") from None
    except RecursionError:
        raise InvalidEvent("JSON nested too deeply") from None


def _not_utf8(raw: bytes) -> str | None:
    """Where ``raw`` is not UTF-8 (JSON text is), or None."""
    try:
        raw.decode()
    except UnicodeDecodeError as exc:
        return f"not UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start})"
    return None


def _ts(value: Time) -> float:
    try:
        return parse_event_ts(value)
    except ValueError as exc:
        raise InvalidEvent(f"{exc} - at `$.ts`") from None


_req_decode = _req_decoder.decode


def decode_request(raw: bytes | str) -> RequestEvent:
    """Decode and validate one request event; raise InvalidEvent with the reason."""
    if raw.__class__ is bytes and len(raw) <= MAX_EVENT_BYTES:
        try:
            w = _req_decode(raw)
        except (msgspec.ValidationError, msgspec.DecodeError, RecursionError):
            w = _decode(raw, _req_decoder)  # raises the reason
    else:
        w = _decode(raw, _req_decoder)
    t = w.ts
    ts = _fast_utc(t) if isinstance(t, str) else t  # (epoch seconds: a float, from msgspec)
    if ts is None or not EVENT_TS_MIN <= ts < EVENT_TS_MAX:
        ts = _ts(t)  # (raises the reason when out of range)
    return _event(w, ts)


def _event(w, ts: float) -> RequestEvent:
    """The RequestEvent of a decoded message, at time ``ts`` (the fields after it in the order of _REQ_FIELDS)."""
    return RequestEvent(ts, w.service, w.status, w.latency_ms, w.endpoint, w.host, w.region,
                        w.client_ip, w.country, w.asn, w.user_agent, w.bytes)


class RequestBatch:
    """Request events of one batch, in order, as columns: what the batch path reads, without RequestEvent objects.

    ``ts`` is the event times (floats, a list), ``rows`` the decoded messages
    (or RequestEvents), read for every field but ``ts`` (a decoded message
    keeps its ``ts`` as sent: never read it). ``WindowAggregator.add_batch``
    reads the columns straight from them: no RequestEvent is built per event
    (what building them would cost is most of the decoding). It still behaves as the list of its
    RequestEvents (made on demand, :meth:`events`): length, iteration,
    indexing, equality; a slice is a RequestBatch.
    """

    __slots__ = ("ts", "rows", "_events", "_array")

    def __init__(self, ts: list[float], rows: list, events: list[RequestEvent] | None = None) -> None:
        self.ts = ts
        self.rows = rows
        self._events = events
        self._array: Any = None  # numpy float64 array of ts, made on demand

    @classmethod
    def of(cls, evs: list[RequestEvent] | RequestBatch) -> RequestBatch:
        """``evs`` as a batch (itself if it is one)."""
        if isinstance(evs, RequestBatch):
            return evs
        evs = list(evs)
        return cls([e.ts for e in evs], evs, evs)

    @property
    def ts_array(self):
        """The event times as a numpy float64 array."""
        if self._array is None:
            import numpy as np

            self._array = np.array(self.ts, dtype=np.float64)
        return self._array

    def column(self, name: str) -> list:
        """One field of every event, in order."""
        if name == "ts":
            return list(self.ts)
        return list(map(attrgetter(name), self.rows))

    def events(self) -> list[RequestEvent]:
        """The events as RequestEvents (made once, on demand)."""
        if self._events is None:
            self._events = list(map(_event, self.rows, self.ts))
        return self._events

    def __len__(self) -> int:
        return len(self.ts)

    def __iter__(self):
        return iter(self.events())

    def __getitem__(self, i):
        if isinstance(i, slice):
            evs = self._events
            part = RequestBatch(self.ts[i], self.rows[i], None if evs is None else evs[i])
            if self._array is not None:
                part._array = self._array[i]
            return part
        if self._events is not None:
            return self._events[i]
        return _event(self.rows[i], self.ts[i])

    def __eq__(self, other: object) -> bool:
        if isinstance(other, RequestBatch | list | tuple):
            return self.events() == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"RequestBatch({self.events()!r})"


def _numpy():
    # numpy on first use, as timeutil does: most command lines decode nothing in bulk.
    global _np
    if _np is None:
        import numpy

        _np = numpy
    return _np


_np: Any = None


def decode_requests(values: list[bytes]) -> tuple[RequestBatch, list[tuple[int, str]]]:
    """Decode many request events at once: (the good ones in order, [(index, reason)] for the bad ones).

    The good ones come as a :class:`RequestBatch` (columns; it behaves as the
    list of their RequestEvents).

    Each value is judged exactly as :func:`decode_request` judges it (same
    limits, same validation, same reasons), only faster: the messages are
    decoded one msgspec call each from C (``map``), not through the Python
    function, and the ``ts`` strings are converted together (in numpy). A
    batch is not decoded as one joined JSON array: a malformed message could
    then spill into its neighbours (``{"a": [1`` then ``2]}``) and the array
    still have the right length.
    """
    wires: list = []
    bad: list[tuple[int, str]] = []
    n = len(values)
    if n and set(map(type, values)) == {bytes} and max(map(len, values)) <= MAX_EVENT_BYTES:
        i = 0
        while i < n:
            try:
                # list.extend keeps what map produced before an exception
                wires.extend(map(_req_decode, values[i:] if i else values))
                break
            except (msgspec.ValidationError, msgspec.DecodeError, RecursionError):
                j = len(wires) + len(bad)  # the value that failed
                try:
                    wires.append(_decode(values[j], _req_decoder))  # (raises: it failed above)
                except InvalidEvent as exc:
                    bad.append((j, str(exc)))
                i = j + 1
        keep = None
        if bad:
            gone = {j for j, _ in bad}
            keep = [j for j in range(n) if j not in gone]
    else:
        keep = []
        for j, raw in enumerate(values):
            try:
                wires.append(_decode(raw, _req_decoder))
            except InvalidEvent as exc:
                bad.append((j, str(exc)))
            else:
                keep.append(j)
    if not wires:
        return RequestBatch([], []), bad
    # The times in range, as floats; the indexes of the others (None: numbers
    # out of range, other forms, the invalid), for the scalar parser to decide
    # (and to raise the reason). In C when built; else in numpy, whose one
    # vectorised range test is cheaper than ``None in times`` alone (its array
    # is the batch's ts_array, when every time stands).
    native = native_module()
    res = native.row_times(wires, EVENT_TS_MIN, EVENT_TS_MAX) if native is not None else NotImplemented
    arr = None
    if res is not NotImplemented:
        times, redo = res
    else:
        tss: list = [w.ts for w in wires]
        strs = [t for t in tss if t.__class__ is str]
        if len(strs) == len(tss):
            times = fast_utc_many(tss)
        else:
            conv = iter(fast_utc_many(strs)).__next__
            times = [conv() if t.__class__ is str else None for t in tss]
        np = _numpy()
        arr = np.array(times, dtype=np.float64)  # (None -> NaN)
        if EVENT_TS_MIN <= arr.min() and arr.max() < EVENT_TS_MAX:  # (False with a NaN)
            redo = []
        else:
            redo = np.flatnonzero(~((arr >= EVENT_TS_MIN) & (arr < EVENT_TS_MAX))).tolist()
    failed: list[tuple[int, str]] = []
    for k in redo:
        t = wires[k].ts
        if t.__class__ is float and EVENT_TS_MIN <= t < EVENT_TS_MAX:  # epoch seconds (msgspec makes them floats)
            times[k] = t
            continue
        try:
            times[k] = _ts(t)
        except InvalidEvent as exc:
            times[k] = None
            failed.append((keep[k] if keep is not None else k, str(exc)))
    if redo and not failed and arr is not None:
        arr[redo] = [times[k] for k in redo]
    if failed:
        gone = {k for k, t in enumerate(times) if t is None}
        wires = [w for k, w in enumerate(wires) if k not in gone]
        times = [t for t in times if t is not None]
        bad = sorted(bad + failed)
        arr = None
    batch = RequestBatch(cast("list[float]", times), wires)  # (no None left)
    batch._array = arr
    return batch, bad


def decode_disk(raw: bytes | str) -> DiskHealthEvent:
    """Decode and validate one disk-health event; raise InvalidEvent with the reason."""
    w = _decode(raw, _disk_decoder)
    for k, v in w.smart.items():
        if k not in _SMART_IDS:
            raise InvalidEvent(f"SMART attribute id {k!r} is not a number from 1 to 255 - at `$.smart`")
        if not 0.0 <= v <= MAX_COUNTER:  # (False for NaN)
            raise InvalidEvent(f"SMART {k} raw value {v!r} is out of range: a 48-bit counter, 0 to {MAX_COUNTER}"
                               f" - at `$.smart.{k}`")
    ev = DiskHealthEvent(_ts(w.ts), *(getattr(w, f) for f in _DISK_FIELDS[1:]))
    if ev.capacity_bytes == -1:
        ev = msgspec.structs.replace(ev, capacity_bytes=None)
    return ev
