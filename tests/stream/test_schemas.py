"""The JSON Schemas in schemas/ describe what tocsin really writes (CONTRACT.md)."""

from __future__ import annotations

import base64
import functools
import json
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator, FormatChecker

from alerts.model import SCHEMA as ALERT_SCHEMA
from detectors import eventschema
from detectors.errors import InvalidEvent
from detectors.events import decode_disk, decode_request
from detectors.eventschema import FILES, input_schemas, render
from detectors.model import SCHEMA as ANOMALY_SCHEMA
from detectors.timeutil import EVENT_TS_MAX, EVENT_TS_MIN
from stream.runner import DEAD_LETTER_PAYLOAD_MAX, DEAD_LETTER_SCHEMA, dead_letter_record
from tests.stream.test_report import small_backtest

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


@functools.cache
def _validator(name: str) -> Draft202012Validator:
    schema = json.loads((SCHEMAS / name).read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=FormatChecker())


@pytest.fixture(scope="module")
def backtest_dir(tmp_path_factory) -> Path:
    return small_backtest(tmp_path_factory)


def _records(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def _errors(v: Draft202012Validator, rec: dict) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in v.iter_errors(rec)]


@pytest.mark.parametrize("name, const", [
    ("anomaly.v1.json", ANOMALY_SCHEMA), ("alert.v1.json", ALERT_SCHEMA), ("dead-letter.v1.json", DEAD_LETTER_SCHEMA),
])
def test_schemas_are_draft_2020_12_and_name_the_code_constant(name, const):
    schema = json.loads((SCHEMAS / name).read_text(encoding="utf-8"))
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["properties"]["schema"] == {"const": const}
    _validator(name)


def test_every_anomaly_of_a_backtest_validates(backtest_dir):
    v = _validator("anomaly.v1.json")
    recs = _records(backtest_dir / "anomalies.jsonl")
    assert {r["detector"] for r in recs} == {"latency", "traffic", "disk"}
    for r in recs:
        assert not _errors(v, r), (r, _errors(v, r))


def test_every_alert_of_a_backtest_validates(backtest_dir):
    v = _validator("alert.v1.json")
    recs = _records(backtest_dir / "alerts.jsonl")
    assert {r["status"] for r in recs} == {"firing", "resolved"}
    for r in recs:
        assert not _errors(v, r), (r, _errors(v, r))


def test_the_worker_dead_letter_record_validates():
    v = _validator("dead-letter.v1.json")
    raw = b'{"ts": 1, "service": "ent", "status": 700}\xff'
    src = {"topic": "requests", "partition": 3, "offset": 1234}
    rec = orjson.loads(dead_letter_record(src, "Expected `int` <= 599 - at `$.status`", raw))
    assert not _errors(v, rec)
    assert base64.b64decode(rec["payload"]) == raw and rec["size"] == len(raw) and "truncated" not in rec
    empty = orjson.loads(dead_letter_record({"topic": "disk-health", "partition": 0, "offset": 0}, "not valid JSON: empty", None))
    assert not _errors(v, empty)
    from_file = orjson.loads(dead_letter_record({"file": "r.jsonl", "line": 2}, "not valid JSON", b"{oops"))
    assert not _errors(v, from_file)


def test_a_dead_letter_keeps_a_bounded_prefix_of_a_huge_message():
    v = _validator("dead-letter.v1.json")
    raw = b"x" * 920_000  # under Kafka's 1 MB limit, but not once base64-encoded
    value = dead_letter_record({"topic": "requests", "partition": 0, "offset": 9}, "over 64 KiB", raw)
    rec = orjson.loads(value)
    assert not _errors(v, rec)
    assert len(value) < 100_000 and rec["size"] == 920_000 and rec["truncated"] is True
    assert base64.b64decode(rec["payload"]) == raw[:DEAD_LETTER_PAYLOAD_MAX]


ANOMALY = {
    "schema": "tocsin.anomaly.v1", "id": "83af13ba70d400879019", "ts": "2021-04-06T08:05:00Z", "detector": "latency",
    "entity": {"service": "ent-grand-est", "endpoint": "/login", "host": "web-3", "disk": None},
    "signal": "latency_p95_ms", "value": 4200.0, "expected": 180.0, "lower": 120.0, "upper": 400.0,
    "score": 0.97, "severity": "critical",
}
ALERT = {
    "schema": "tocsin.alert.v1", "fingerprint": "f905718082ddef5c", "status": "firing", "severity": "warning",
    "title": "Traffic 8.2x usual on ent-grand-est: suspected attack", "cause": "suspected_attack",
    "confidence": 0.86, "labels": {"service": "ent-grand-est", "host": None, "disk": None},
    "starts_at": "2021-04-06T08:04:00Z", "ends_at": None,
    "evidence": [{"signal": "request_rate", "value": 812.0, "expected": 99.0, "text": "812 req/s against 99 usual"}],
    "anomalies": ["83af13ba70d400879019"],
}


def _with(rec: dict, path: str, value) -> dict:
    rec = json.loads(json.dumps(rec))
    *parents, last = path.split(".")
    node = rec
    for p in parents:
        node = node[p]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value
    return rec


_DELETE = object()


def test_the_contract_examples_validate():
    assert not _errors(_validator("anomaly.v1.json"), ANOMALY)
    assert not _errors(_validator("alert.v1.json"), ALERT)
    resolved = _with(_with(ALERT, "status", "resolved"), "ends_at", "2021-04-06T09:00:00.250+02:00")
    assert not _errors(_validator("alert.v1.json"), resolved)


@pytest.mark.parametrize("path, value", [
    ("score", 1.5),
    ("severity", "fatal"),
    ("detector", "cpu"),
    ("ts", 1617696300),
    ("ts", "2021-04-06 08:05"),
    ("value", "4200"),
    ("id", _DELETE),
    ("entity.disk", _DELETE),
    ("entity", {"service": None, "endpoint": None, "host": None, "disk": None}),
    ("entity", {"service": None, "endpoint": None, "host": None, "disk": "SN1"}),
    ("extra", 1),
])
def test_bad_anomalies_are_rejected(path, value):
    assert _errors(_validator("anomaly.v1.json"), _with(ANOMALY, path, value))


@pytest.mark.parametrize("path, value", [
    ("cause", "ddos"),
    ("status", "pending"),
    ("severity", "info"),
    ("confidence", -0.1),
    ("ends_at", "2021-04-06T09:00:00Z"),  # firing with an end
    ("labels", {"service": None, "host": None, "disk": None}),
    ("labels.host", _DELETE),
    ("evidence", [{"signal": "request_rate", "value": 812.0, "text": "no expected"}]),
    ("anomalies", [1]),
])
def test_bad_alerts_are_rejected(path, value):
    assert _errors(_validator("alert.v1.json"), _with(ALERT, path, value))


def test_a_resolved_alert_needs_its_end():
    assert _errors(_validator("alert.v1.json"), _with(ALERT, "status", "resolved"))


@pytest.mark.parametrize("rec", [
    {"schema": "tocsin.dead-letter.v1", "source": {"topic": "requests", "partition": 0}, "error": "x", "payload": ""},
    {"schema": "tocsin.dead-letter.v1", "source": {"topic": "requests", "partition": 0, "offset": -1}, "error": "x", "payload": ""},
    {"schema": "tocsin.dead-letter.v1", "source": {"topic": "requests", "partition": 0, "offset": 1}, "error": "", "payload": ""},
    {"schema": "tocsin.dead-letter.v1", "source": {"topic": "requests", "partition": 0, "offset": 1}, "error": "x", "payload": "not base64!"},
])
def test_bad_dead_letters_are_rejected(rec):
    assert _errors(_validator("dead-letter.v1.json"), rec)


def test_the_consumer_example_prints_one_line_per_anomaly(backtest_dir):
    import importlib.util

    spec = importlib.util.spec_from_file_location("consume_anomalies", SCHEMAS.parent / "examples" / "consume_anomalies.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    for r in _records(backtest_dir / "anomalies.jsonl")[:50] + [ANOMALY]:
        line = example.format_anomaly("ent-grand-est/web-3", r)
        assert "\n" not in line and r["signal"] in line and r["severity"] in line


# -- the input events: schemas generated from the decoder's definitions ---------------

INPUTS = {"request-event.json": decode_request, "disk-health-event.json": decode_disk}


def test_the_input_schemas_are_what_the_generator_makes():
    made = input_schemas()
    assert set(made) == set(INPUTS) == set(FILES.values())
    for name, schema in made.items():
        assert (SCHEMAS / name).read_text(encoding="utf-8") == render(schema), (
            f"schemas/{name} is out of date: run python -m detectors.eventschema schemas")
        Draft202012Validator.check_schema(schema)
    assert eventschema.main(["--check", str(SCHEMAS)]) == 0


def test_the_generator_check_fails_on_a_stale_file(tmp_path, capsys):
    assert eventschema.main([str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(FILES.values())
    assert eventschema.main(["--check", str(tmp_path)]) == 0
    (tmp_path / "request-event.json").write_text("{}", encoding="utf-8")
    assert eventschema.main(["--check", str(tmp_path)]) == 1
    assert "request-event.json" in capsys.readouterr().err


def _accepts(name: str, raw: bytes) -> tuple[bool, bool]:
    """(the schema accepts it, the decoder accepts it)."""
    v = _validator(name)
    ok_schema = v.is_valid(json.loads(raw))
    try:
        INPUTS[name](raw)
        ok_decoder = True
    except InvalidEvent:
        ok_decoder = False
    return ok_schema, ok_decoder


REQ = {"ts": "2021-04-06T08:00:01.250Z", "service": "ent-grand-est", "status": 503, "latency_ms": 4200,
       "endpoint": "/login", "host": "web-3", "region": "grand-est", "client_ip": "90.1.2.3", "country": "FR",
       "asn": 3215, "user_agent": "Mozilla/5.0", "bytes": 2348}
DISK = {"ts": 1617696000, "host": "web-3", "disk": "ZA1", "smart": {"5": 0, "9": 18550.0, "194": 31},
        "model": "ST4000DM000", "capacity_bytes": 4000787030016, "io_latency_ms": 7.4, "io_errors": 0,
        "failure": False}


def _case(base: dict, path: str, value) -> bytes:
    return json.dumps(_with(base, path, value)).encode()


AGREE = [
    # (schema file, message): both accept or both refuse
    *[("request-event.json", _case(REQ, k, v)) for k, v in [
        ("ts", "2000-01-01T00:00:00Z"), ("ts", "1999-12-31T23:59:59Z"), ("ts", "2099-12-31T23:59:59.999999Z"),
        ("ts", "2100-01-01T00:00:00Z"), ("ts", "0001-01-01T00:00:00Z"), ("ts", "2999-01-01T00:00:00Z"),
        ("ts", "2024-02-29T00:00:00Z"), ("ts", "2023-02-29T00:00:00Z"), ("ts", "2000-02-29T00:00:00Z"),
        ("ts", "2021-04-31T00:00:00Z"), ("ts", "2021-04-06T24:00:00Z"), ("ts", "2021-04-06T08:00:60Z"),
        ("ts", "2021-04-06T08:00:00+23:59"), ("ts", "2021-04-06T08:00:00+24:00"), ("ts", "2021-04-06T08:00:00"),
        ("ts", "2021-04-06t08:00:00.1z"), ("ts", "2021-04-06 08:00:00Z"), ("ts", "yesterday"), ("ts", ""),
        ("ts", -1), ("ts", 0), ("ts", 946684800), ("ts", 946684799.5), ("ts", 4102444799.9), ("ts", 4102444800),
        ("ts", True), ("ts", None), ("ts", 1617696001000),
        ("status", 99), ("status", 100), ("status", 599), ("status", 600), ("status", "503"),
        ("latency_ms", -1), ("latency_ms", 0), ("latency_ms", 86_400_000), ("latency_ms", 1e308), ("latency_ms", 1.5),
        ("bytes", -1), ("bytes", 2**53 - 1), ("bytes", 2**53), ("bytes", None),
        ("asn", -1), ("asn", 2**32 - 1), ("asn", 2**32), ("asn", 2**64),
        ("service", ""), ("service", "s" * 256), ("service", "s" * 257), ("service", "é" * 256), ("service", 5),
        ("host", "h" * 257), ("region", ""), ("endpoint", "/" * 1025), ("user_agent", "u" * 1024),
        ("client_ip", "1" * 65), ("country", "FRA"), ("country", None), ("service", _DELETE), ("ts", _DELETE),
        ("extra", {"any": [1, 2]}),
    ]],
    *[("disk-health-event.json", _case(DISK, k, v)) for k, v in [
        ("smart", {}), ("smart", {"5": 1e308}), ("smart", {"5": 2**48 - 1}), ("smart", {"5": 2**48}),
        ("smart", {"5": -1}), ("smart", {"0": 1}), ("smart", {"255": 1}), ("smart", {"256": 1}),
        ("smart", {"05": 1}), ("smart", {"x": 1}), ("smart", {"5": "1"}), ("smart", {"5": None}),
        ("smart", {str(i): 1 for i in range(1, 256)}), ("smart", [1]), ("smart", _DELETE),
        ("io_errors", 2**48 - 1), ("io_errors", 2**48), ("io_errors", -1), ("io_latency_ms", 86_400_001),
        ("capacity_bytes", -1), ("capacity_bytes", -2), ("capacity_bytes", 2**53), ("failure", 1), ("failure", True),
        ("ts", "0001-01-01T00:00:00Z"), ("ts", "2021-04-06T08:00:00.250+02:00"), ("disk", ""), ("model", "m" * 257),
    ]],
]


@pytest.mark.parametrize("name, raw", AGREE)
def test_the_schema_and_the_decoder_agree(name, raw):
    assert _accepts(name, raw) in ((True, True), (False, False)), raw


def test_the_agreement_cases_hold_both_verdicts():
    verdicts = [_accepts(name, raw)[1] for name, raw in AGREE]
    assert 25 < sum(verdicts) < len(verdicts) - 25


def test_the_one_known_difference_an_integer_written_with_a_fraction():
    """JSON Schema counts 200.0 an integer; the decoder (msgspec) wants 200: the decoder is the stricter."""
    assert _accepts("request-event.json", b'{"ts": 1617696000, "service": "s", "status": 200.0, "latency_ms": 1}') == (True, False)


def test_every_simulated_input_event_validates(backtest_dir):
    from stream.files import iter_lines

    root = backtest_dir.parent
    for name, path in (("request-event.json", root / "requests.jsonl.gz"), ("disk-health-event.json", root / "disks.jsonl")):
        v = _validator(name)
        n = 0
        for i, (_, line) in enumerate(iter_lines(path)):
            if i < 2000 or i % 97 == 0:
                assert not _errors(v, orjson.loads(line)), line
                INPUTS[name](line)
                n += 1
        assert n > 2000


# Values near every bound, for hypothesis to combine.
_years = st.integers(1998, 2101)
_ts_strings = st.builds(
    lambda y, mo, d, h, mi, s, frac, off: f"{y:04d}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}{frac}{off}",
    _years, st.integers(0, 13), st.integers(0, 32), st.integers(0, 24), st.integers(0, 60), st.integers(0, 60),
    st.sampled_from(["", ".5", ".250", ".123456789"]),
    st.sampled_from(["Z", "z", "+00:00", "+02:00", "-23:59", "+24:00", "", "+5:00"]),
)
_ts_numbers = st.sampled_from([EVENT_TS_MIN, EVENT_TS_MAX]).flatmap(
    lambda b: st.floats(b - 2, b + 2) | st.integers(int(b) - 2, int(b) + 2))
_ts = _ts_strings | _ts_numbers | st.sampled_from([None, True, "", 0])


def _near(bound: int) -> st.SearchStrategy:
    return st.integers(bound - 2, bound + 2) | st.integers(-3, 3)


def _text(n: int) -> st.SearchStrategy:
    return st.integers(max(0, n - 2), n + 2).map(lambda k: "é" * k) | st.text(max_size=3)


def _maybe(s: st.SearchStrategy) -> st.SearchStrategy:
    return st.none() | s


# Each generated event is a good one with up to three fields set to such values.
_REQUEST_EDGES = {
    "ts": _ts, "service": _text(256), "status": _near(100) | _near(599),
    "latency_ms": st.floats(-1, 86_400_002, allow_nan=False) | _near(86_400_000),
    "endpoint": _maybe(_text(1024)), "host": _maybe(_text(256)), "client_ip": _maybe(_text(64)),
    "country": _maybe(_text(2)), "asn": _maybe(_near(2**32 - 1)), "bytes": _maybe(_near(2**53 - 1)),
    "user_agent": _maybe(_text(1024)), "region": _maybe(_text(256)),
}
_smart_ids = st.sampled_from(["0", "1", "5", "05", "99", "100", "199", "249", "255", "256", "x", "", "1000"])
_DISK_EDGES = {
    "ts": _ts, "host": _text(256), "disk": _text(256),
    "smart": st.dictionaries(_smart_ids, _near(2**48 - 1) | st.floats(-1, 1e308, allow_nan=False), max_size=6),
    "model": _maybe(_text(256)), "capacity_bytes": _maybe(_near(2**53 - 1)),
    "io_latency_ms": _maybe(st.floats(-1, 86_400_002, allow_nan=False)), "io_errors": _maybe(_near(2**48 - 1)),
    "failure": _maybe(st.booleans()),
}


def _mutated(name: str, base: dict, edges: dict) -> st.SearchStrategy:
    changes = st.lists(st.sampled_from(sorted(edges)), max_size=3, unique=True).flatmap(
        lambda keys: st.fixed_dictionaries({k: edges[k] for k in keys}))
    return changes.map(lambda ch: (name, {**base, **ch}))


@settings(max_examples=400, deadline=None, derandomize=True)
@given(_mutated("request-event.json", REQ, _REQUEST_EDGES) | _mutated("disk-health-event.json", DISK, _DISK_EDGES))
def test_the_schema_and_the_decoder_agree_on_generated_events(case):
    name, event = case
    schema_ok, decoder_ok = _accepts(name, json.dumps(event).encode())
    assert schema_ok == decoder_ok, event
