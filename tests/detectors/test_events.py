import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.errors import InvalidEvent
from detectors.events import MAX_EVENT_BYTES, decode_disk, decode_request

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
    for bad, why in [({**ok, "smart": {"five": 1}}, "not a number"), ({**ok, "smart": {"5": -1}}, ">= 0"),
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
