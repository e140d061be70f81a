"""``tocsin report``: the page of a backtest folder, checked as HTML and as a headless-Chromium screenshot."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import orjson
import pytest

from stream.cli import main
from stream.tools.report import load_backtest, render_html

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


def small_backtest(tmp_path_factory) -> Path:
    """A backtest of a small simulated incident day, built once per session (shared with test_schemas)."""
    from stream.backtest import run_backtest
    from stream.tools import simulator

    root = tmp_path_factory.getbasetemp() / "tocsin-small-backtest"
    out = root / "out"
    if not (root / "done").exists():
        simulator.write_jsonl(simulator.Scenario(seed=7, history_days=2, scale=2.0), root)
        run_backtest(str(root / "requests.jsonl.gz"), str(root / "disks.jsonl"), out)
        (root / "done").touch()
    return out


@pytest.fixture(scope="module")
def backtest_dir(tmp_path_factory) -> Path:
    return small_backtest(tmp_path_factory)


# -- a tiny PNG reader (8-bit RGB/RGBA, not interlaced: what Chromium writes) ---------
def read_png(path: Path) -> tuple[int, int, list[bytes], int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat = 8, []
    width = height = bpp = 0
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        pos += 12 + n
        if kind == b"IHDR":
            width, height, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and interlace == 0 and ctype in (2, 6), (depth, ctype, interlace)
            bpp = 3 if ctype == 2 else 4
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
    raw = zlib.decompress(b"".join(idat))
    stride = width * bpp
    rows: list[bytes] = []
    prev = bytearray(stride)
    i = 0
    for _ in range(height):
        ftype, line = raw[i], bytearray(raw[i + 1:i + 1 + stride])
        i += 1 + stride
        for x in range(stride):
            a = line[x - bpp] if x >= bpp else 0
            b = prev[x]
            c = prev[x - bpp] if x >= bpp else 0
            if ftype == 1:
                line[x] = (line[x] + a) & 0xFF
            elif ftype == 2:
                line[x] = (line[x] + b) & 0xFF
            elif ftype == 3:
                line[x] = (line[x] + (a + b) // 2) & 0xFF
            elif ftype == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        rows.append(bytes(line))
        prev = line
    return width, height, rows, bpp


def colours(rows: list[bytes], bpp: int, step: int = 7) -> set[bytes]:
    out = set()
    for row in rows[::step]:
        for x in range(0, len(row), bpp * step):
            out.add(row[x:x + 3])
    return out


def screenshot(url: str, png: Path, profile: Path) -> None:
    cmd = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={profile}", f"--screenshot={png}", "--window-size=1400,2000", url,
    ]
    subprocess.run(cmd, check=False, capture_output=True, timeout=120)


# -- the simulated day in a browser ----------------------------------------------
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (scripts/install-chromium installs it)")
def test_report_of_a_simulated_day_renders_in_headless_chromium(backtest_dir, tmp_path, capsys):
    page = tmp_path / "report.html"
    assert main(["report", str(backtest_dir), "--out", str(page)]) == 0
    assert str(page) in capsys.readouterr().out
    png = tmp_path / "shot.png"
    screenshot(page.resolve().as_uri(), png, tmp_path / "profile")
    assert png.is_file(), "chromium wrote no screenshot"
    assert png.stat().st_size > 20_000
    width, height, rows, bpp = read_png(png)
    assert (width, height) == (1400, 2000)
    assert len(colours(rows, bpp)) > 50, "the page rendered as (almost) one colour"

    text = page.read_text(encoding="utf-8")
    alerts = [orjson.loads(line) for line in (backtest_dir / "alerts.jsonl").read_bytes().splitlines()]
    truth = orjson.loads((backtest_dir.parent / "truth.json").read_bytes())
    causes = {a["cause"] for a in alerts} | {t["cause"] for t in truth}
    assert causes >= {"capacity_saturation", "suspected_attack", "disk_failure"}
    for cause in causes:
        assert f">{cause}</span>" in text, cause
    for a in alerts:
        assert _esc(a["title"]) in text


def _esc(s: str) -> str:
    import html

    return html.escape(s, quote=True)


def test_the_page_is_self_contained(backtest_dir, tmp_path):
    text = render_html(load_backtest(backtest_dir))
    assert "<script" not in text
    assert not re.search(r'(?:src|href)="(?!#)', text), "the page must not load anything"
    assert "<svg" in text and "Tuning the detectors" in text


# -- synthetic records, one of each shape ---------------------------------------------
def _anomaly(i: int, ts: str, entity: dict, signal: str, value: float, detector: str = "latency", **kw) -> dict:
    return {
        "schema": "tocsin.anomaly.v1", "id": f"a{i}", "ts": ts, "detector": detector,
        "entity": {"service": None, "endpoint": None, "host": None, "disk": None} | entity,
        "signal": signal, "value": value, "expected": kw.get("expected", 100.0), "lower": kw.get("lower", 60.0),
        "upper": kw.get("upper", 160.0), "score": kw.get("score", 0.97), "severity": kw.get("severity", "critical"),
    }


def _alert(status: str, cause: str, title: str, labels: dict, start: str, end: str | None, ids: list[str]) -> dict:
    return {
        "schema": "tocsin.alert.v1", "fingerprint": "fp-" + "-".join(sorted(labels.values())), "status": status, "severity": "critical",
        "title": title, "cause": cause, "confidence": 0.9,
        "labels": {"service": None, "host": None, "disk": None} | labels, "starts_at": start, "ends_at": end,
        "evidence": [{"signal": "request_rate", "value": 812.0, "expected": 99.0, "text": "812 req/s against 99 usual"}],
        "anomalies": ids,
    }


def _write(d: Path, anomalies: list[dict], alerts: list[dict]) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "anomalies.jsonl").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in anomalies))
    (d / "alerts.jsonl").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in alerts))
    return d


@pytest.fixture
def synthetic(tmp_path) -> Path:
    web = {"service": "ent", "host": "web-1"}
    anomalies = [
        _anomaly(1, "2021-04-06T08:01:00Z", {"service": "ent"}, "request_rate", 812.0, "traffic", expected=99.0),
        _anomaly(2, "2021-04-06T08:02:00Z", {"service": "ent"}, "request_rate", 790.0, "traffic", expected=99.0),
        _anomaly(3, "2021-04-06T08:02:00Z", web, "latency_p95_ms", 4200.0),
        _anomaly(4, "2021-04-06T03:00:00Z", {"service": "quiet"}, "latency_p50_ms", 300.0, severity="warning", score=0.7),
        _anomaly(5, "2021-04-06T08:30:00Z", {"host": "db-1", "disk": "SN1"}, "smart_5_raw", 40.0, "disk",
                 expected=2.0, lower=0.0, upper=4.0),
    ]
    alerts = [
        _alert("firing", "unknown", "Traffic 8.2x usual on ent", {"service": "ent"}, "2021-04-06T08:01:00Z", None, ["a1"]),
        _alert("firing", "suspected_attack", "Traffic 8.2x usual on ent: suspected <attack>", {"service": "ent"},
               "2021-04-06T08:01:00Z", None, ["a1", "a2"]),
        _alert("resolved", "suspected_attack", "Traffic 8.2x usual on ent: suspected <attack>", {"service": "ent"},
               "2021-04-06T08:01:00Z", "2021-04-06T08:20:00Z", ["a1", "a2", "a3"]),
        _alert("firing", "disk_failure", "Drive SN1 on db-1 fails", {"host": "db-1", "disk": "SN1"},
               "2021-04-06T08:30:00Z", None, ["a5"]),
    ]
    return _write(tmp_path / "bt", anomalies, alerts)


def test_incidents_follow_their_records(synthetic):
    data = load_backtest(synthetic)
    attack, disk = data.incidents
    assert (attack.cause, attack.causes, attack.records) == ("suspected_attack", ["unknown", "suspected_attack"], 3)
    assert attack.end is not None and attack.end - attack.start == 19 * 60
    assert attack.anomalies == {"a1", "a2", "a3"}
    assert (disk.cause, disk.end) == ("disk_failure", None)
    assert set(data.entities) == {"ent", "ent/web-1", "quiet", "db-1/SN1"}


def test_page_shows_entities_bands_causes_and_escapes_text(synthetic, tmp_path, capsys):
    out = tmp_path / "r.html"
    assert main(["report", str(synthetic), "--out", str(out), "--timezone", "Europe/Paris"]) == 0
    text = out.read_text(encoding="utf-8")
    for entity in ("ent", "ent/web-1", "db-1/SN1", "quiet"):
        assert f'id="e-{re.sub(r"[^A-Za-z0-9_-]", "_", entity)}"' in text
    assert "suspected &lt;attack&gt;" in text and "<attack>" not in text
    assert "unknown &rarr; suspected_attack" in text  # the cause history of the incident
    assert "expected 99, band 60..160" in text  # a point's tooltip: value, expected and band
    assert "2021-04-06 10:01" in text  # Paris time
    assert "1 entities with anomalies but no alert" in text  # quiet: folded
    assert 'class="band"' in text and 'class="whisker"' in text  # joined and lone points
    assert "open" in text  # the disk alert never resolved


def test_default_output_is_in_the_folder(synthetic, capsys):
    assert main(["report", str(synthetic)]) == 0
    assert (synthetic / "report.html").is_file()


def test_an_empty_backtest_still_gives_a_page(tmp_path):
    d = _write(tmp_path / "empty", [], [])
    text = render_html(load_backtest(d))
    assert "no alert in this backtest" in text and "no anomaly in this backtest" in text


@pytest.mark.parametrize("setup, needle", [
    (lambda d: None, "no such folder"),
    (lambda d: d.mkdir(), "anomalies.jsonl: no such file"),
    (lambda d: _write(d, [], []).joinpath("anomalies.jsonl").write_text('{"id": 1}\n{oops\n'), "anomalies.jsonl:1: not an anomaly record"),
    (lambda d: _write(d, [], []).joinpath("alerts.jsonl").write_text('\n{oops\n'), "alerts.jsonl:2: not valid JSON"),
])
def test_bad_folders_exit_2_with_one_line(tmp_path, capsys, setup, needle):
    d = tmp_path / "bt"
    setup(d)
    assert main(["report", str(d)]) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1


def test_unknown_timezone_exits_2(synthetic, capsys):
    assert main(["report", str(synthetic), "--timezone", "Mars/Olympus"]) == 2
    assert "unknown time zone" in capsys.readouterr().err
