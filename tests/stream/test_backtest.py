"""tocsin backtest and tocsin score through the command line, on simulated recordings."""

import csv
import gzip

import orjson
import pytest

from detectors.timeutil import parse_ts
from stream.cli import main

ANOMALY_KEYS = {"schema", "id", "ts", "detector", "entity", "signal", "value", "expected", "lower", "upper", "score", "severity"}
ALERT_KEYS = {"schema", "fingerprint", "status", "severity", "title", "cause", "confidence", "labels", "starts_at",
              "ends_at", "evidence", "anomalies"}


@pytest.fixture(scope="module")
def backtest_out(sim_recording, tmp_path_factory):
    out = tmp_path_factory.mktemp("bt")
    rc = main(["backtest", "--requests", str(sim_recording / "requests.jsonl.gz"),
               "--disks", str(sim_recording / "disks.jsonl"), "--out", str(out)])
    assert rc == 0
    return out


def read(path):
    return [orjson.loads(line) for line in open(path, "rb")]


def test_records_follow_the_contract(backtest_out):
    anomalies = read(backtest_out / "anomalies.jsonl")
    alerts = read(backtest_out / "alerts.jsonl")
    assert anomalies and alerts
    for a in anomalies:
        assert set(a) == ANOMALY_KEYS and a["schema"] == "tocsin.anomaly.v1"
        assert a["detector"] in ("latency", "traffic", "disk") and 0 <= a["score"] <= 1
        assert set(a["entity"]) == {"service", "endpoint", "host", "disk"}
        assert a["severity"] in ("info", "warning", "critical")
    for al in alerts:
        assert set(al) == ALERT_KEYS and al["schema"] == "tocsin.alert.v1"
        assert al["status"] in ("firing", "resolved") and al["severity"] in ("warning", "critical")
        assert al["cause"] in ("capacity_saturation", "suspected_attack", "disk_failure", "unknown")
        assert {"service", "host", "disk"} <= set(al["labels"]) and 0 <= al["confidence"] <= 1
        assert al["evidence"] and all(e["text"] for e in al["evidence"])
        assert (al["ends_at"] is None) == (al["status"] == "firing")


def test_every_incident_is_caught_with_its_cause_and_nothing_else_alerts(sim_recording, backtest_out):
    truth = orjson.loads((sim_recording / "truth.json").read_bytes())
    fired = [a for a in read(backtest_out / "alerts.jsonl") if a["status"] == "firing"]
    explained = set()
    for t in truth:
        start = parse_ts(t["start"])
        # Disk: the requests' slowdown is blamed on the drive once it has
        # lasted a little (the drive itself alerted days before, see below).
        delay = 300 if t["cause"] == "disk_failure" else 120
        hits = [a for a in fired if a["cause"] == t["cause"] and a["labels"]["service"] == t["service"]
                and start - 60 <= parse_ts(a["starts_at"]) <= start + delay]
        assert hits, f"{t['id']} not alerted within {delay} s with cause {t['cause']}"
        explained.update(a["fingerprint"] for a in hits)
        if t["cause"] == "disk_failure":
            assert hits[0]["labels"]["host"] == t["host"] and hits[0]["labels"]["disk"] == t["disk"]
            # the drive itself was flagged days before it failed
            early = [a for a in fired if a["labels"]["disk"] == t["disk"] and a["labels"]["service"] is None]
            assert early and parse_ts(early[0]["starts_at"]) < start - 86400
            explained.update(a["fingerprint"] for a in early)
    false = [a for a in fired if a["fingerprint"] not in explained]
    assert false == [], [a["title"] for a in false]


def test_backtest_is_deterministic(sim_recording, tmp_path):
    part = tmp_path / "part.jsonl"
    with gzip.open(sim_recording / "requests.jsonl.gz", "rb") as src, open(part, "wb") as dst:
        for i, line in enumerate(src):
            if i >= 300_000:
                break
            dst.write(line)
    outs = []
    for run in ("a", "b"):
        assert main(["backtest", "--requests", str(part), "--disks", str(sim_recording / "disks.jsonl"),
                     "--out", str(tmp_path / run)]) == 0
        outs.append(((tmp_path / run / "anomalies.jsonl").read_bytes(), (tmp_path / run / "alerts.jsonl").read_bytes()))
    assert outs[0] == outs[1] and outs[0][0]


def test_malformed_lines_go_to_the_dead_letter_file(tmp_path, capsys):
    f = tmp_path / "r.jsonl"
    good = {"ts": 1617696000 + 0.5, "service": "s", "status": 200, "latency_ms": 10}
    f.write_bytes(orjson.dumps(good) + b"\n{oops\n" + orjson.dumps({**good, "status": 42}) + b"\n")
    assert main(["backtest", "--requests", str(f), "--out", str(tmp_path / "o")]) == 0
    dl = read(tmp_path / "o" / "dead-letter.jsonl")
    assert [d["source"]["line"] for d in dl] == [2, 3] and all(d["error"] for d in dl)


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["backtest", "--out", "x"], "give --requests"),
        (["backtest", "--requests", "/nonexistent.jsonl", "--out", "x"], "/nonexistent.jsonl: no such file"),
        (["backtest", "--requests", "r", "--out", "x", "--config", "/no/such.yaml"], "/no/such.yaml"),
        (["score", "/nonexistent.csv"], "/nonexistent.csv"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(argv, needle, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1


def test_corrupt_gzip_exits_2(tmp_path, capsys):
    f = tmp_path / "r.jsonl.gz"
    import os

    lines = b"".join(orjson.dumps({"ts": 1617696000 + i, "service": os.urandom(8).hex(), "status": 200,
                                   "latency_ms": 1}) + b"\n" for i in range(2000))
    f.write_bytes(gzip.compress(lines)[:20000])
    assert main(["backtest", "--requests", str(f), "--out", str(tmp_path / "o")]) == 2
    assert "r.jsonl.gz" in capsys.readouterr().err


def test_score_writes_one_bounded_score_per_row(tmp_path):
    src = tmp_path / "in.csv"
    rows = [(f"2014-04-01 00:{i % 60:02d}:00", 10.0 + (50.0 if i == 150 else 0.0) + (i % 7)) for i in range(300)]
    with open(src, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["timestamp", "value"])
        w.writerows(rows)
    out = tmp_path / "out.csv"
    assert main(["score", str(src), "-o", str(out)]) == 0
    got = list(csv.DictReader(open(out)))
    assert [r["timestamp"] for r in got] == [r[0] for r in rows]
    scores = [float(r["anomaly_score"]) for r in got]
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert scores[150] == max(scores[100:])


def test_score_rejects_a_bad_row(tmp_path, capsys):
    src = tmp_path / "in.csv"
    src.write_text("timestamp,value\n2014-04-01 00:00:00,1\n2014-04-01 00:05:00,abc\n")
    assert main(["score", str(src)]) == 2
    assert "in.csv:3" in capsys.readouterr().err


def test_a_file_with_no_valid_event_exits_2_naming_the_line(tmp_path, capsys):
    f = tmp_path / "r.jsonl"
    f.write_text('{"a": 1}\n{"b": 2}\n')
    assert main(["backtest", "--requests", str(f), "--out", str(tmp_path / "o")]) == 2
    assert f"{f}:1:" in capsys.readouterr().err


def per_event_backtest(requests, disks):
    """The backtest as it was before batching: one request at a time, disks merged in by time."""
    from detectors.errors import InvalidEvent
    from detectors.events import decode_disk, decode_request
    from stream.engine import Engine
    from stream.files import iter_lines

    engine = Engine()
    anomalies, alerts, bad = [], [], []

    def take(o):
        anomalies.extend(orjson.loads(orjson.dumps(a.to_record())) for a in o.anomalies)
        alerts.extend(orjson.loads(orjson.dumps(a.to_record())) for a in o.alerts)

    def decoded(path, decode):
        for n, line in iter_lines(path):
            try:
                yield n, decode(line)
            except InvalidEvent as exc:
                bad.append((str(path), n, str(exc)))

    dstream = decoded(disks, decode_disk)
    dhead = None
    started = False
    for _, ev in decoded(requests, decode_request):
        if not started:
            started = True
            dhead = next(dstream, None)
        while dhead is not None and dhead[1].ts < ev.ts:
            take(engine.process_disk(dhead[1]))
            dhead = next(dstream, None)
        take(engine.process_request(ev))
    if not started:
        dhead = next(dstream, None)
    while dhead is not None:
        take(engine.process_disk(dhead[1]))
        dhead = next(dstream, None)
    take(engine.flush())
    return anomalies, alerts, bad


def test_batched_backtest_is_the_per_event_one(sim_recording, tmp_path):
    # A slice of the recording, with malformed, blank and CRLF lines, against the disks.
    part = tmp_path / "part.jsonl"
    with gzip.open(sim_recording / "requests.jsonl.gz", "rb") as src, open(part, "wb") as dst:
        for i, line in enumerate(src):
            if i >= 150_000:
                break
            if i % 20_011 == 5:
                dst.write(b"{oops\n\n   \n")
            if i % 30_011 == 7:
                line = line.rstrip(b"\n") + b"\r\n"
            dst.write(line)
    disks = sim_recording / "disks.jsonl"
    res = main(["backtest", "--requests", str(part), "--disks", str(disks), "--out", str(tmp_path / "o")])
    assert res == 0
    anomalies, alerts, bad = per_event_backtest(part, disks)
    assert read(tmp_path / "o" / "anomalies.jsonl") == anomalies and anomalies
    assert read(tmp_path / "o" / "alerts.jsonl") == alerts
    dead = read(tmp_path / "o" / "dead-letter.jsonl")
    assert [(d["source"]["file"], d["source"]["line"], d["error"]) for d in dead] == bad and len(bad) == 8
