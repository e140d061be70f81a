"""The issue's hostile values, through ``tocsin backtest``: dead-lettered with the reason, no page."""

from __future__ import annotations

import base64

import orjson
import pytest

from detectors.errors import InvalidEvent
from detectors.events import DiskHealthEvent, decode_request, decode_requests
from stream.backtest import run_backtest
from stream.engine import Engine
from stream.metrics import classify_dead_letter

T0 = 1617692400.0  # 2021-04-06T07:00:00Z
HOUR = 3600.0
GOOD = {"ts": "2021-04-06T08:00:01.250Z", "service": "ent-grand-est", "status": 503, "latency_ms": 4200}


def _readings(hostile: dict) -> list[dict]:
    """Hourly readings of two healthy drives for four days; one reading of drive ko at hour 60 carries ``hostile``."""
    out = []
    for h in range(96):
        for disk in ("ok", "ko"):
            rec = {"ts": T0 + h * HOUR, "host": "web-3", "disk": disk, "model": "ST4000DM000",
                   "smart": {"5": 0, "187": 0, "197": 0, "9": 1000 + h}, "io_latency_ms": 7.5, "io_errors": 0}
            if disk == "ko" and h == 60:
                rec = {**rec, **hostile, "smart": {**rec["smart"], **hostile.get("smart", {})}}
            out.append(rec)
    return out


def _backtest(tmp_path, recs: list[dict]):
    path = tmp_path / "disks.jsonl"
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in recs))
    res = run_backtest(None, str(path), tmp_path / "out")
    dead = [orjson.loads(x) for x in (tmp_path / "out" / "dead-letter.jsonl").read_bytes().splitlines()]
    return res, dead


def test_smart_1e308_would_page_but_is_dead_lettered(tmp_path):
    recs = _readings({"smart": {"5": 1e308}})
    # What the detectors do with the value when nothing stops it: the drive is flagged.
    engine = Engine()
    outs = [engine.process_disk(DiskHealthEvent(
        r["ts"], r["host"], r["disk"], {k: float(v) for k, v in r["smart"].items()}, r["model"], None,
        r["io_latency_ms"], r["io_errors"])) for r in recs]
    assert any(a.detector == "disk" and a.entity.disk == "ko" for o in outs for a in o.anomalies)
    # Through the decoder: one dead letter, the reason, no alert.
    res, dead = _backtest(tmp_path, recs)
    assert res.events == len(recs) - 1 and res.invalid == 1 and not res.alerts
    (d,) = dead
    assert d["source"] == {"file": str(tmp_path / "disks.jsonl"), "line": 122}
    assert base64.b64decode(d["payload"]) == orjson.dumps(recs[121])
    assert d["error"] == ("SMART 5 raw value 1e+308 is out of range: a 48-bit counter, 0 to 281474976710655"
                          " - at `$.smart.5`")


def test_far_dates_in_either_form_are_dead_lettered(tmp_path):
    for ts in ("0001-01-01T00:00:00Z", "2999-01-01T00:00:00Z", -1, 32503680000):
        res, dead = _backtest(tmp_path, _readings({"ts": ts}))
        assert res.invalid == 1 and not res.alerts
        assert "out of range" in dead[0]["error"] and dead[0]["error"].endswith("- at `$.ts`"), dead[0]


@pytest.mark.parametrize("field", ["ts", "latency_ms", "asn", "bytes"])
def test_a_number_past_a_float_is_out_of_range(field):
    raw = orjson.dumps(GOOD)[:-1] + b', "' + field.encode() + b'": -1e400}'
    with pytest.raises(InvalidEvent) as exc:
        decode_request(raw)
    assert str(exc.value) == f"number is out of range (beyond a 64-bit float) - at `$.{field}`"
    assert classify_dead_letter(str(exc.value)) == "out_of_range"
    assert decode_requests([raw])[1] == [(0, str(exc.value))]
