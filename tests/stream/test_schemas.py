"""The JSON Schemas in schemas/ describe what tocsin really writes (CONTRACT.md)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import orjson
import pytest
from jsonschema import Draft202012Validator, FormatChecker

from alerts.model import SCHEMA as ALERT_SCHEMA
from detectors.model import SCHEMA as ANOMALY_SCHEMA
from stream.runner import DEAD_LETTER_PAYLOAD_MAX, DEAD_LETTER_SCHEMA, dead_letter_record
from tests.stream.test_report import small_backtest

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


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
