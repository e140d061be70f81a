"""``tocsin report``: a backtest folder as one self-contained HTML page.

The page is what an SRE reads to tune a detector: per entity (``service``,
``service/host``, ``host/disk``...) and signal, the flagged observations with
their value, expected value and band, over time, under the alerts they led to
(shaded spans named by cause); a summary of alerts by cause; the incidents
with their evidence; and, per detector and signal, how many anomalies end up
behind an alert and how their scores spread, which says which threshold to
move. ``anomalies.jsonl`` holds flagged observations only, so the charts show
those points (with their band), not the whole signal.

Everything is inline (CSS and SVG drawn here): no script, no font, no CDN.
"""

from __future__ import annotations

import html
import itertools
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson

from detectors.timeutil import parse_ts

from ..files import InputFileError, iter_lines

__all__ = ["Incident", "ReportData", "load_backtest", "render_html", "write_report"]

CAUSE_COLORS = {
    "capacity_saturation": "#e8a202",
    "suspected_attack": "#e15759",
    "disk_failure": "#8e6bbf",
    "unknown": "#8c939a",
}
SEVERITY_COLORS = {"info": "#4e79a7", "warning": "#f28e2b", "critical": "#b8262b"}
DETECTOR_KNOBS = {
    "latency": "detectors.latency.threshold_z, min_ratio, min_ratio_p50, min_count",
    "traffic": "detectors.traffic.threshold_z, min_ratio, warmup",
    "disk": "detectors.disk.threshold, warmup",
}
_MAX_POINTS = 1500  # per chart; beyond, the highest score per pixel column is kept
_CLIP_IDS = itertools.count(1)


# -- data --------------------------------------------------------------------
@dataclass(slots=True)
class Point:
    id: str
    ts: float
    detector: str
    signal: str
    value: float
    expected: float
    lower: float
    upper: float
    score: float
    severity: str


@dataclass(slots=True)
class Incident:
    """One alert from firing to resolved (all the records of one fingerprint and start)."""

    fingerprint: str
    start: float
    end: float | None
    cause: str
    severity: str
    title: str
    confidence: float
    labels: dict[str, Any]
    evidence: list[dict[str, Any]]
    anomalies: set[str] = field(default_factory=set)
    causes: list[str] = field(default_factory=list)  # cause history, in order
    records: int = 0


@dataclass(slots=True)
class ReportData:
    folder: Path
    entities: dict[str, list[Point]]  # entity key -> points, by time
    entity_fields: dict[str, dict[str, Any]]
    incidents: list[Incident]
    alert_records: list[dict[str, Any]]
    # What the receivers would have been sent (notifications.jsonl; empty for older folders).
    notifications: list[dict[str, Any]] = field(default_factory=list)

    @property
    def points(self) -> Iterable[Point]:
        for pts in self.entities.values():
            yield from pts


def entity_key(e: dict[str, Any]) -> str:
    """``service``, ``service/endpoint``, ``service/host``, ``host`` or ``host/disk``."""
    service, endpoint, host, disk = (e.get(k) for k in ("service", "endpoint", "host", "disk"))
    if service:
        if endpoint:
            return f"{service}{endpoint if endpoint.startswith('/') else '/' + endpoint}"
        return f"{service}/{host}" if host else service
    if host:
        return f"{host}/{disk}" if disk else host
    return "(no entity)"


def _read_jsonl(path: Path) -> Iterable[tuple[int, dict[str, Any]]]:
    for n, line in iter_lines(path):
        try:
            rec = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise InputFileError(f"{path}:{n}: not valid JSON: {exc}") from None
        if not isinstance(rec, dict):
            raise InputFileError(f"{path}:{n}: expected a JSON object")
        yield n, rec


def load_backtest(folder: str | Path) -> ReportData:
    """Read ``anomalies.jsonl`` and ``alerts.jsonl`` of a backtest folder."""
    d = Path(folder)
    if not d.is_dir():
        raise InputFileError(f"{d}: no such folder (give the --out folder of tocsin backtest)")
    a_path, l_path = d / "anomalies.jsonl", d / "alerts.jsonl"
    for p in (a_path, l_path):
        if not p.is_file():
            raise InputFileError(f"{p}: no such file (is {d} the --out folder of tocsin backtest?)")
    entities: dict[str, list[Point]] = defaultdict(list)
    fields: dict[str, dict[str, Any]] = {}
    for n, r in _read_jsonl(a_path):
        try:
            ent = r["entity"]
            p = Point(
                str(r["id"]), parse_ts(r["ts"]), str(r["detector"]), str(r["signal"]),
                *(float(r[k]) for k in ("value", "expected", "lower", "upper", "score")),
                str(r.get("severity") or "warning"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InputFileError(f"{a_path}:{n}: not an anomaly record ({type(exc).__name__}: {exc})") from None
        key = entity_key(ent)
        entities[key].append(p)
        fields.setdefault(key, ent)
    for pts in entities.values():
        pts.sort(key=lambda p: p.ts)
    records: list[dict[str, Any]] = []
    for n, r in _read_jsonl(l_path):
        try:
            parse_ts(r["starts_at"])
            r["fingerprint"], r["status"], r["cause"]  # noqa: B018 - presence check
        except (KeyError, TypeError, ValueError) as exc:
            raise InputFileError(f"{l_path}:{n}: not an alert record ({type(exc).__name__}: {exc})") from None
        records.append(r)
    notes: list[dict[str, Any]] = []
    n_path = d / "notifications.jsonl"
    if n_path.is_file():
        for n, r in _read_jsonl(n_path):
            try:
                r["_t"] = parse_ts(r["ts"])
                r["receiver"], r["kind"], r["group_key"]  # noqa: B018 - presence check
            except (KeyError, TypeError, ValueError) as exc:
                raise InputFileError(f"{n_path}:{n}: not a notification record ({type(exc).__name__}: {exc})") from None
            notes.append(r)
    return ReportData(d, dict(entities), fields, _incidents(records), records, notes)


def _incidents(records: Sequence[dict[str, Any]]) -> list[Incident]:
    by_key: dict[tuple[str, str], Incident] = {}
    rank = {"info": 0, "warning": 1, "critical": 2}
    for r in records:
        k = (r["fingerprint"], r["starts_at"])
        inc = by_key.get(k)
        if inc is None:
            inc = by_key[k] = Incident(
                r["fingerprint"], parse_ts(r["starts_at"]), None, r["cause"], r.get("severity", "warning"),
                r.get("title", ""), float(r.get("confidence") or 0.0), dict(r.get("labels") or {}),
                list(r.get("evidence") or []),
            )
        inc.records += 1
        inc.anomalies.update(r.get("anomalies") or ())
        if not inc.causes or inc.causes[-1] != r["cause"]:
            inc.causes.append(r["cause"])
        if r["status"] == "resolved":
            inc.end = parse_ts(r["ends_at"]) if r.get("ends_at") else inc.start
        else:
            inc.cause, inc.title = r["cause"], r.get("title", inc.title)
            inc.confidence = float(r.get("confidence") or inc.confidence)
            inc.evidence = list(r.get("evidence") or inc.evidence)
            if rank.get(r.get("severity", ""), 0) > rank.get(inc.severity, 0):
                inc.severity = r["severity"]
    return sorted(by_key.values(), key=lambda i: (i.start, i.fingerprint))


def _linked(ent: dict[str, Any], ids: set[str], incidents: Sequence[Incident]) -> list[Incident]:
    """Incidents about this entity: its anomalies are behind them, or their labels name it.

    A service's alert covers its hosts (``service/host``); an alert on a host
    covers its drives.
    """
    service, host, disk = ent.get("service"), ent.get("host"), ent.get("disk")
    out = []
    for inc in incidents:
        lab = inc.labels
        if service:
            by_label = lab.get("service") == service and (not host or lab.get("host") in (None, host))
        else:
            by_label = bool(host) and lab.get("host") == host and lab.get("disk") in (None, disk)
        if by_label or not inc.anomalies.isdisjoint(ids):
            out.append(inc)
    return out


# -- formatting -----------------------------------------------------------------
def _e(s: object) -> str:
    return html.escape(str(s), quote=True)


class _Clock:
    def __init__(self, tz: ZoneInfo) -> None:
        self.tz = tz

    def dt(self, ts: float) -> datetime:
        return datetime.fromtimestamp(ts, self.tz)

    def full(self, ts: float | None) -> str:
        return "open" if ts is None else self.dt(ts).strftime("%Y-%m-%d %H:%M")

    def offset(self, ts: float) -> float:
        off = self.dt(ts).utcoffset()
        return off.total_seconds() if off else 0.0


def _duration(seconds: float) -> str:
    m = int(round(seconds / 60))
    if m < 60:
        return f"{m} min"
    h, m = divmod(m, 60)
    if h < 48:
        return f"{h} h {m:02d}"
    return f"{h / 24:.1f} d"


def _num(v: float) -> str:
    a = abs(v)
    if a >= 1e6:
        return f"{v / 1e6:.3g}M"
    if a >= 1e4:
        return f"{v / 1e3:.3g}k"
    if a >= 100 or v == int(v):
        return f"{v:.0f}"
    if a >= 1:
        return f"{v:.3g}"
    return f"{v:.3g}"


def _quantile(xs: Sequence[float], q: float) -> float:
    if not xs:
        return math.nan
    s = sorted(xs)
    i = (len(s) - 1) * q
    lo, hi = math.floor(i), math.ceil(i)
    return s[lo] + (s[hi] - s[lo]) * (i - lo)


def _nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.ceil(lo / step) * step
    return [start + i * step for i in range(int((hi - start) / step + 1e-9) + 1)]


_TIME_STEPS = (60, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800)


def _time_ticks(lo: float, hi: float, clock: _Clock, n: int = 9) -> list[float]:
    step = next((s for s in _TIME_STEPS if (hi - lo) / s <= n), _TIME_STEPS[-1])
    off = clock.offset(lo)
    t = math.ceil((lo + off) / step) * step - off
    out = []
    while t <= hi:
        out.append(t)
        t += step
    return out


def _time_label(ts: float, span: float, clock: _Clock) -> str:
    d = clock.dt(ts)
    if span > 86400 * 1.5:
        return d.strftime("%a %d %H:%M") if (d.hour or d.minute) else d.strftime("%a %d %b")
    return d.strftime("%H:%M")


# -- SVG ---------------------------------------------------------------------------
@dataclass(slots=True)
class _Frame:
    x0: float  # time domain
    x1: float
    y0: float
    y1: float
    w: int = 1280
    h: int = 190
    left: int = 64
    right: int = 16
    top: int = 22
    bottom: int = 24

    def x(self, t: float) -> float:
        return self.left + (t - self.x0) / (self.x1 - self.x0) * (self.w - self.left - self.right)

    def y(self, v: float) -> float:
        return self.top + (1 - (v - self.y0) / (self.y1 - self.y0)) * (self.h - self.top - self.bottom)


def _axes(f: _Frame, clock: _Clock, y_ticks: Sequence[float], unit: str = "") -> list[str]:
    out = []
    for v in y_ticks:
        y = f.y(v)
        out.append(f'<line class="grid" x1="{f.left}" x2="{f.w - f.right}" y1="{y:.1f}" y2="{y:.1f}"/>')
        out.append(f'<text class="ytick" x="{f.left - 6}" y="{y + 4:.1f}">{_e(_num(v))}</text>')
    span = f.x1 - f.x0
    for t in _time_ticks(f.x0, f.x1, clock):
        x = f.x(t)
        out.append(f'<line class="tick" x1="{x:.1f}" x2="{x:.1f}" y1="{f.h - f.bottom}" y2="{f.h - f.bottom + 4}"/>')
        out.append(f'<text class="xtick" x="{x:.1f}" y="{f.h - 6}">{_e(_time_label(t, span, clock))}</text>')
    out.append(f'<line class="axis" x1="{f.left}" x2="{f.w - f.right}" y1="{f.h - f.bottom}" y2="{f.h - f.bottom}"/>')
    if unit:
        out.append(f'<text class="unit" x="{f.left}" y="{f.top - 8}">{_e(unit)}</text>')
    return out


def _spans(f: _Frame, incidents: Sequence[Incident], clock: _Clock, labels: bool = True) -> list[str]:
    out = []
    for inc in incidents:
        end = inc.end if inc.end is not None else f.x1
        a, b = max(f.x(inc.start), f.left), min(f.x(end), f.w - f.right)
        if b < f.left or a > f.w - f.right:
            continue
        b = max(b, a + 2)
        color = CAUSE_COLORS.get(inc.cause, CAUSE_COLORS["unknown"])
        tip = f"{inc.title}\n{inc.cause}, {inc.severity}, confidence {inc.confidence:.2f}\n{clock.full(inc.start)} .. {clock.full(inc.end)}"
        out.append(
            f'<rect x="{a:.1f}" y="{f.top}" width="{b - a:.1f}" height="{f.h - f.top - f.bottom}" '
            f'fill="{color}" fill-opacity="0.16" stroke="{color}" stroke-opacity="0.6"><title>{_e(tip)}</title></rect>'
        )
        if labels:
            out.append(f'<text class="span" x="{a + 3:.1f}" y="{f.top + 11}" fill="{color}">{_e(inc.cause)}</text>')
    return out


def _decimate(points: list[Point], f: _Frame) -> list[Point]:
    if len(points) <= _MAX_POINTS:
        return points
    best: dict[int, Point] = {}
    for p in points:
        col = int(f.x(p.ts))
        q = best.get(col)
        if q is None or p.score > q.score:
            best[col] = p
    return sorted(best.values(), key=lambda p: p.ts)


def _signal_chart(
    points: list[Point], x0: float, x1: float, incidents: Sequence[Incident], clock: _Clock,
    width: int = 1280, caption: str = "",
) -> str:
    points = [p for p in points if x0 <= p.ts <= x1]
    vals = [v for p in points for v in (p.value, p.expected, p.lower, p.upper) if math.isfinite(v)]
    lo, hi = (min(vals), max(vals)) if vals else (0.0, 1.0)
    if 0 <= lo < 0.25 * hi:
        lo = 0.0
    pad = (hi - lo) * 0.08 or max(abs(hi) * 0.1, 1.0)
    ticks = _nice_ticks(lo, hi + pad)
    f = _Frame(x0, x1, min(ticks[0], lo), max(ticks[-1], hi + pad), w=width)
    pts = _decimate(points, f)
    clip = f"clip{next(_CLIP_IDS)}"
    out = [f'<svg class="chart" viewBox="0 0 {f.w} {f.h}" width="{f.w}" height="{f.h}" role="img">',
           f'<clipPath id="{clip}"><rect x="{f.left}" y="0" width="{f.w - f.left - f.right}" height="{f.h}"/></clipPath>',
           f'<g clip-path="url(#{clip})">']
    out += _spans(f, incidents, clock)
    out.append("</g>")
    signal = points[0].signal if points else ""
    out += _axes(f, clock, ticks, signal + (f"  ({caption})" if caption else ""))
    # Band and expected: consecutive flagged points closer than a gap are joined.
    gap = max((x1 - x0) / 60, 180.0)
    segs: list[list[Point]] = []
    for p in pts:
        if segs and p.ts - segs[-1][-1].ts <= gap:
            segs[-1].append(p)
        else:
            segs.append([p])
    for sg in segs:
        if len(sg) == 1:
            p = sg[0]
            x = f.x(p.ts)
            out.append(f'<line class="whisker" x1="{x:.1f}" x2="{x:.1f}" y1="{f.y(p.lower):.1f}" y2="{f.y(p.upper):.1f}"/>')
            out.append(f'<line class="expected-tick" x1="{x - 4:.1f}" x2="{x + 4:.1f}" y1="{f.y(p.expected):.1f}" y2="{f.y(p.expected):.1f}"/>')
            continue
        upper = " ".join(f"{f.x(p.ts):.1f},{f.y(p.upper):.1f}" for p in sg)
        lower = " ".join(f"{f.x(p.ts):.1f},{f.y(p.lower):.1f}" for p in reversed(sg))
        out.append(f'<polygon class="band" points="{upper} {lower}"/>')
        exp = " ".join(f"{f.x(p.ts):.1f},{f.y(p.expected):.1f}" for p in sg)
        out.append(f'<polyline class="expected" points="{exp}"/>')
    for p in pts:
        color = SEVERITY_COLORS.get(p.severity, SEVERITY_COLORS["warning"])
        r = 2.2 + 2.3 * max(0.0, min(1.0, p.score))
        tip = (f"{clock.full(p.ts)}  {p.signal} = {_num(p.value)}\nexpected {_num(p.expected)}, "
               f"band {_num(p.lower)}..{_num(p.upper)}\nscore {p.score:.3f}, {p.severity}, {p.detector}\nid {p.id}")
        out.append(f'<circle cx="{f.x(p.ts):.1f}" cy="{f.y(p.value):.1f}" r="{r:.1f}" fill="{color}">'
                   f"<title>{_e(tip)}</title></circle>")
    out.append("</svg>")
    return "".join(out)


def _overview(data: ReportData, x0: float, x1: float, clock: _Clock) -> str:
    """All incidents as bars over the whole run, and anomalies per detector as a histogram."""
    detectors = sorted({p.detector for p in data.points})
    receivers = sorted({n["receiver"] for n in data.notifications})
    lane, hist_h = 22, 46
    h = 30 + (len(data.incidents) + len(receivers)) * lane + len(detectors) * (hist_h + 8) + 30
    f = _Frame(x0, x1, 0, 1, h=h, top=18, bottom=24, left=210)
    out = [f'<svg class="chart" viewBox="0 0 {f.w} {f.h}" width="{f.w}" height="{f.h}" role="img">']
    out += _axes(f, clock, [])
    y = f.top + 4
    for inc in data.incidents:
        color = CAUSE_COLORS.get(inc.cause, CAUSE_COLORS["unknown"])
        end = inc.end if inc.end is not None else x1
        a = f.x(inc.start)
        b = max(f.x(end), a + 3)
        tip = f"{inc.title}\n{clock.full(inc.start)} .. {clock.full(inc.end)}"
        out.append(f'<rect x="{a:.1f}" y="{y}" width="{b - a:.1f}" height="{lane - 6}" rx="3" fill="{color}">'
                   f"<title>{_e(tip)}</title></rect>")
        who = "/".join(str(v) for v in (inc.labels.get("service"), inc.labels.get("host"), inc.labels.get("disk")) if v)
        who = who if len(who) <= 27 else who[:26] + "\u2026"
        out.append(f'<text class="lane" x="{f.left - 6}" y="{y + 12}">{_e(who)}</text>')
        text = f"{inc.cause}: {inc.title}"
        room_right, room_in, room_left = f.w - f.right - b - 4, b - a - 8, a - f.left - 4
        best = max(room_right, room_in, room_left)
        chars = max(8, int(best / 6.2))
        text = text if len(text) <= chars else text[: chars - 1] + "\u2026"
        if best == room_right:
            out.append(f'<text class="bar" x="{b + 4:.1f}" y="{y + 12}">{_e(text)}</text>')
        elif best == room_in:
            out.append(f'<text class="bar" x="{a + 6:.1f}" y="{y + 12}" style="fill:#fff">{_e(text)}</text>')
        else:
            out.append(f'<text class="bar" x="{a - 4:.1f}" y="{y + 12}" style="text-anchor:end">{_e(text)}</text>')
        y += lane
    for r in receivers:
        out.append(f'<text class="lane" x="{f.left - 6}" y="{y + 12}">{_e(r)} (notified)</text>')
        for n in data.notifications:
            if n["receiver"] == r:
                xx = f.x(n["_t"])
                color = NOTIFICATION_COLORS.get(n["kind"], "#888")
                tip = f"{n['kind']} to {r} at {clock.full(n['_t'])}\n{n['group_key']}"
                out.append(f'<rect x="{xx - 1.5:.1f}" y="{y}" width="3" height="{lane - 6}" fill="{color}">'
                           f"<title>{_e(tip)}</title></rect>")
        y += lane
    bins = 120
    width = (x1 - x0) / bins
    for det in detectors:
        counts = [0] * bins
        for p in data.points:
            if p.detector == det:
                counts[min(bins - 1, max(0, int((p.ts - x0) / width)))] += 1
        top = max(counts) or 1
        y += 8
        out.append(f'<text class="lane" x="{f.left - 6}" y="{y + hist_h / 2 + 4:.1f}">{_e(det)} anomalies</text>')
        out.append(f'<text class="ytick" x="{f.w - f.right}" y="{y + 9}">max {top}/bin</text>')
        bw = max(1.0, f.x(x0 + width) - f.left - 1)
        for i, c in enumerate(counts):
            if c:
                hh = max(1.5, c / top * hist_h)
                out.append(f'<rect class="hist" x="{f.x(x0 + i * width):.1f}" y="{y + hist_h - hh:.1f}" width="{bw:.1f}" height="{hh:.1f}"/>')
        y += hist_h
    out.append("</svg>")
    return "".join(out)


def _score_hist(scores_in: Sequence[float], scores_out: Sequence[float]) -> str:
    """Scores of anomalies during an alert (dark) and outside any (light), 10 bins."""
    bins = 10
    w, h, bw = 220, 56, 20
    a = [0] * bins
    b = [0] * bins
    for s, arr in ((scores_in, a), (scores_out, b)):
        for v in s:
            arr[min(bins - 1, max(0, int(v * bins)))] += 1
    top = max((x + y for x, y in zip(a, b, strict=True)), default=0) or 1
    out = [f'<svg viewBox="0 0 {w} {h + 14}" width="{w}" height="{h + 14}" role="img">']
    for i in range(bins):
        x = 10 + i * bw
        ha, hb = a[i] / top * h, b[i] / top * h
        rng = f"score {i / bins:.1f}-{(i + 1) / bins:.1f}"
        out.append(f'<rect class="in" x="{x}" y="{h - ha:.1f}" width="{bw - 2}" height="{ha:.1f}"><title>{rng}: {a[i]} during an alert</title></rect>')
        out.append(f'<rect class="out" x="{x}" y="{h - ha - hb:.1f}" width="{bw - 2}" height="{hb:.1f}"><title>{rng}: {b[i]} outside alerts</title></rect>')
    out.append(f'<line class="axis" x1="8" x2="{12 + bins * bw}" y1="{h + 0.5}" y2="{h + 0.5}"/>')
    out.append(f'<text x="10" y="{h + 12}" style="text-anchor:start">score 0</text>')
    out.append(f'<text x="{10 + bins * bw}" y="{h + 12}" style="text-anchor:end">1</text>')
    out.append("</svg>")
    return "".join(out)


# -- page ----------------------------------------------------------------------------
_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d2329;margin:24px 32px;background:#fff}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #dde1e5;padding-bottom:4px}
h3{font-size:15px;margin:18px 0 4px}.muted{color:#66707a}.small{font-size:12px}
table{border-collapse:collapse;margin:6px 0 10px}th,td{border:1px solid #dde1e5;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f3f5f7}td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}td.t{white-space:nowrap}
.badge{display:inline-block;padding:0 6px;border-radius:3px;color:#fff;font-size:12px;font-weight:600;white-space:nowrap}
.sev-critical{color:#b8262b;font-weight:600}.sev-warning{color:#c46a12}
.legend span{margin-right:16px;white-space:nowrap}.sw{display:inline-block;width:12px;height:12px;vertical-align:-1px;margin-right:4px;border-radius:2px}
svg text{font:11px system-ui,sans-serif;fill:#4a535c}
svg .ytick{text-anchor:end}svg .xtick{text-anchor:middle}svg .unit{font-weight:600;fill:#1d2329}
svg .span{font-weight:600;font-size:11px;paint-order:stroke;stroke:#fff;stroke-width:3px;stroke-opacity:.85}svg .lane{text-anchor:end;font-weight:600}svg .bar{fill:#1d2329}
svg .grid{stroke:#eef0f2}svg .axis,svg .tick{stroke:#9aa3ab}
svg .band{fill:#4e79a7;fill-opacity:.16;stroke:#4e79a7;stroke-opacity:.35;stroke-width:.8}
svg .whisker{stroke:#4e79a7;stroke-opacity:.45;stroke-width:4;stroke-linecap:round}
svg .expected{fill:none;stroke:#2f5f8f;stroke-width:1.4;stroke-dasharray:5 3}
svg .expected-tick{stroke:#2f5f8f;stroke-width:2}
svg .hist{fill:#6b7f95}svg .in{fill:#2f5f8f}svg .out{fill:#b9c7d6}
section.entity{margin-bottom:18px}.pair{display:flex;gap:8px}
details summary{cursor:pointer;font-weight:600;margin:10px 0}ul.ev{margin:0;padding-left:18px}
"""


def _badge(cause: str) -> str:
    return f'<span class="badge" style="background:{CAUSE_COLORS.get(cause, CAUSE_COLORS["unknown"])}">{_e(cause)}</span>'


def _legend() -> str:
    parts = [f'<span><i class="sw" style="background:{c};opacity:.5"></i>{_e(k)} alert</span>' for k, c in CAUSE_COLORS.items()]
    parts += [f'<span><i class="sw" style="background:{c};border-radius:6px"></i>{_e(k)} anomaly</span>'
              for k, c in SEVERITY_COLORS.items()]
    parts.append('<span><i class="sw" style="background:#4e79a7;opacity:.3"></i>expected band (lower..upper)</span>')
    parts.append('<span><i class="sw" style="background:none;border-top:2px dashed #2f5f8f;height:0"></i>expected</span>')
    return f'<p class="legend small">{"".join(parts)}</p>'


def _zoom(incidents: Sequence[Incident], x0: float, x1: float) -> tuple[float, float] | None:
    """A window around the incidents when they fill little of [x0, x1]."""
    if not incidents:
        return None
    a = min(i.start for i in incidents)
    b = max(i.end if i.end is not None else x1 for i in incidents)
    pad = max(1800.0, 0.5 * (b - a))
    z0, z1 = max(x0, a - pad), min(x1, b + pad)
    return (z0, z1) if (z1 - z0) < 0.4 * (x1 - x0) else None


def render_html(data: ReportData, timezone: str = "UTC") -> str:
    """The report page of a loaded backtest folder."""
    try:
        clock = _Clock(ZoneInfo(timezone))
    except (ZoneInfoNotFoundError, ValueError):
        raise InputFileError(f"--timezone {timezone!r}: unknown time zone") from None
    incidents = data.incidents
    all_pts = list(data.points)
    times = [p.ts for p in all_pts] + [i.start for i in incidents] + [i.end for i in incidents if i.end is not None]
    x0, x1 = (min(times), max(times)) if times else (0.0, 3600.0)
    if x1 - x0 < 600:
        x1 = x0 + 600
    linked = {k: _linked(data.entity_fields[k], {p.id for p in pts}, incidents) for k, pts in data.entities.items()}
    # "During an alert": listed by an alert, or flagged while an alert about its entity was open.
    during: set[str] = set().union(*(i.anomalies for i in incidents)) if incidents else set()
    for k, pts in data.entities.items():
        spans = [(i.start, i.end if i.end is not None else x1) for i in linked[k]]
        during.update(p.id for p in pts if any(a <= p.ts <= b for a, b in spans))

    h: list[str] = []
    w = h.append
    w("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">")
    w(f"<title>tocsin report: {_e(data.folder.name or data.folder)}</title><style>{_CSS}</style></head><body>")
    w(f"<h1>tocsin backtest report</h1><p class=\"muted\">{_e(data.folder)} &middot; {clock.full(x0)} to {clock.full(x1)} "
      f"({_e(timezone)}) &middot; {len(all_pts)} anomalies on {len(data.entities)} entities &middot; {len(incidents)} "
      f"incidents from {len(data.alert_records)} alert records</p>")

    w("<h2>Overview</h2>")
    w(_legend())
    w(_overview(data, x0, x1, clock))

    # Alerts by cause
    w("<h2>Alerts by cause</h2><table><tr><th>cause</th><th>incidents</th><th>alert records</th><th>open at the end</th>"
      "<th>critical</th><th>total duration</th><th>mean confidence</th><th>anomalies listed</th></tr>")
    by_cause: dict[str, list[Incident]] = defaultdict(list)
    for inc in incidents:
        by_cause[inc.cause].append(inc)
    for cause in sorted(by_cause, key=lambda c: (-len(by_cause[c]), c)):
        incs = by_cause[cause]
        dur = sum((i.end if i.end is not None else x1) - i.start for i in incs)
        w(f"<tr><td>{_badge(cause)}</td><td class=n>{len(incs)}</td><td class=n>{sum(i.records for i in incs)}</td>"
          f"<td class=n>{sum(i.end is None for i in incs)}</td><td class=n>{sum(i.severity == 'critical' for i in incs)}</td>"
          f"<td class=n>{_duration(dur)}</td><td class=n>{sum(i.confidence for i in incs) / len(incs):.2f}</td>"
          f"<td class=n>{sum(len(i.anomalies) for i in incs)}</td></tr>")
    if not incidents:
        w('<tr><td colspan="8" class="muted">no alert in this backtest</td></tr>')
    w("</table>")

    # Incidents
    w("<h2>Incidents</h2><table><tr><th>#</th><th>cause</th><th>severity</th><th>start</th><th>end</th><th>duration</th>"
      "<th>confidence</th><th>labels</th><th>title and evidence</th></tr>")
    for n, inc in enumerate(incidents, 1):
        labels = "<br>".join(f"{_e(k)}={_e(v)}" for k, v in inc.labels.items() if v is not None)
        history = (f'<div class="small muted">cause: {" &rarr; ".join(_e(c) for c in inc.causes)}</div>'
                   if len(inc.causes) > 1 else "")
        ev = "".join(f"<li>{_e(e.get('text', ''))}</li>" for e in inc.evidence)
        dur = _duration((inc.end if inc.end is not None else x1) - inc.start) + ("" if inc.end is not None else "+")
        w(f"<tr><td class=n>{n}</td><td>{_badge(inc.cause)}{history}</td><td class=\"sev-{_e(inc.severity)}\">{_e(inc.severity)}</td>"
          f"<td class=t>{clock.full(inc.start)}</td><td class=t>{clock.full(inc.end)}</td><td class=n>{dur}</td>"
          f"<td class=n>{inc.confidence:.2f}</td><td class=t>{labels}</td><td><b>{_e(inc.title)}</b><ul class=\"ev\">{ev}</ul>"
          f"<span class=\"small muted\">{len(inc.anomalies)} anomalies listed, fingerprint {_e(inc.fingerprint)}</span></td></tr>")
    if not incidents:
        w('<tr><td colspan="9" class="muted">no alert in this backtest</td></tr>')
    w("</table>")

    w(_notifications_section(data, clock))

    # Tuning
    w("<h2>Tuning the detectors</h2><p class=\"small\">An anomaly is <b>during an alert</b> when an alert lists it, or "
      "when it was flagged while an alert about its entity (its service, host or drive) was open. The others are "
      "flagged observations that no incident used: where they pile up, on one signal or one entity, the detector is "
      "too sensitive there (raise its threshold or ratio, or override it for that service). An incident with few "
      "anomalies, or scores of alerting anomalies close to the threshold, says the opposite. Scores: dark = during an "
      "alert, light = outside.</p>")
    w("<table><tr><th>detector</th><th>signal</th><th>anomalies</th><th>critical</th><th>during an alert</th>"
      "<th>outside alerts</th><th>score p50 / p90</th><th>value / expected<br>(median)</th><th>band width / expected<br>(median)</th>"
      "<th>scores</th><th>knobs</th></tr>")
    groups: dict[tuple[str, str], list[Point]] = defaultdict(list)
    for p in all_pts:
        groups[(p.detector, p.signal)].append(p)
    for (det, sig), pts in sorted(groups.items(), key=lambda kv: (kv[0][0], -len(kv[1]))):
        inside = [p.score for p in pts if p.id in during]
        outside = [p.score for p in pts if p.id not in during]
        scores = [p.score for p in pts]
        ratio = [p.value / p.expected for p in pts if p.expected]
        width = [(p.upper - p.lower) / abs(p.expected) for p in pts if p.expected]
        w(f"<tr><td>{_e(det)}</td><td>{_e(sig)}</td><td class=n>{len(pts)}</td>"
          f"<td class=n>{sum(p.severity == 'critical' for p in pts)}</td>"
          f"<td class=n>{len(inside)} ({100 * len(inside) / len(pts):.0f}%)</td><td class=n>{len(outside)}</td>"
          f"<td class=n>{_quantile(scores, 0.5):.2f} / {_quantile(scores, 0.9):.2f}</td>"
          f"<td class=n>{_num(_quantile(ratio, 0.5)) if ratio else '-'}</td>"
          f"<td class=n>{_num(_quantile(width, 0.5)) if width else '-'}</td>"
          f"<td>{_score_hist(inside, outside)}</td><td class=small><code>{_e(DETECTOR_KNOBS.get(det, ''))}</code></td></tr>")
    if not groups:
        w('<tr><td colspan="11" class="muted">no anomaly in this backtest</td></tr>')
    w("</table>")
    noisy = sorted(((k, sum(p.id not in during for p in pts), len(pts)) for k, pts in data.entities.items()),
                   key=lambda r: (-r[1], r[0]))[:12]
    if noisy and noisy[0][1]:
        w("<h3>Entities with the most anomalies outside alerts</h3><table><tr><th>entity</th><th>outside alerts</th>"
          "<th>all anomalies</th><th>signals (outside alerts)</th></tr>")
        for k, n_out, n in noisy:
            if n_out:
                sigs = Counter(p.signal for p in data.entities[k] if p.id not in during)
                w(f"<tr><td><a href=\"#{_anchor(k)}\">{_e(k)}</a></td><td class=n>{n_out}</td><td class=n>{n}</td>"
                  f"<td>{_e(', '.join(f'{s} {c}' for s, c in sigs.most_common()))}</td></tr>")
        w("</table>")

    # Entities
    w("<h2>Entities</h2><p class=\"small\">One chart per signal: the flagged observations (dots, by severity; size "
      "by score) with the value the detector expected and its band, under the alerts about the entity. Left: the "
      "whole run; right, when the alerts are short: a zoom around them.</p>")
    w(_legend())
    order = sorted(
        data.entities,
        key=lambda k: (not linked[k], min((i.start for i in linked[k]), default=0.0), -len(data.entities[k]), k),
    )
    quiet = [k for k in order if not linked[k]]
    for k in order:
        if quiet and k == quiet[0]:
            w(f"<details><summary>{len(quiet)} entities with anomalies but no alert</summary>")
        pts = data.entities[k]
        incs = linked[k]
        ts = [p.ts for p in pts] + [i.start for i in incs] + [i.end for i in incs if i.end is not None]
        e0, e1 = min(ts), max(ts)
        pad = max((e1 - e0) * 0.03, 300.0)
        e0, e1 = e0 - pad, e1 + pad
        zoom = _zoom(incs, e0, e1)
        kind = "/".join(f for f in ("service", "endpoint", "host", "disk") if data.entity_fields[k].get(f))
        n_during = sum(p.id in during for p in pts)
        badges = " ".join(_badge(c) for c in dict.fromkeys(i.cause for i in incs))
        w(f'<section class="entity" id="{_anchor(k)}"><h3>{_e(k)} <span class="muted small">({_e(kind)}) &middot; '
          f"{len(pts)} anomalies, {n_during} during an alert</span> {badges}</h3>")
        by_signal: dict[str, list[Point]] = defaultdict(list)
        for p in pts:
            by_signal[p.signal].append(p)
        for sig in sorted(by_signal, key=lambda s: (-len(by_signal[s]), s)):
            if zoom:
                w('<div class="pair">')
                w(_signal_chart(by_signal[sig], e0, e1, incs, clock, width=636))
                w(_signal_chart(by_signal[sig], zoom[0], zoom[1], incs, clock, width=636, caption="around the alerts"))
                w("</div>")
            else:
                w(_signal_chart(by_signal[sig], e0, e1, incs, clock))
        w("</section>")
    if quiet:
        w("</details>")
    if not data.entities:
        w('<p class="muted">no anomaly in this backtest</p>')
    w('<p class="small muted">Generated by <code>tocsin report</code>. Hover a dot for its value, band, score and id; '
      "hover a shaded span for its alert.</p></body></html>")
    return "".join(h)


#: Colours of the notification kinds on the overview's receiver lanes.
NOTIFICATION_COLORS = {"new": "#c0392b", "update": "#e67e22", "reminder": "#7f8c8d", "resolve": "#27ae60"}


def _notifications_section(data: ReportData, clock: _Clock, limit: int = 300) -> str:
    """What each receiver would have been sent: counts by kind, then the notifications in order."""
    notes = data.notifications
    out = ["<h2>Notifications</h2>"]
    if not notes:
        out.append('<p class="muted">no notifications.jsonl in this folder, or no notification in it</p>')
        return "".join(out)
    out.append('<p class="small">What each receiver of the route tree would have been sent during the replay '
               "(grouping, group_wait / group_interval / repeat_interval, inhibition and time muting as the worker "
               "applies them). Many reminders or updates for one group is a storm on call would have lived through.</p>")
    kinds = ("new", "update", "reminder", "resolve")
    out.append("<table><tr><th>receiver</th>" + "".join(f"<th>{k}</th>" for k in kinds) + "<th>groups</th></tr>")
    for r in sorted({n["receiver"] for n in notes}):
        mine = [n for n in notes if n["receiver"] == r]
        c = Counter(n["kind"] for n in mine)
        out.append(f"<tr><td>{_e(r)}</td>" + "".join(f"<td class=n>{c.get(k, 0)}</td>" for k in kinds)
                   + f"<td class=n>{len({n['group_key'] for n in mine})}</td></tr>")
    out.append("</table>")
    out.append(f"<details><summary>the {min(limit, len(notes))} first of {len(notes)} notifications</summary>"
               "<table><tr><th>time</th><th>receiver</th><th>kind</th><th>group</th><th>alerts</th></tr>")
    for n in notes[:limit]:
        alerts = "<br>".join(f"{_e(a.get('status', ''))}: {_e(a.get('title', ''))}" for a in n.get("alerts", []))
        out.append(f"<tr><td class=t>{clock.full(n['_t'])}</td><td>{_e(n['receiver'])}</td>"
                   f"<td><span style=\"color:{NOTIFICATION_COLORS.get(n['kind'], '#888')}\">{_e(n['kind'])}</span></td>"
                   f"<td class=small>{_e(n['group_key'])}</td><td class=small>{alerts}</td></tr>")
    out.append("</table></details>")
    return "".join(out)


def _anchor(key: str) -> str:
    return "e-" + "".join(c if c.isalnum() or c in "-_" else "_" for c in key)


def write_report(folder: str | Path, out: str | Path | None = None, timezone: str = "UTC") -> Path:
    """Render ``folder`` (a backtest ``--out`` folder) to ``out`` (default ``folder/report.html``)."""
    data = load_backtest(folder)
    page = render_html(data, timezone)
    path = Path(out) if out else Path(folder) / "report.html"
    try:
        path.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise InputFileError(f"{path}: cannot write: {exc.strerror}") from None
    return path
