"""``tocsin score``: detectors by name, and bad input refused with file and line."""

from __future__ import annotations

import csv
import math

import pytest

from stream.cli import main


def _series(path, n=400, spike_at=300, spike=40.0, bad=None):
    rows = [
        (f"2014-04-{1 + i // 288:02d} {(i % 288) // 12:02d}:{5 * (i % 12):02d}:00",
         repr(20.0 + 5.0 * math.sin(i / 20.0) + (spike if i == spike_at else 0.0)))
        for i in range(n)
    ]
    if bad is not None:
        line, value = bad
        rows[line - 2] = (rows[line - 2][0], value)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["timestamp", "value"])
        w.writerows(rows)
    return rows


@pytest.mark.parametrize("value", ["1e20", "-1e20", "3e25", "inf", "-Infinity", "nan", "NaN"])
def test_out_of_range_and_non_finite_values_exit_2_with_file_and_line(tmp_path, capsys, value):
    src = tmp_path / "in.csv"
    _series(src, n=50, bad=(17, value))
    assert main(["score", str(src), "-o", str(tmp_path / "out.csv")]) == 2
    err = capsys.readouterr().err.strip()
    assert f"{src}:17:" in err and value in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "out.csv").exists()


def test_non_utf8_file_exits_2_with_its_line(tmp_path, capsys):
    src = tmp_path / "in.csv"
    src.write_bytes(b"timestamp,value\n2014-04-01 00:00:00,1\n2014-04-01 00:05:00,2\n"
                    b"2014-04-01 00:10:00,3\xe9\n")
    assert main(["score", str(src)]) == 2
    err = capsys.readouterr().err.strip()
    assert f"{src}:4:" in err and "UTF-8" in err and len(err.splitlines()) == 1


def test_a_value_just_below_the_limit_is_scored_without_nan(tmp_path):
    src = tmp_path / "in.csv"
    _series(src, n=400, spike_at=300, spike=9.9e19)
    out = tmp_path / "out.csv"
    assert main(["score", str(src), "-o", str(out)]) == 0
    scores = [float(r["anomaly_score"]) for r in csv.DictReader(open(out))]
    assert len(scores) == 400 and all(0.0 <= s <= 1.0 for s in scores)
    assert scores[300] == max(scores)


@pytest.mark.parametrize(
    "detector",
    ["tocsin", "traffic", "latency", "river:HalfSpaceTrees:{\"seed\": 3}", "river:GaussianScorer",
     "river:PredictiveAnomalyDetection"],
)
def test_every_detector_writes_one_bounded_score_per_row(tmp_path, detector):
    src = tmp_path / "in.csv"
    rows = _series(src, n=600, spike_at=500, spike=60.0)
    out = tmp_path / "out.csv"
    assert main(["score", str(src), "--detector", detector, "-o", str(out)]) == 0
    got = list(csv.DictReader(open(out)))
    assert [(r["timestamp"], r["value"]) for r in got] == rows
    scores = [float(r["anomaly_score"]) for r in got]
    assert all(0.0 <= s < 1.0 for s in scores)
    if detector.startswith(("tocsin", "traffic", "latency", "river:Gaussian")):
        assert scores[500] == max(scores[400:])


@pytest.mark.parametrize(
    ("detector", "needle"),
    [
        ("nope", "unknown detector 'nope'"),
        ("river:NoSuchClass", "unknown River anomaly detector 'NoSuchClass'"),
        ("river:QuantileFilter", "unknown River anomaly detector"),
        ("river:HalfSpaceTrees:{bad json", "not JSON"),
        ("river:HalfSpaceTrees:[1]", "must be a JSON object"),
        ("river:HalfSpaceTrees:{\"no_such_param\": 1}", "no_such_param"),
    ],
)
def test_bad_detector_exits_2_with_one_line(tmp_path, capsys, detector, needle):
    src = tmp_path / "in.csv"
    _series(src, n=20)
    assert main(["score", str(src), "--detector", detector]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1
