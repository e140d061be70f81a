"""Diagnosis confounders: each case names the cause on-call engineers should believe."""

import pytest

from detectors.diagnosis import CompositionState, Diagnoser, DiskSignal
from detectors.features import HostStats
from detectors.model import Verdict

T = 1617696000.0  # Tuesday 2021-04-06 08:00 UTC


def verdict(signal, value, expected, flagged=True, z=None):
    return Verdict(signal, value, expected, 0.0, expected * 2, 0.97 if flagged else 0.1, flagged,
                   z=z if z is not None else (8.0 if flagged else 0.5))


def usual(make_window, n=60):
    comp = CompositionState()
    for i in range(n):
        comp.learn(make_window(start=T - 3600 + 60 * i), 0.05)
    return comp


def hosts(n, slow=(), p50=100.0, slow_p50=600.0, count=100):
    return {f"web-{i}": HostStats(count, slow_p50 if f"web-{i}" in slow else p50, 2.5 * p50, 0.0)
            for i in range(1, n + 1)}


def host_verdicts(hs, slow=()):
    return {h: [verdict("latency_p50_ms", 600.0 if h in slow else 100.0, 100.0, flagged=h in slow)] for h in hs}


def diagnose(d, f, traffic, svc_lat, hv, comp, disks=None):
    return d.diagnose(f, traffic, svc_lat, hv, comp, disks or {}, ["a1"])


def test_first_homeschool_morning_is_saturation_not_attack(make_window):
    """Many first-time clients, but French residential ISPs as usual: real users."""
    d = Diagnoser()
    comp = usual(make_window)
    all_hosts = [f"web-{i}" for i in range(1, 5)]
    hs = hosts(4, slow=all_hosts)
    f = make_window(start=T, count=1500, new_client_share=0.6, hosts=hs)
    (finding,) = diagnose(d, f, verdict("request_rate", 25.0, 5.0), [verdict("latency_p95_ms", 4200, 250)],
                          host_verdicts(hs, slow=all_hosts), comp)
    assert finding.cause == "capacity_saturation"
    assert finding.labels == {"service": "ent", "host": None, "disk": None}
    text = " ".join(e.text for e in finding.evidence)
    assert "first-time clients" in text and "usual users" in text and "5.0x" in finding.title


def test_botnet_of_many_foreign_ips_is_an_attack(make_window):
    """Many distinct clients (no heavy hitter) but not the usual population."""
    d = Diagnoser()
    comp = usual(make_window)
    f = make_window(start=T, count=2400, countries={"US": 0.3, "CN": 0.25, "RU": 0.2, "FR": 0.25},
                    hosting_share=0.05, top10_share=0.02, new_client_share=0.9)
    (finding,) = diagnose(d, f, verdict("request_rate", 40.0, 5.0), [], {}, comp)
    assert finding.cause == "suspected_attack"
    assert any(e.signal == "home_country_share" for e in finding.evidence)


def test_flood_that_saturates_is_an_attack_not_saturation(make_window):
    d = Diagnoser()
    comp = usual(make_window)
    all_hosts = [f"web-{i}" for i in range(1, 5)]
    hs = hosts(4, slow=all_hosts)
    f = make_window(start=T, count=3000, hosting_share=0.7, hosting_networks={"DigitalOcean": 0.4, "Amazon": 0.3},
                    countries={"US": 0.4, "NL": 0.3, "FR": 0.3}, top_endpoint="/login", top_endpoint_share=0.8,
                    hosts=hs)
    (finding,) = diagnose(d, f, verdict("request_rate", 50.0, 5.0),
                          [verdict("latency_p95_ms", 9000, 250), verdict("error_ratio_5xx", 0.4, 0.001)],
                          host_verdicts(hs, slow=all_hosts), comp)
    assert finding.cause == "suspected_attack" and finding.severity == "critical"
    assert "saturating" in finding.title
    assert finding.confidence >= 0.8


def test_failing_drive_slows_only_its_host(make_window):
    d = Diagnoser()
    comp = usual(make_window)
    hs = hosts(4, slow=["web-2"])
    f = make_window(start=T, count=300, hosts=hs)
    sig = DiskSignal("web-2", "ZA1", T - 2 * 86400, 0.95, ["SMART 5 (reallocated sectors) rose from 0 to 640 in 4 days"], "d1")
    (finding,) = diagnose(d, f, verdict("request_rate", 5.0, 5.0, flagged=False, z=0.1), [],
                          host_verdicts(hs, slow=["web-2"]), comp, {"web-2": [sig]})
    assert finding.cause == "disk_failure"
    assert finding.labels == {"service": "ent", "host": "web-2", "disk": "ZA1"}
    assert "d1" in finding.anomalies
    assert any("SMART 5" in e.text for e in finding.evidence)


def test_a_host_slow_without_a_failing_drive_is_unknown(make_window):
    """A healthy drive elsewhere (or none) explains nothing: no guess."""
    d = Diagnoser()
    comp = usual(make_window)
    hs = hosts(4, slow=["web-3"])
    f = make_window(start=T, count=300, hosts=hs)
    other = DiskSignal("web-1", "ZB2", T - 3600, 0.9, ["SMART 5 at 8 (constant)"], "d2")
    (finding,) = diagnose(d, f, verdict("request_rate", 5.0, 5.0, flagged=False, z=0.1), [],
                          host_verdicts(hs, slow=["web-3"]), comp, {"web-1": [other]})
    assert finding.cause == "unknown" and finding.labels["host"] == "web-3"
    assert finding.pending and finding.confidence < 0.5


def test_a_replaced_drive_stops_explaining_later_slowdowns(make_window):
    d = Diagnoser(replaced_grace=1800)
    comp = usual(make_window)
    hs = hosts(4, slow=["web-2"])
    sig = DiskSignal("web-2", "ZA1", T - 86400, 0.95, ["SMART 5 rose"], "d1", replaced_at=T - 7200)
    (finding,) = diagnose(d, make_window(start=T, hosts=hs), verdict("request_rate", 5.0, 5.0, flagged=False, z=0.1),
                          [], host_verdicts(hs, slow=["web-2"]), comp, {"web-2": [sig]})
    assert finding.cause == "unknown"


def test_slowdown_without_more_traffic_is_unknown_not_saturation(make_window):
    d = Diagnoser()
    comp = usual(make_window)
    all_hosts = [f"web-{i}" for i in range(1, 5)]
    hs = hosts(4, slow=all_hosts)
    (finding,) = diagnose(d, make_window(start=T, hosts=hs), verdict("request_rate", 5.2, 5.0, flagged=False, z=0.3),
                          [verdict("latency_p95_ms", 4000, 250)], host_verdicts(hs, slow=all_hosts), comp)
    assert finding.cause == "unknown"


def test_a_surge_that_is_served_fine_is_not_called_saturation(make_window):
    d = Diagnoser()
    comp = usual(make_window)
    (finding,) = diagnose(d, make_window(start=T, count=1500), verdict("request_rate", 25.0, 5.0), [], {}, comp)
    assert finding.cause == "unknown" and "served normally" in finding.title


def test_two_incidents_at_once_on_two_services(make_window):
    d = Diagnoser()
    comp_a, comp_b = usual(make_window), usual(make_window)
    all_hosts = [f"web-{i}" for i in range(1, 5)]
    hs = hosts(4, slow=all_hosts)
    fa = make_window(start=T, service="a", count=1500, hosts=hs)
    fb = make_window(start=T, service="b", count=3000, hosting_share=0.7, countries={"US": 0.7, "FR": 0.3})
    (x,) = diagnose(d, fa, verdict("request_rate", 25.0, 5.0), [verdict("latency_p95_ms", 4000, 250)],
                    host_verdicts(hs, slow=all_hosts), comp_a)
    (y,) = diagnose(d, fb, verdict("request_rate", 50.0, 5.0), [], {}, comp_b)
    assert (x.cause, x.labels["service"]) == ("capacity_saturation", "a")
    assert (y.cause, y.labels["service"]) == ("suspected_attack", "b")


@pytest.mark.parametrize("warm", [0, 10])
def test_no_population_evidence_before_the_composition_is_learned(make_window, warm):
    d = Diagnoser(composition_warmup=30)
    comp = usual(make_window, n=warm) if warm else None
    f = make_window(start=T, count=3000, hosting_share=0.7)
    score, ev = d.population_shift(f, comp)
    assert score == 0.0 and ev == []


def test_evidence_reads_in_local_time(make_window):
    d = Diagnoser(timezone="Europe/Paris")
    comp = usual(make_window)
    (finding,) = diagnose(d, make_window(start=T, count=1500), verdict("request_rate", 25.0, 5.0), [], {}, comp)
    assert "Tuesday 10:00 (Europe/Paris)" in finding.evidence[0].text
