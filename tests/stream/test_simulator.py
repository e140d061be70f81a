"""The simulator: deterministic, decodable, time-ordered, and the incidents look like their causes."""

from __future__ import annotations

import argparse
import gzip
import statistics
from collections import Counter, defaultdict
from datetime import UTC, date, datetime

import numpy as np
import orjson
import pytest

from detectors.errors import InvalidEvent
from detectors.events import decode_disk, decode_request
from stream.tools import simulator as sim
from stream.tools.simulator import HOSTING_ASNS, MALFORMED_KINDS, Scenario, generate, ground_truth

SC = Scenario(seed=3, history_days=7, scale=0.2)
DAY = 86400.0


def _parse(ts):
    return decode_request(orjson.dumps({"ts": ts, "service": "x", "status": 200, "latency_ms": 0})).ts


@pytest.fixture(scope="module")
def run():
    """The whole small scenario: decoded requests and disk readings."""
    reqs, disks, raw_ts, ts = [], [], [], []
    for topic, ev in generate(SC):
        raw = orjson.dumps(ev)
        if topic == "requests":
            reqs.append(decode_request(raw))
            ts.append(reqs[-1].ts)
        else:
            assert topic == "disk-health"
            disks.append(decode_disk(raw))
            ts.append(disks[-1].ts)
        raw_ts.append(ev["ts"])
    return reqs, disks, raw_ts, ts


def _truth(cause):
    return next(i for i in ground_truth(SC) if i["cause"] == cause)


def _window(inc):
    return _parse(inc["start"]), _parse(inc["end"])


def _history_days(start, end):
    """History days shaped like the incident day (school days, not Wednesday or holidays)."""
    out = []
    for d in range(1, SC.history_days + 1):
        s, e = start - d * DAY, end - d * DAY
        day = datetime.fromtimestamp(s, UTC).date()
        if day.weekday() in (0, 1, 3, 4) and day not in SC.holidays:
            out.append((s, e))
    assert out
    return out


def test_ground_truth_lists_the_three_causes():
    truth = ground_truth(SC)
    assert [i["cause"] for i in truth] == ["capacity_saturation", "suspected_attack", "disk_failure"]
    assert len({i["service"] for i in truth}) == 3
    for inc in truth:
        assert set(inc) == {"id", "cause", "service", "host", "disk", "start", "end", "description", "kind", "ramp_start"}
        assert inc["start"].endswith("Z") and inc["end"].endswith("Z")
        s, e = _window(inc)
        assert s < e
        assert datetime.fromtimestamp(s, UTC).date() == date(2021, 4, 6)
    disk = _truth("disk_failure")
    assert disk["host"].startswith(disk["service"]) and disk["disk"]
    # distinct times
    windows = sorted(_window(i) for i in truth)
    assert all(a[1] <= b[0] for a, b in zip(windows, windows[1:], strict=False))


def test_concurrent_option_adds_an_overlapping_incident():
    truth = ground_truth(Scenario(history_days=0, scale=0.1, concurrent=True))
    assert len(truth) == 4
    attack = next(i for i in truth if i["cause"] == "suspected_attack")
    extra = truth[3]
    assert extra["service"] != attack["service"]
    assert _parse(extra["start"]) < _parse(attack["end"]) and _parse(attack["start"]) < _parse(extra["end"])


def test_every_event_decodes_in_time_order_with_both_ts_forms(run):
    reqs, disks, raw_ts, ts = run
    assert len(reqs) > 100_000 and len(disks) > 1000
    assert all(a <= b for a, b in zip(ts, ts[1:], strict=False))
    assert SC.start <= ts[0] and ts[-1] < SC.end
    epoch = sum(not isinstance(t, str) for t in raw_ts) / len(raw_ts)
    assert 0.07 < epoch < 0.13


def test_deterministic_for_a_seed_and_slices_match_the_full_run(run):
    lo, hi = "2021-04-06T06:55:00Z", "2021-04-06T07:10:00Z"
    a = list(generate(SC, lo, hi))
    b = list(generate(Scenario(seed=3, history_days=7, scale=0.2), lo, hi))
    c = list(generate(Scenario(seed=4, history_days=7, scale=0.2), lo, hi))
    assert a == b and a != c
    _, _, raw_ts, ts = run
    lo_, hi_ = _parse(lo), _parse(hi)
    full = [r for r, t in zip(raw_ts, ts, strict=True) if lo_ <= t < hi_]
    assert [ev["ts"] for _, ev in a] == full


def test_surge_is_several_times_usual_while_other_services_stay_normal(run):
    reqs, _, _, _ = run
    inc = _truth("capacity_saturation")
    s, e = _window(inc)

    def count(service, lo, hi):
        return sum(1 for r in reqs if r.service == service and lo <= r.ts < hi)

    usual = statistics.mean(count(inc["service"], a, b) for a, b in _history_days(s, e))
    assert count(inc["service"], s, e) > 3.5 * usual
    # the other services at their own usual morning peak
    for svc in {x.name for x in SC.services} - {inc["service"]}:
        hist = statistics.mean(count(svc, a, b) for a, b in _history_days(s, e))
        assert 0.75 < count(svc, s, e) / hist < 1.33, svc
    # real French users, many first seen that day; all endpoints; every host slower, 5xx up
    during = [r for r in reqs if r.service == inc["service"] and s <= r.ts < e]
    assert sum(r.country == "FR" for r in during) / len(during) > 0.9
    assert not {r.asn for r in during} & set(HOSTING_ASNS)
    assert {r.endpoint for r in during} == set(sim.ENDPOINTS)
    before = {r.client_ip for r in reqs if r.service == inc["service"] and r.ts < s - 12 * 3600}
    ips = {r.client_ip for r in during}
    assert len(ips - before) / len(ips) > 0.5
    assert sum(r.status >= 500 for r in during) / len(during) > 0.2
    hist = [r for r in reqs if r.service == inc["service"]
            and any(a <= r.ts < b for a, b in _history_days(s, e))]
    for host in {r.host for r in during}:
        now = np.median([r.latency_ms for r in during if r.host == host and r.status < 500])
        then = np.median([r.latency_ms for r in hist if r.host == host and r.status < 500])
        assert now > 3 * then, host


def test_attack_comes_from_foreign_hosting_networks_on_one_endpoint(run):
    reqs, _, _, _ = run
    inc = _truth("suspected_attack")
    s, e = _window(inc)
    hosting = [r for r in reqs if r.asn in HOSTING_ASNS]
    assert hosting and all(r.service == inc["service"] and s <= r.ts < e for r in hosting)
    assert {r.country for r in hosting} <= {"US", "NL", "DE", "RU", "CN", "SG"}
    assert Counter(r.endpoint for r in hosting).most_common(1)[0] == ("/login", pytest.approx(len(hosting), rel=0.08))
    during = [r for r in reqs if r.service == inc["service"] and s <= r.ts < e]
    assert len(hosting) / len(during) > 0.6
    per_attacker = len(hosting) / len({r.client_ip for r in hosting})
    users = [r for r in during if r.asn not in HOSTING_ASNS]
    per_user = len(users) / len({r.client_ip for r in users})
    assert per_attacker > 10 * per_user
    assert len({r.user_agent for r in hosting}) <= 5
    assert sum(r.status >= 500 for r in during) / len(during) > 0.2


def test_failing_disk_readings_and_only_its_host_slows_down(run):
    reqs, disks, _, _ = run
    inc = _truth("disk_failure")
    s, e = _window(inc)
    mine = [d for d in disks if d.disk == inc["disk"]]
    assert all(d.host == inc["host"] for d in mine)
    smart5 = [d.smart["5"] for d in mine]
    assert smart5 == sorted(smart5) and smart5[-1] > 100
    two_days_before = [d for d in mine if d.ts < s - 2 * DAY]
    assert two_days_before and 0 < two_days_before[-1].smart["5"] < smart5[-1] / 2
    assert mine[-1].smart["197"] > 0 and mine[-1].smart["187"] > 0
    assert mine[-1].failure is True and not any(d.failure for d in mine[:-1])
    assert s <= mine[-1].ts < e + SC.disk_interval_s
    assert mine[-1].io_latency_ms > 20 * mine[0].io_latency_ms and mine[-1].io_errors > 0
    assert not any(d.failure for d in disks if d.disk != inc["disk"])
    # a replacement drive reports on that host afterwards
    assert any(d.host == inc["host"] and d.disk != inc["disk"] and d.ts > mine[-1].ts for d in disks)
    # some healthy drives carry a constant non-zero SMART 5
    other5 = defaultdict(set)
    for d in disks:
        if d.disk != inc["disk"]:
            other5[d.disk].add(d.smart["5"])
    assert any(len(v) == 1 and min(v) > 0 for v in other5.values())
    # requests: only the failing host slows down
    hist = _history_days(s, e)
    for host in {r.host for r in reqs if r.service == inc["service"]}:
        now = [r.latency_ms for r in reqs if r.host == host and s <= r.ts < e]
        then = [r.latency_ms for r in reqs if r.host == host and any(a <= r.ts < b for a, b in hist)]
        ratio = np.median(now) / np.median(then)
        if host == inc["host"]:
            assert ratio > 3
        else:
            assert 0.7 < ratio < 1.4, host


def test_regular_peaks_stay_normal_on_history_days(run):
    reqs, _, _, _ = run
    per_day = Counter(int((r.ts - SC.start) // DAY) for r in reqs if r.status >= 500)
    n_day = Counter(int((r.ts - SC.start) // DAY) for r in reqs)
    for d in range(SC.history_days):
        assert per_day[d] / n_day[d] < 0.005


def test_malformed_messages_fail_to_decode():
    rng = np.random.default_rng(0)
    req = {"ts": "2021-04-06T08:00:00Z", "service": "ent-idf", "status": 200, "latency_ms": 90.0}
    disk = {"ts": 1617696000, "host": "h", "disk": "d", "smart": {"5": 0}, "io_errors": 0}
    for kind in MALFORMED_KINDS:
        for _ in range(4):
            with pytest.raises(InvalidEvent):
                decode_request(sim.make_malformed(kind, "requests", req, rng))
            with pytest.raises(InvalidEvent):
                decode_disk(sim.make_malformed(kind, "disk-health", disk, rng))


def test_write_jsonl_and_cli(tmp_path):
    parser = argparse.ArgumentParser()
    sim.add_arguments(parser)
    args = parser.parse_args(["--out", str(tmp_path), "--history-days", "1", "--scale", "0.2",
                              "--start", "2021-04-06T06:00:00Z", "--end", "2021-04-06T06:30:00Z"])
    assert sim.run(args) == 0
    with gzip.open(tmp_path / "requests.jsonl.gz") as f:
        lines = f.read().splitlines()
    assert lines and all(decode_request(x).service for x in lines)
    disks = (tmp_path / "disks.jsonl").read_bytes().splitlines()
    assert disks and all(decode_disk(x).disk for x in disks)
    truth = orjson.loads((tmp_path / "truth.json").read_bytes())
    assert {i["cause"] for i in truth} == set(sim.CAUSES)
    bad = parser.parse_args(["--out", str(tmp_path), "--start", "yesterday"])
    assert sim.run(bad) == 2
    with pytest.raises(SystemExit):
        parser.parse_args(["--seed", "1"])  # neither --out nor --bootstrap-servers


# --------------------------------------------------------------------------
# Many worlds: the incident shapes and confounders of issue 13
# --------------------------------------------------------------------------

_SVC = (sim.ServiceSpec("ent-a", "grand-est", hosts=3, headroom=1.5, db_hosts=1),
        sim.ServiceSpec("ent-b", "bretagne", hosts=4, headroom=1.5))


def _at(h, m=0, day=6):
    return datetime(2021, 4, day, h, m, tzinfo=sim.ZoneInfo("Europe/Paris")).timestamp()


def _slice(sc, t0, t1, service="ent-a"):
    return [ev for topic, ev in generate(sc, t0, t1) if topic == "requests" and ev["service"] == service]


def _sc(*incidents, confounders=()):
    return Scenario(seed=5, history_days=1, scale=2.0, services=_SVC, incidents=incidents, confounders=confounders,
                    static_assets=True, regional_networks=True)


def test_world_is_deterministic_and_labels_incidents_and_confounders():
    a, b = sim.world(7, history_days=1), sim.world(7, history_days=1)
    assert a == b and sim.world(8, history_days=1) != a
    truth = ground_truth(a)
    causes = Counter(t["cause"] for t in truth)
    assert causes["benign"] == len(a.confounders) >= 4
    assert sum(causes.values()) - causes["benign"] >= 7
    for t in truth:
        assert t["kind"] and _parse(t["start"]) < _parse(t["end"])
    # over a handful of seeds every shape is drawn
    kinds = {(t["cause"], t["kind"]) for s in range(101, 113) for t in ground_truth(sim.world(s, history_days=1))}
    assert {("suspected_attack", "residential_botnet"), ("suspected_attack", "credential_stuffing"),
            ("capacity_saturation", "capacity_loss"), ("disk_failure", "silent")} <= kinds
    assert {"newsletter", "deploy", "crawler", "cgnat", "smart_tick"} <= {k for c, k in kinds if c == "benign"}


def test_residential_botnet_uses_home_addresses_browsers_and_no_assets():
    inc = sim.Incident("b", "suspected_attack", "ent-a", _at(10), _at(11), magnitude=3.0,
                       variant="residential_botnet", endpoint="/ressources", ramp_s=600.0, sources=3000)
    sc = _sc(inc)
    before = _slice(sc, _at(9, 30), _at(9, 50))
    during = _slice(sc, _at(10, 30), _at(10, 50))
    assert len(during) > 2.5 * len(before)
    res = {a for a, *_ in sim.RESIDENTIAL_FR_ASNS}
    assert sum(ev["asn"] in res for ev in during) / len(during) > 0.9
    assert all(ev["user_agent"].startswith(("Mozilla", "MonENT")) for ev in during)
    static = lambda evs: sum(ev["endpoint"] == "/static" for ev in evs) / len(evs)  # noqa: E731
    assert static(before) > 0.2 and static(during) < 0.5 * static(before)
    assert Counter(ev["endpoint"] for ev in during).most_common(1)[0][0] == "/ressources"
    truth = ground_truth(sc)[0]
    assert _parse(truth["start"]) == pytest.approx(_at(10) + 300, abs=1)  # half the ramp


def test_credential_stuffing_adds_a_third_and_fails_logins_with_rotating_agents():
    inc = sim.Incident("c", "suspected_attack", "ent-a", _at(14), _at(15), magnitude=0.4,
                       variant="credential_stuffing", sources=800)
    sc = _sc(inc)
    base = _slice(_sc(), _at(14, 10), _at(14, 50))  # the same world without it
    during = _slice(sc, _at(14, 10), _at(14, 50))
    assert 1.2 < len(during) / len(base) < 1.6
    fails = lambda evs: sum(ev["status"] == 401 for ev in evs if ev["endpoint"] == "/login") / max(1, sum(ev["endpoint"] == "/login" for ev in evs))  # noqa: E731
    assert fails(during) > 3 * fails(base)
    per_ip = defaultdict(set)
    for ev in during:
        if ev["status"] == 401:
            per_ip[ev["client_ip"]].add(ev["user_agent"])
    assert statistics.mean(len(v) for v in per_ip.values() if len(v) >= 1) > 1.3


def test_capacity_loss_takes_a_host_out_and_the_others_slow_down():
    inc = sim.Incident("l", "capacity_saturation", "ent-a", _at(9), _at(10), magnitude=1.3, variant="capacity_loss")
    sc = _sc(inc)
    before, during = _slice(sc, _at(8, 40), _at(8, 58)), _slice(sc, _at(9, 10), _at(9, 30))
    hosts_before, hosts_during = {ev["host"] for ev in before}, {ev["host"] for ev in during}
    assert len(hosts_before) == 3 and len(hosts_during) == 2
    p95 = lambda evs: float(np.percentile([ev["latency_ms"] for ev in evs if ev["endpoint"] != "/static"], 95))  # noqa: E731
    assert p95(during) > 1.5 * p95(before)


def test_no_5xx_saturation_is_slow_without_errors():
    inc = sim.Incident("n", "capacity_saturation", "ent-a", _at(9), _at(10), magnitude=1.6, variant="no_5xx")
    during = _slice(_sc(inc), _at(9, 20), _at(9, 40))
    assert sum(ev["status"] >= 500 for ev in during) / len(during) < 0.01


def test_confounders_shape_the_traffic_without_an_incident():
    confs = (sim.Confounder("n", "newsletter", "ent-a", _at(15), _at(15, 40), 2.5, "/messagerie"),
             sim.Confounder("cr", "crawler", "ent-b", _at(15), _at(15, 10), 1.5),
             sim.Confounder("nat", "cgnat", "ent-b", _at(16), _at(23), 0.5),
             sim.Confounder("t", "smart_tick", "ent-a", _at(3), _at(23), 2.0, host="ent-a-web-1"))
    sc = _sc(confounders=confs)
    news = _slice(sc, _at(15, 2), _at(15, 12))
    assert Counter(ev["endpoint"] for ev in news).most_common(1)[0][0] == "/messagerie"
    crawl = _slice(sc, _at(15, 2), _at(15, 8), "ent-b")
    assert 0.2 < sum("Googlebot" in ev["user_agent"] for ev in crawl) / len(crawl) < 0.8
    nat = _slice(sc, _at(16, 10), _at(16, 30), "ent-b")
    top = Counter(ev["client_ip"] for ev in nat).most_common(24)
    assert sum(n for _, n in top) / len(nat) > 0.3
    readings = [ev for topic, ev in generate(sc, _at(2), _at(6)) if topic == "disk-health" and ev["host"] == "ent-a-web-1"]
    s5 = [ev["smart"]["5"] for ev in readings if ev["disk"] == readings[0]["disk"]]
    assert s5[0] == s5[1] and s5[-1] == s5[0] + 2 and len(set(s5)) == 2  # ticks once and stays flat
    assert [t["cause"] for t in ground_truth(sc)] == ["benign"] * 4


def test_silent_disk_has_no_smart_warning_and_db_host_serves_no_requests():
    inc = sim.Incident("d", "disk_failure", "ent-a", _at(11), _at(12), host="ent-a-web-2", variant="silent",
                       lead_days=0.2, magnitude=8.0)
    db = sim.Incident("e", "disk_failure", "ent-a", _at(2, 30), _at(3, 30), variant="db_host", lead_days=0.5)
    sc = _sc(inc, db)
    readings = [ev for topic, ev in generate(sc, _at(8), _at(12)) if topic == "disk-health"]
    sick = [ev for ev in readings if ev["host"] == "ent-a-web-2" and ev["io_latency_ms"] > 30]
    assert sick and all(ev["smart"]["5"] == 0 and ev["smart"]["197"] == 0 for ev in sick)
    truth = ground_truth(sc)
    assert truth[1]["host"] == "ent-a-db-1"
    assert all(ev["host"] != "ent-a-db-1" for ev in _slice(sc, _at(2), _at(4)))


def test_cli_writes_a_world_with_its_confounders(tmp_path):
    parser = argparse.ArgumentParser()
    sim.add_arguments(parser)
    sc = sim.world(4, history_days=0, scale=0.3)
    day_start = sim._to_epoch(sc.start)
    args = parser.parse_args(["--out", str(tmp_path), "--world", "--seed", "4", "--history-days", "0", "--scale", "0.3",
                              "--start", str(day_start + 8 * 3600), "--end", str(day_start + 8.25 * 3600)])
    assert sim.run(args) == 0
    truth = orjson.loads((tmp_path / "truth.json").read_bytes())
    assert truth == ground_truth(sc) and any(t["cause"] == "benign" for t in truth)
    with gzip.open(tmp_path / "requests.jsonl.gz") as f:
        services = {decode_request(x).service for x in f.read().splitlines()}
    assert services <= {s.name for s in sc.services} and len(services) >= 4
