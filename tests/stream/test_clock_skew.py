"""A wrong clock inside a recorded incident day: the incidents are still found, with their causes.

The recording is the simulator's incident day (the session's ``sim_recording``),
replayed through the Engine the way ``tocsin backtest`` does (blocks of the
file decoded, requests and disk readings merged by event time), with an
:class:`EventTimeGuard` on each stream before the merge, so a rejected event
reaches neither the windows nor the merge.
"""

from __future__ import annotations

import gzip

import numpy as np
import orjson
import pytest

from detectors.config import DetectorsConfig
from detectors.events import decode_disk, decode_requests
from detectors.timeguard import EventTimeGuard
from detectors.timeutil import parse_ts
from stream.engine import Engine
from stream.files import iter_blocks, iter_lines

FUTURE = "2999-01-01T00:00:00Z"
SKEWED_HOST = "ma-classe-a-la-maison-web-3"  # a host of the service that saturates
SIX_HOURS = 6 * 3600.0


def replay(requests, disks, clock=lambda: 2e9):
    """(alerts fired and resolved as records, rejected requests, rejected disk readings)."""
    engine = Engine()
    c = DetectorsConfig().time_guard
    rguard = EventTimeGuard(c.max_ahead, c.max_behind, c.span, clock=clock)
    # disk readings come in rounds (every 10 minutes here): in a replay the next round is that far ahead of the last
    dguard = EventTimeGuard(c.disk_max_ahead, c.max_behind, c.span, clock=clock)
    dead_disks = []
    readings = []
    for n, line in iter_lines(disks):
        ev = decode_disk(line)
        why = dguard.check(ev.ts, 0)
        if why is None:
            readings.append(ev)
        else:
            dead_disks.append((n, why))
    alerts = []
    dead_requests = []
    di = 0

    def emit(o):
        alerts.extend(a.to_record() for a in o.alerts)

    for n0, lines in iter_blocks(requests):
        evs, errors = decode_requests([x for x in lines if x.strip()])
        assert not errors
        evs, rejected = rguard.split(evs, 0)
        dead_requests.extend((n0 + i, why) for i, why in rejected)
        ts = evs.ts_array
        i = 0
        # the disk readings before the first request later than each of them, as backtest merges them
        while di < len(readings) and len(ts) and readings[di].ts < ts[-1]:
            k = int(np.argmax(ts > readings[di].ts))
            if k > i:
                emit(engine.process_requests(evs[i:k]))
                i = k
            while di < len(readings) and readings[di].ts < ts[k]:
                emit(engine.process_disk(readings[di]))
                di += 1
        if i < len(evs):
            emit(engine.process_requests(evs[i:]))
    while di < len(readings):
        emit(engine.process_disk(readings[di]))
        di += 1
    emit(engine.flush())
    return alerts, dead_requests, dead_disks


def incidents_found(truth, alerts):
    """As tests/stream/test_backtest.py: each incident alerted in time with its cause; the alerts nothing explains."""
    fired = [a for a in alerts if a["status"] == "firing"]
    explained = set()
    missed = []
    for t in truth:
        start = parse_ts(t["start"])
        delay = 300 if t["cause"] == "disk_failure" else 120
        hits = [a for a in fired if a["cause"] == t["cause"] and a["labels"]["service"] == t["service"]
                and start - 60 <= parse_ts(a["starts_at"]) <= start + delay]
        if not hits:
            missed.append(t["id"])
        explained.update(a["fingerprint"] for a in hits)
        if t["cause"] == "disk_failure":
            early = [a for a in fired if a["labels"]["disk"] == t["disk"] and a["labels"]["service"] is None]
            explained.update(a["fingerprint"] for a in early)
    return missed, [a["title"] for a in fired if a["fingerprint"] not in explained]


@pytest.fixture(scope="module")
def truth(sim_recording):
    return orjson.loads((sim_recording / "truth.json").read_bytes())


@pytest.fixture(scope="module")
def incident_day(truth):
    """(start of the incident day's first incident, local midnight before it) as epoch seconds."""
    first = min(parse_ts(t["start"]) for t in truth)
    return first, first - 8 * 3600  # 08:00 local -> 00:00 local


def rewrite(src, dst, change):
    """Copy a JSONL(.gz) file line by line through change(dict) -> list of dicts."""
    opener = gzip.open if str(src).endswith(".gz") else open
    with opener(src, "rb") as fi, gzip.open(dst, "wb", compresslevel=1) as fo:
        for line in fi:
            if line.strip():
                for ev in change(orjson.loads(line)):
                    fo.write(orjson.dumps(ev) + b"\n")


def test_one_event_dated_2999_inside_the_incident_day(sim_recording, truth, incident_day, tmp_path):
    first, _ = incident_day
    at = first + 1800  # inside the saturation
    done = {"req": False, "disk": False}

    def add_future(key, extra):
        def change(ev):
            out = [ev]
            if not done[key] and parse_ts(ev["ts"]) >= at:
                done[key] = True
                out.append({**ev, **extra, "ts": FUTURE})
            return out
        return change

    req = tmp_path / "requests.jsonl.gz"
    disks = tmp_path / "disks.jsonl.gz"
    rewrite(sim_recording / "requests.jsonl.gz", req, add_future("req", {"service": "ent-idf"}))
    rewrite(sim_recording / "disks.jsonl", disks, add_future("disk", {}))
    assert done == {"req": True, "disk": True}

    alerts, dead_req, dead_disk = replay(req, disks)
    assert len(dead_req) == 1 and "2999-01-01" in dead_req[0][1] and "ahead" in dead_req[0][1]
    assert len(dead_disk) == 1 and "2999-01-01" in dead_disk[0][1]
    missed, false = incidents_found(truth, alerts)
    assert missed == [] and false == []
    assert all(parse_ts(a["starts_at"]) < at + 86400 for a in alerts)


def test_one_host_six_hours_ahead_on_the_incident_day(sim_recording, truth, incident_day, tmp_path):
    _, midnight = incident_day

    def skew(ev):
        t = parse_ts(ev["ts"])
        if ev.get("host") == SKEWED_HOST and t >= midnight:
            ev["ts"] = t + SIX_HOURS
        return [ev]

    req = tmp_path / "requests.jsonl.gz"
    disks = tmp_path / "disks.jsonl.gz"
    rewrite(sim_recording / "requests.jsonl.gz", req, skew)
    rewrite(sim_recording / "disks.jsonl", disks, skew)

    alerts, dead_req, dead_disk = replay(req, disks)
    with gzip.open(req, "rb") as fh:
        skewed = sum(1 for line in fh if SKEWED_HOST.encode() in line and parse_ts(orjson.loads(line)["ts"]) >= midnight + SIX_HOURS)
    # the skewed host loses its own events and nothing else
    assert len(dead_req) == skewed
    assert all("ahead" in why for _, why in dead_req + dead_disk)
    assert dead_disk  # its drives' readings too
    missed, false = incidents_found(truth, alerts)
    assert missed == []
    assert false == []
    causes = {a["cause"] for a in alerts if a["status"] == "firing"}
    assert "unknown" not in causes
