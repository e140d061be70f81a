"""A wrong clock inside a recorded incident day: the incidents are still found, with their causes.

The recording is the simulator's incident day (the session's ``sim_recording``),
replayed through the Engine the way ``tocsin backtest`` does (blocks of the
file decoded, requests and disk readings merged by event time), with an
:class:`EventTimeGuard` on each stream before the merge, so a rejected event
reaches neither the windows nor the merge.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import orjson
import pytest

from detectors.timeutil import parse_ts
from stream.backtest import run_backtest

# Far ahead but inside the decoder's plausible years (2000-2099; 2999 is refused
# by the decoder itself): the guard's to catch.
FUTURE = "2099-01-01T00:00:00Z"
SKEWED_HOST = "ma-classe-a-la-maison-web-3"  # a host of the service that saturates
SIX_HOURS = 6 * 3600.0


def replay(requests, disks, out=None):
    """``tocsin backtest``'s path (the runner with its event-time guards) on the two files:
    (alerts as records, [(line, reason)] of the requests dead-lettered, the same of the disk readings)."""
    out = out or Path(str(requests) + ".out")
    run_backtest(str(requests), str(disks), out)
    alerts = [orjson.loads(x) for x in (out / "alerts.jsonl").read_bytes().splitlines()]
    dead = [orjson.loads(x) for x in (out / "dead-letter.jsonl").read_bytes().splitlines()]
    dead_requests = [(d["source"]["line"], d["error"]) for d in dead if d["source"]["file"] == str(requests)]
    dead_disks = [(d["source"]["line"], d["error"]) for d in dead if d["source"]["file"] == str(disks)]
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


def test_one_event_dated_far_ahead_inside_the_incident_day(sim_recording, truth, incident_day, tmp_path):
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
    assert len(dead_req) == 1 and "2099-01-01" in dead_req[0][1] and "ahead" in dead_req[0][1]
    assert len(dead_disk) == 1 and "2099-01-01" in dead_disk[0][1]
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
    # Its drives' readings are within disk_max_ahead (two days: readings come in
    # rounds up to a day apart) and update only their own drives: not rejected.
    assert dead_disk == []
    missed, false = incidents_found(truth, alerts)
    assert missed == []
    assert false == []
    causes = {a["cause"] for a in alerts if a["status"] == "firing"}
    assert "unknown" not in causes
