import re
from datetime import UTC, datetime

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.errors import InvalidEvent
from detectors.events import (
    MAX_EVENT_BYTES,
    RequestBatch,
    RequestEvent,
    decode_disk,
    decode_request,
    decode_requests,
)

GOOD = {"ts": "2021-04-06T08:00:01.250Z", "service": "ent-grand-est", "status": 503, "latency_ms": 4200}


def test_both_time_forms_decode_to_the_same_instant():
    a = decode_request(orjson.dumps(GOOD))
    b = decode_request(orjson.dumps({**GOOD, "ts": 1617696001.25}))
    c = decode_request(orjson.dumps({**GOOD, "ts": "2021-04-06T10:00:01.250+02:00"}))
    assert a.ts == b.ts == c.ts == 1617696001.25


def test_unknown_fields_are_ignored_and_optional_fields_kept():
    ev = decode_request(orjson.dumps({**GOOD, "host": "web-3", "asn": 3215, "whatever": [1, 2]}))
    assert ev.host == "web-3" and ev.asn == 3215 and ev.endpoint is None


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", "not valid JSON"),
        (orjson.dumps({k: v for k, v in GOOD.items() if k != "status"}), "status"),
        (orjson.dumps({**GOOD, "status": "503"}), "status"),
        (orjson.dumps({**GOOD, "status": 99}), ">= 100"),
        (orjson.dumps({**GOOD, "latency_ms": -1}), "latency_ms"),
        (orjson.dumps({**GOOD, "ts": "yesterday"}), "ts"),
        (orjson.dumps({**GOOD, "ts": "2021-04-06T08:00:00"}), "time zone"),
        (orjson.dumps({**GOOD, "service": ""}), "service"),
        (orjson.dumps({**GOOD, "pad": "x" * MAX_EVENT_BYTES}), "exceeds"),
        (b"[" * 5000 + b"]" * 5000, ""),
        (b'"just a string"', ""),
    ],
)
def test_malformed_requests_raise_with_a_reason(raw, reason):
    with pytest.raises(InvalidEvent) as exc:
        decode_request(raw)
    assert reason in str(exc.value)
    assert str(exc.value)


def test_disk_event_validation():
    ok = {"ts": 1617696001, "host": "h", "disk": "d", "smart": {"5": 3, "197": 0}, "io_errors": 2}
    assert decode_disk(orjson.dumps(ok)).smart == {"5": 3.0, "197": 0.0}
    for bad, why in [({**ok, "smart": {"five": 1}}, "not a number"), ({**ok, "smart": {"5": -1}}, "out of range"),
                     ({**ok, "io_errors": -3}, "io_errors"), ({**ok, "smart": "ok"}, "smart")]:
        with pytest.raises(InvalidEvent, match=why):
            decode_disk(orjson.dumps(bad))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_decoders_reject_garbage_only_with_invalid_event(data):
    for decode in (decode_request, decode_disk):
        try:
            decode(data)
        except InvalidEvent:
            pass


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["ts", "service", "status", "latency_ms", "host", "asn", "x"]), json_values))
def test_decoders_never_crash_on_json_objects(obj):
    for decode in (decode_request, decode_disk):
        try:
            decode(orjson.dumps(obj))
        except InvalidEvent:
            pass


@pytest.mark.parametrize("ts", [b"1e400", b"-5", b"99999999999999999999999", b"true", b"null"])
def test_out_of_range_times(ts):
    with pytest.raises(InvalidEvent):
        decode_request(b'{"ts": ' + ts + b', "service": "s", "status": 200, "latency_ms": 1}')


# -- decode_requests: many at once, judged exactly as decode_request judges each


def one_by_one(values):
    evs, bad = [], []
    for i, v in enumerate(values):
        try:
            evs.append(decode_request(v))
        except InvalidEvent as exc:
            bad.append((i, str(exc)))
    return evs, bad


BAD_VALUES = [
    b"{not json",
    b"",
    b"   ",
    orjson.dumps({**GOOD, "status": 42}),
    orjson.dumps({**GOOD, "ts": "2021-02-30T00:00:00.000Z"}),  # no such day
    orjson.dumps({**GOOD, "ts": "2021-04-06T24:00:00.000Z"}),
    orjson.dumps({**GOOD, "ts": "2021-04-06T08:00:60.000Z"}),
    orjson.dumps({**GOOD, "ts": "2021-04-06T08:00:01.250"}),  # no zone
    orjson.dumps({**GOOD, "ts": "2021-04-06T08:00:01.25\u0663Z"}),  # a non-ASCII digit
    orjson.dumps({**GOOD, "ts": "2021-04-06T08:00:01.250Z\u0000"}),
    orjson.dumps({**GOOD, "ts": -5}),
    orjson.dumps({**GOOD, "ts": "1970-01-01T00:00:00.000Z"}),  # before 2000
    orjson.dumps({**GOOD, "ts": "1999-12-31T23:59:59.999Z"}),
    orjson.dumps({**GOOD, "ts": "2100-01-01T00:00:00.000Z"}),  # 2100 and after
    orjson.dumps({**GOOD, "ts": "0001-01-01T00:00:00Z"}),
    orjson.dumps({**GOOD, "ts": "2999-01-01T00:00:00.000Z"}),
    orjson.dumps({**GOOD, "ts": 4102444800}),
    orjson.dumps({**GOOD, "latency_ms": 1e308}),
    orjson.dumps({**GOOD, "ts": "yesterday"}),
    orjson.dumps({**GOOD, "pad": "x" * MAX_EVENT_BYTES}),
    b"[" * 5000 + b"]" * 5000,
    b'{"ts": 1, "service": "a", "status": 200, "latency_ms": [1',  # would spill into a joined neighbour
    b'2]}',
]
GOOD_VALUES = [
    orjson.dumps(GOOD),
    orjson.dumps({**GOOD, "ts": 1617696001.25, "host": "web-1"}),
    orjson.dumps({**GOOD, "ts": "2021-04-06T10:00:01.250+02:00"}),
    orjson.dumps({**GOOD, "ts": "2021-04-06T08:00:01Z"}),
    orjson.dumps({**GOOD, "ts": "2024-02-29T23:59:59.999z"}),
    orjson.dumps({**GOOD, "ts": "2000-01-01T00:00:00.000Z"}),
    orjson.dumps({**GOOD, "ts": "2099-12-31T23:59:59.999Z"}),
    orjson.dumps({**GOOD, "ts": 946684800}),
    orjson.dumps({**GOOD, "ts": "2099-12-31T23:30:00-01:00"}),  # year 2099 as written (2100 in UTC)
    orjson.dumps({**GOOD, "ts": 1617696001, "asn": 3215, "client_ip": "10.0.0.1"}),
]


def test_decode_requests_keeps_the_order_and_reports_the_bad_by_index():
    values = [GOOD_VALUES[0], BAD_VALUES[0], GOOD_VALUES[1], BAD_VALUES[3], BAD_VALUES[4], GOOD_VALUES[2]]
    evs, bad = decode_requests(values)
    assert [e.ts for e in evs] == [1617696001.25] * 3 and evs[1].host == "web-1"
    assert [i for i, _ in bad] == [1, 3, 4]
    assert (evs, bad) == one_by_one(values)


def test_decode_requests_is_decode_request_for_each():
    values = GOOD_VALUES + BAD_VALUES + GOOD_VALUES[::-1] + [v.decode() for v in GOOD_VALUES[:2]] + ["{bad"]
    assert decode_requests(values) == one_by_one(values)
    assert decode_requests([]) == ([], [])
    assert decode_requests(BAD_VALUES) == one_by_one(BAD_VALUES)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(GOOD_VALUES + BAD_VALUES) | st.binary(max_size=60), max_size=40))
def test_decode_requests_matches_on_any_mix(values):
    assert decode_requests(values) == one_by_one(values)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.datetimes(timezones=st.just(UTC)), min_size=1, max_size=30)
       | st.lists(st.datetimes(datetime(1999, 12, 31), datetime(2100, 1, 2), timezones=st.just(UTC)), min_size=1, max_size=30))
def test_decode_requests_times_are_the_same_floats(times):
    values = [orjson.dumps({**GOOD, "ts": t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"})
              for t in times]
    assert decode_requests(values) == one_by_one(values)


def test_decode_requests_gives_a_request_batch_that_is_the_list_of_its_events():
    values = GOOD_VALUES + BAD_VALUES + GOOD_VALUES[::-1]
    batch, bad = decode_requests(values)
    evs, bad1 = one_by_one(values)
    assert isinstance(batch, RequestBatch) and bad == bad1
    assert len(batch) == len(evs) and batch == evs and list(batch) == evs
    assert all(type(e) is RequestEvent for e in batch.events())
    assert batch.ts == [e.ts for e in evs] and all(type(t) is float for t in batch.ts)
    assert batch.ts_array.dtype == "float64" and batch.ts_array.tolist() == batch.ts
    for name in ("service", "status", "latency_ms", "host", "client_ip", "asn", "ts"):
        assert batch.column(name) == [getattr(e, name) for e in evs]
    part = batch[3:9]
    assert isinstance(part, RequestBatch) and part == evs[3:9] and part.ts_array.tolist() == part.ts
    assert batch[4] == evs[4] and batch[-1] == evs[-1]
    assert RequestBatch.of(evs) == batch and RequestBatch.of(batch) is batch
    empty, _ = decode_requests(BAD_VALUES[:3])
    assert len(empty) == 0 and not empty and empty == []


# -- plausible ranges: the table in detectors/events.py and README.md ------------

DISK = {"ts": "2021-04-06T08:00:00Z", "host": "web-3", "disk": "ZA1", "smart": {"5": 0, "197": 0}}
TOO_FAR = 2**48  # one past the largest 48-bit counter


@pytest.mark.parametrize(("field", "value", "reason"), [
    ("ts", "0001-01-01T00:00:00Z", "out of range: years 2000 to 2099"),
    ("ts", "1999-12-31T23:59:59Z", "out of range: years 2000 to 2099"),
    ("ts", "2100-01-01T00:00:00.000Z", "out of range: years 2000 to 2099"),
    ("ts", "2999-01-01T00:00:00+02:00", "out of range: years 2000 to 2099"),
    ("ts", -1, "out of range: epoch seconds from 946684800"),
    ("ts", 946684799.999, "out of range: epoch seconds"),
    ("ts", 4102444800, "out of range: epoch seconds"),
    ("ts", 1617696001000, "out of range: epoch seconds"),  # milliseconds sent as seconds
    ("ts", "2021-02-29T00:00:00Z", "not an RFC 3339 time"),
    ("ts", "2021-04-06T08:00:00+24:00", "not an RFC 3339 time"),
    ("ts", "2021-04-06 08:00:00Z", "not an RFC 3339 time"),
    ("ts", " 2021-04-06T08:00:00Z", "not an RFC 3339 time"),
    ("ts", "2021-04-06T08:00:00Z\n", "not an RFC 3339 time"),
    ("ts", "2021-04-06T08:00", "not an RFC 3339 time"),
    ("latency_ms", 1e308, "<= 86400000"),
    ("latency_ms", 86_400_000.5, "<= 86400000"),
    ("latency_ms", -0.5, ">= 0"),
    ("status", 600, "<= 599"),
    ("bytes", -1, ">= 0"),
    ("bytes", 2**53, "<= 9007199254740991"),
    ("asn", 2**32, "<= 4294967295"),
    ("asn", -1, ">= 0"),
    ("service", "s" * 257, "length <= 256"),
    ("host", "h" * 257, "length <= 256"),
    ("region", "r" * 257, "length <= 256"),
    ("endpoint", "/" * 1025, "length <= 1024"),
    ("user_agent", "M" * 1025, "length <= 1024"),
    ("client_ip", "1" * 65, "length <= 64"),
    ("country", "FRA", "length <= 2"),
])
def test_out_of_range_request_fields_are_refused_with_the_reason(field, value, reason):
    raw = orjson.dumps({**GOOD, field: value})
    with pytest.raises(InvalidEvent, match=re.escape(reason)) as exc:
        decode_request(raw)
    assert f"$.{field}" in str(exc.value) and "\n" not in str(exc.value)
    assert decode_requests([raw, orjson.dumps(GOOD)]) == ([decode_request(orjson.dumps(GOOD))], [(0, str(exc.value))])


@pytest.mark.parametrize(("field", "value"), [
    ("ts", "2000-01-01T00:00:00Z"), ("ts", "2099-12-31T23:59:59.999999Z"), ("ts", 946684800),
    ("ts", 4102444799.999), ("ts", "2000-01-01T00:30:00+01:00"), ("ts", "2024-02-29t12:00:00.5z"),
    ("latency_ms", 0), ("latency_ms", 86_400_000), ("status", 100), ("status", 599), ("bytes", 2**53 - 1),
    ("asn", 0), ("asn", 2**32 - 1), ("service", "s" * 256), ("endpoint", "/" * 1024), ("user_agent", ""),
    ("client_ip", "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255"), ("country", "FR"), ("host", None),
])
def test_values_at_the_bounds_are_accepted(field, value):
    raw = orjson.dumps({**GOOD, field: value})
    ev = decode_request(raw)
    assert decode_requests([raw]) == ([ev], [])
    if field != "ts":
        assert getattr(ev, field) == value


def test_both_time_forms_have_the_same_range():
    """The issue's case: "0001-01-01T00:00:00Z" was accepted where -1 was refused."""
    for ts in ("0001-01-01T00:00:00Z", -1, "1970-01-01T00:00:00Z", 0, "2999-01-01T00:00:00Z", 32503680000):
        with pytest.raises(InvalidEvent, match="out of range"):
            decode_request(orjson.dumps({**GOOD, "ts": ts}))
    lo, hi = decode_request(orjson.dumps({**GOOD, "ts": "2000-01-01T00:00:00Z"})), decode_request(orjson.dumps({**GOOD, "ts": 946684800}))
    assert lo.ts == hi.ts == 946684800.0


@pytest.mark.parametrize(("change", "reason"), [
    ({"smart": {"5": 1e308}}, "SMART 5 raw value 1e+308 is out of range: a 48-bit counter"),
    ({"smart": {"5": TOO_FAR}}, "SMART 5 raw value"),
    ({"smart": {"5": -1}}, "out of range"),
    ({"smart": {"0": 1}}, "SMART attribute id '0' is not a number from 1 to 255"),
    ({"smart": {"256": 1}}, "'256' is not a number from 1 to 255"),
    ({"smart": {"05": 1}}, "'05'"),
    ({"smart": {"\u0665": 1}}, "is not a number"),  # an Arabic-Indic five
    ({"smart": {str(i): 0 for i in range(1, 257)}}, "length <= 255"),
    ({"io_errors": TOO_FAR}, "<= 281474976710655"),
    ({"io_latency_ms": 1e308}, "<= 86400000"),
    ({"capacity_bytes": -2}, ">= -1"),
    ({"capacity_bytes": 2**53}, "<= 9007199254740991"),
    ({"disk": "d" * 257}, "length <= 256"),
    ({"model": "m" * 257}, "length <= 256"),
    ({"ts": "0001-01-01T00:00:00Z"}, "out of range"),
    ({"ts": 0}, "out of range"),
])
def test_out_of_range_disk_readings_are_refused_with_the_reason(change, reason):
    with pytest.raises(InvalidEvent, match=re.escape(reason)):
        decode_disk(orjson.dumps({**DISK, **change}))


def test_disk_readings_at_the_bounds_are_accepted():
    ev = decode_disk(orjson.dumps({**DISK, "smart": {"1": 2**48 - 1, "255": 0, "9": 18550.0}, "io_errors": 2**48 - 1,
                                   "capacity_bytes": 2**53 - 1, "io_latency_ms": 86_400_000, "failure": False}))
    assert ev.smart["1"] == 2**48 - 1 and ev.io_errors == 2**48 - 1 and ev.ts == 1617696000.0
    every = decode_disk(orjson.dumps({**DISK, "smart": {str(i): i for i in range(1, 256)}}))
    assert len(every.smart) == 255


def test_the_smart_id_set_is_its_pattern():
    from detectors.events import _SMART_IDS, SMART_ID_PATTERN

    pat = re.compile(SMART_ID_PATTERN)
    candidates = [str(i) for i in range(-5, 1200)] + [f"{i:02d}" for i in range(100)] + [f"{i:03d}" for i in range(300)]
    candidates += ["", " 5", "5 ", "+5", "5.0", "\u0665", "1e2", "5\n"]
    for k in candidates:
        assert (k in _SMART_IDS) == bool(pat.search(k) and "\n" not in k), k



def test_backblaze_unknown_capacity_is_read_as_absent():
    ev = decode_disk(b'{"ts": 1617692400, "host": "h", "disk": "d", "smart": {"5": 0}, "capacity_bytes": -1}')
    assert ev.capacity_bytes is None
