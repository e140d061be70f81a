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
    d = Diagnoser(use_model=False)
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
    d = Diagnoser(use_model=False)
    comp = usual(make_window)
    f = make_window(start=T, count=2400, countries={"US": 0.3, "CN": 0.25, "RU": 0.2, "FR": 0.25},
                    hosting_share=0.05, top10_share=0.02, new_client_share=0.9)
    (finding,) = diagnose(d, f, verdict("request_rate", 40.0, 5.0), [], {}, comp)
    assert finding.cause == "suspected_attack"
    assert any(e.signal == "home_country_share" for e in finding.evidence)


def test_flood_that_saturates_is_an_attack_not_saturation(make_window):
    d = Diagnoser(use_model=False)
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
    d = Diagnoser(use_model=False)
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
    d = Diagnoser(use_model=False)
    comp = usual(make_window)
    hs = hosts(4, slow=["web-3"])
    f = make_window(start=T, count=300, hosts=hs)
    other = DiskSignal("web-1", "ZB2", T - 3600, 0.9, ["SMART 5 at 8 (constant)"], "d2")
    (finding,) = diagnose(d, f, verdict("request_rate", 5.0, 5.0, flagged=False, z=0.1), [],
                          host_verdicts(hs, slow=["web-3"]), comp, {"web-1": [other]})
    assert finding.cause == "unknown" and finding.labels["host"] == "web-3"
    assert finding.pending and finding.confidence < 0.5


def test_a_replaced_drive_stops_explaining_later_slowdowns(make_window):
    d = Diagnoser(replaced_grace=1800, use_model=False)
    comp = usual(make_window)
    hs = hosts(4, slow=["web-2"])
    sig = DiskSignal("web-2", "ZA1", T - 86400, 0.95, ["SMART 5 rose"], "d1", replaced_at=T - 7200)
    (finding,) = diagnose(d, make_window(start=T, hosts=hs), verdict("request_rate", 5.0, 5.0, flagged=False, z=0.1),
                          [], host_verdicts(hs, slow=["web-2"]), comp, {"web-2": [sig]})
    assert finding.cause == "unknown"


def test_slowdown_without_more_traffic_is_unknown_not_saturation(make_window):
    d = Diagnoser(use_model=False)
    comp = usual(make_window)
    all_hosts = [f"web-{i}" for i in range(1, 5)]
    hs = hosts(4, slow=all_hosts)
    (finding,) = diagnose(d, make_window(start=T, hosts=hs), verdict("request_rate", 5.2, 5.0, flagged=False, z=0.3),
                          [verdict("latency_p95_ms", 4000, 250)], host_verdicts(hs, slow=all_hosts), comp)
    assert finding.cause == "unknown"


def test_a_surge_that_is_served_fine_is_not_called_saturation(make_window):
    d = Diagnoser(use_model=False)
    comp = usual(make_window)
    (finding,) = diagnose(d, make_window(start=T, count=1500), verdict("request_rate", 25.0, 5.0), [], {}, comp)
    assert finding.cause == "unknown" and "served normally" in finding.title


def test_two_incidents_at_once_on_two_services(make_window):
    d = Diagnoser(use_model=False)
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
    d = Diagnoser(composition_warmup=30, use_model=False)
    comp = usual(make_window, n=warm) if warm else None
    f = make_window(start=T, count=3000, hosting_share=0.7)
    score, ev = d.population_shift(f, comp)
    assert score == 0.0 and ev == []


def test_evidence_reads_in_local_time(make_window):
    d = Diagnoser(timezone="Europe/Paris", use_model=False)
    comp = usual(make_window)
    (finding,) = diagnose(d, make_window(start=T, count=1500), verdict("request_rate", 25.0, 5.0), [], {}, comp)
    assert "Tuesday 10:00 (Europe/Paris)" in finding.evidence[0].text


# -- with the learned cause model ------------------------------------------------

def _model():
    """A real River model trained on seeded windows of three telling shapes."""
    import random

    from detectors.cause_features import FEATURE_NAMES
    from detectors.cause_model import CauseModel

    rng = random.Random(3)
    rows = []
    for i in range(400):
        x = {n: rng.gauss(0.0, 0.03) for n in FEATURE_NAMES}
        k = i % 4
        if k == 0:  # a crawler: more traffic, robots say so
            x.update(log_rate_ratio=0.7, bot_share=0.5)
            rows.append((x, "benign"))
        elif k == 1:  # a host gone, the rest slow
            x.update(log_p95_ratio=1.5, hosts_ratio=0.67, slow_host_share=1.0)
            rows.append((x, "capacity_saturation"))
        elif k == 2:  # one host slow alone
            x.update(slow_host_share=0.25)
            rows.append((x, "disk_failure"))
        else:
            x.update(log_rate_ratio=1.5, d_hosting=0.6)
            rows.append((x, "suspected_attack"))
    m = CauseModel.from_rows(rows)
    m.set_calibration([(0.5, 0.4), (1.0, 0.85)])
    return m


def test_model_keeps_a_crawler_burst_quiet(make_window):
    from detectors.cause_features import MixFeatures

    d = Diagnoser(cause_model=_model())
    comp = usual(make_window)
    mix_usual = MixFeatures(requests=100, clients=40, asset_ratio=0.4)
    for i in range(40):  # the usual client mix, learned on quiet windows
        d.diagnose(make_window(start=T - 7200 + 60 * i), verdict("request_rate", 5.0, 5.0, flagged=False),
                   [], {}, comp, {}, [], mix=mix_usual)
    crawl = MixFeatures(requests=200, clients=5, asset_ratio=0.2, bot_share=0.5)
    rules_only = Diagnoser(use_model=False)
    f = make_window(start=T, count=600)
    assert rules_only.diagnose(f, verdict("request_rate", 10.0, 5.0), [], {}, comp, {}, ["a"])[0].cause == "unknown"
    assert d.diagnose(f, verdict("request_rate", 10.0, 5.0), [], {}, comp, {}, ["a"], mix=crawl) == []


def test_model_names_a_lost_host_saturation_with_calibrated_confidence(make_window):
    d = Diagnoser(cause_model=_model())
    comp = usual(make_window)
    for i in range(40):  # four hosts usually serve
        d.diagnose(make_window(start=T - 7200 + 60 * i), verdict("request_rate", 5.0, 5.0, flagged=False),
                   [], {}, comp, {}, [])
    three = [f"web-{i}" for i in range(1, 4)]
    hs = hosts(3, slow=three)
    f = make_window(start=T, count=300, hosts=hs)
    (finding,) = d.diagnose(f, verdict("request_rate", 5.0, 5.0, flagged=False),
                            [verdict("latency_p95_ms", 1100.0, 250.0)], host_verdicts(hs, slow=three), comp, {}, ["a"])
    assert finding.cause == "capacity_saturation"
    assert finding.confidence == 0.85  # the reliability table's figure, not the raw probability
    assert "3 hosts serving against 4 usual" in finding.title
    assert any(e.signal.startswith("model:") and "weighs for capacity saturation" in e.text for e in finding.evidence)
    assert finding.features is not None and finding.features["hosts_ratio"] < 0.8


def test_one_slow_host_the_model_blames_on_its_disk_carries_the_host(make_window):
    d = Diagnoser(cause_model=_model())
    comp = usual(make_window)
    hs = hosts(4, slow=["web-2"])
    f = make_window(start=T, hosts=hs)
    findings = d.diagnose(f, verdict("request_rate", 5.0, 5.0, flagged=False), [], host_verdicts(hs, slow=["web-2"]),
                          comp, {}, ["a"])
    assert [x.cause for x in findings] == ["disk_failure"]
    assert findings[0].labels == {"service": "ent", "host": "web-2", "disk": None}
    assert "web-2" in findings[0].title


# -- capacity loss, crawlers, rolling restarts ------------------------------------

def _quiet(d, make_window, comp, n=40, n_hosts=4, mix=None):
    """Quiet windows in which ``n_hosts`` hosts serve (the usual pool)."""
    for i in range(n):
        hs = {f"ent-web-{k}": HostStats(75, 100.0, 250.0, 0.0) for k in range(1, n_hosts + 1)}
        d.diagnose(make_window(start=T - 60 * (n - i), hosts=hs), verdict("request_rate", 5.0, 5.0, flagged=False),
                   [], {}, comp, {}, [], mix=mix)


def _lost_host_window(make_window):
    three = [f"ent-web-{i}" for i in range(1, 4)]
    hs = {h: HostStats(100, 600.0, 1500.0, 0.0) for h in three}
    return make_window(start=T, count=300, hosts=hs), host_verdicts(hs, slow=three)


def test_a_host_out_of_the_pool_is_capacity_saturation_with_the_hosts_evidence(make_window):
    """One host of four stops serving, the other three saturate at the usual load, usual users."""
    d = Diagnoser(use_model=False)
    comp = usual(make_window)
    _quiet(d, make_window, comp)
    f, hv = _lost_host_window(make_window)
    (finding,) = diagnose(d, f, verdict("request_rate", 5.0, 5.0, flagged=False, z=0.2),
                          [verdict("latency_p95_ms", 1500.0, 250.0)], hv, comp)
    assert finding.cause == "capacity_saturation" and finding.severity == "critical"
    hosts_ev = finding.evidence[0]
    assert hosts_ev.signal == "hosts_serving" and (hosts_ev.value, hosts_ev.expected) == (3, 4.0)
    assert "3 of 4 usual hosts serving (ent-web-4 stopped serving)" in hosts_ev.text
    assert "3 hosts serving against 4 usual" in finding.title
    assert any("the usual users" in e.text for e in finding.evidence)


def test_a_host_out_of_the_pool_is_not_overruled_by_a_model_that_says_attack(make_window):
    import random

    from detectors.cause_features import FEATURE_NAMES
    from detectors.cause_model import CauseModel

    rng = random.Random(5)
    rows = []
    for i in range(200):  # a model that learned (wrongly) that fewer hosts means an attack
        x = {n: rng.gauss(0.0, 0.03) for n in FEATURE_NAMES}
        if i % 2:
            x.update(log_p95_ratio=1.5, hosts_ratio=0.75, slow_host_share=1.0)
            rows.append((x, "suspected_attack"))
        else:
            rows.append((x, "benign"))
    d = Diagnoser(cause_model=CauseModel.from_rows(rows))
    comp = usual(make_window)
    _quiet(d, make_window, comp)
    f, hv = _lost_host_window(make_window)
    assert d.cause_model is not None and d.cause_model.predict(d._features(
        f, verdict("request_rate", 5.0, 5.0, flagged=False), [verdict("latency_p95_ms", 1500.0, 250.0)],
        list(hv), 3, comp, None, None, False, False))[0] == "suspected_attack"
    (finding,) = diagnose(d, f, verdict("request_rate", 5.0, 5.0, flagged=False, z=0.2),
                          [verdict("latency_p95_ms", 1500.0, 250.0)], hv, comp)
    assert finding.cause == "capacity_saturation"
    assert finding.evidence[0].signal == "hosts_serving"


def test_all_hosts_serving_is_no_capacity_loss(make_window):
    d = Diagnoser(use_model=False)
    comp = usual(make_window)
    _quiet(d, make_window, comp, n_hosts=3)
    f, hv = _lost_host_window(make_window)
    (finding,) = diagnose(d, f, verdict("request_rate", 5.0, 5.0, flagged=False, z=0.2),
                          [verdict("latency_p95_ms", 1500.0, 250.0)], hv, comp)
    assert finding.cause == "unknown"
    assert not any(e.signal == "hosts_serving" for e in finding.evidence)


def test_a_crawler_that_says_so_is_not_paged_and_a_same_size_rise_of_browsers_is(make_window):
    from detectors.cause_features import MixFeatures

    d = Diagnoser(use_model=False)
    comp = usual(make_window)
    _quiet(d, make_window, comp, mix=MixFeatures(requests=100, clients=40, asset_ratio=0.4))
    f = make_window(start=T, count=600)
    crawl = MixFeatures(requests=200, clients=30, asset_ratio=0.2, bot_share=0.55)
    assert d.diagnose(f, verdict("request_rate", 10.0, 5.0), [], {}, comp, {}, ["a"], mix=crawl) == []
    browsers = MixFeatures(requests=200, clients=60, asset_ratio=0.4)
    (finding,) = d.diagnose(f, verdict("request_rate", 10.0, 5.0), [], {}, comp, {}, ["a"], mix=browsers)
    assert finding.cause == "unknown"


def test_a_saturation_at_the_usual_load_must_last_before_it_pages(make_window):
    """A rolling restart slows every host at the usual load for two minutes: a saturation
    named at hardly more than the usual load waits; one at twice the load does not."""
    d = Diagnoser(use_model=False, harm_traffic_ratio=1.1)
    comp = usual(make_window)
    all_hosts = [f"web-{i}" for i in range(1, 5)]
    hs = hosts(4, slow=all_hosts)
    slow = [verdict("latency_p95_ms", 2000, 250)]
    (mild,) = diagnose(d, make_window(start=T, hosts=hs), verdict("request_rate", 5.6, 5.0), slow,
                       host_verdicts(hs, slow=all_hosts), comp)
    (heavy,) = diagnose(d, make_window(start=T, hosts=hs), verdict("request_rate", 10.0, 5.0), slow,
                        host_verdicts(hs, slow=all_hosts), comp)
    assert mild.cause == heavy.cause == "capacity_saturation"
    assert mild.pending == d.mild_pending_for and mild.pending > 120
    assert heavy.pending is None


def test_a_pool_whose_quiet_host_serves_every_other_window_has_lost_no_host(make_window):
    """Four hosts, one of them serving one window in two (3.5 on average): three serving is usual."""
    d = Diagnoser(use_model=False)
    comp = usual(make_window)
    for i in range(40):
        hs = {f"ent-web-{k}": HostStats(75, 100.0, 250.0, 0.0) for k in range(1, (4 if i % 2 else 3) + 1)}
        d.diagnose(make_window(start=T - 60 * (40 - i), hosts=hs), verdict("request_rate", 5.0, 5.0, flagged=False),
                   [], {}, comp, {}, [])
    hs = {f"ent-web-{k}": HostStats(100, 100.0, 250.0, 0.3) for k in range(1, 4)}  # a bad deploy: 5xx, usual load
    out = diagnose(d, make_window(start=T, count=300, hosts=hs), verdict("request_rate", 5.0, 5.0, flagged=False, z=0.2),
                   [verdict("error_ratio_5xx", 0.3, 0.01)], host_verdicts(hs), comp)
    assert out and all("usual hosts serving" not in e.text for x in out for e in x.evidence)
    assert out[0].cause != "capacity_saturation"
