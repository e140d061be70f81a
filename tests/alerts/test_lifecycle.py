"""Alert lifecycle: pending, hysteresis, cause updates, resolve once."""

from alerts.lifecycle import AlertTracker
from detectors.diagnosis import Finding
from detectors.model import Evidence


def finding(ts, cause="capacity_saturation", conf=0.8, sev="critical", service="ent", pending=None, hold=None):
    return Finding({"service": service, "host": None, "disk": None}, cause, conf, sev, f"{cause} on {service}",
                   [Evidence("request_rate", 10, 2, "10 req/s against 2 usual")], [f"a{ts}"], ts, hold, pending)


def run(tracker, findings, until):
    out = []
    by_t = {}
    for f in findings:
        by_t.setdefault(f.ts, []).append(f)
    for t in range(0, until + 1, 60):
        for f in by_t.get(t, []):
            out += tracker.observe(f)
        out += tracker.tick(t)
    return out


def test_a_flapping_signal_makes_one_incident():
    tr = AlertTracker(keep_firing_for=300)
    # on, off, on, off ... every other minute for 20 minutes
    out = run(tr, [finding(t) for t in range(0, 1200, 120)], 3000)
    assert [a.status for a in out] == ["firing", "resolved"]
    assert out[1].ends_at == 1080 + 300
    assert out[0].fingerprint == out[1].fingerprint


def test_pending_needs_persistence_without_gaps():
    tr = AlertTracker(pending_gap=90)
    blips = [finding(t, cause="unknown", conf=0.3, sev="warning", pending=180) for t in (0, 600, 1200)]
    assert run(tr, blips, 2400) == []
    tr = AlertTracker(pending_gap=90)
    steady = [finding(t, cause="unknown", conf=0.3, sev="warning", pending=180) for t in range(0, 300, 60)]
    out = run(tr, steady, 1200)
    assert [a.status for a in out] == ["firing", "resolved"]
    assert out[0].starts_at == 0


def test_a_better_supported_cause_updates_the_alert_and_a_weaker_one_does_not():
    tr = AlertTracker()
    out = tr.observe(finding(0, cause="unknown", conf=0.3, sev="warning"))
    out += tr.observe(finding(60, cause="suspected_attack", conf=0.9))
    out += tr.observe(finding(120, cause="capacity_saturation", conf=0.8))
    assert [(a.status, a.cause, a.severity) for a in out] == [
        ("firing", "unknown", "warning"), ("firing", "suspected_attack", "critical")]
    assert out[1].starts_at == 0


def test_two_services_two_alerts():
    tr = AlertTracker()
    out = tr.observe(finding(0, service="a")) + tr.observe(finding(0, service="b", cause="suspected_attack"))
    assert len({a.fingerprint for a in out}) == 2


def test_explicit_resolve():
    tr = AlertTracker()
    (a,) = tr.observe(finding(0))
    (r,) = tr.resolve(a.fingerprint, 500)
    assert r.status == "resolved" and r.ends_at == 500
    assert tr.tick(10_000) == []


def test_a_tracked_alert_moves_to_another_tracker_and_goes_on_there():
    old = AlertTracker(keep_firing_for=300)
    fired = run(old, [finding(t) for t in range(0, 300, 60)], 240)
    assert [a.status for a in fired] == ["firing"]
    exported = old.export()
    assert len(exported) == 1
    labels, data = exported[fired[0].fingerprint]
    assert labels["service"] == "ent"

    new = AlertTracker(keep_firing_for=300)
    new.load(data)
    assert new.export() == exported  # the same state, byte for byte
    # The incident goes on at the new owner: no second "firing", one resolve.
    out = []
    for t in range(300, 900, 60):
        out += new.observe(finding(t)) if t < 600 else []
        out += new.tick(t)
    out += new.tick(2000)
    assert [a.status for a in out] == ["resolved"] and out[0].ends_at == 540 + 300
    assert out[0].starts_at == fired[0].starts_at

    # The old owner lets it go without a word.
    assert old.forget(lambda lb: lb.get("service") == "ent") == 1
    assert old.tick(5000) == [] and old.export() == {}


def rate_finding(ts, rate, usual=100):
    return Finding({"service": "ent", "host": None, "disk": None}, "suspected_attack", 0.8, "critical",
                   f"Traffic {rate / usual:.1f}x usual on ent: suspected attack",
                   [Evidence("request_rate", rate, usual, f"{rate} req/s against {usual} usual")], [f"a{ts}"], ts)


def test_the_title_always_matches_its_evidence_up_to_the_resolve():
    tr = AlertTracker(keep_firing_for=300)
    out = []
    for t, rate in ((0, 430), (60, 770), (120, 820), (180, 430)):
        out += tr.observe(rate_finding(t, rate))
    out += tr.tick(600)
    firing, resolved = out
    for a in (firing, resolved):
        ratio = a.evidence[0].value / a.evidence[0].expected
        assert a.title.startswith(f"Traffic {ratio:.1f}x"), (a.title, a.evidence[0])
    # The resolve says what was last reported (the receivers keep the peaks they were told).
    assert resolved.title == firing.title and resolved.evidence == firing.evidence


def test_an_attack_named_in_windows_in_a_row_takes_over_a_surge_alert_without_more_confidence():
    # A surge reported as a saturation at 0.83; an attack starts inside it and the diagnosis
    # names it at less confidence than the surge's: one window is not enough (and a
    # saturation window in between starts the count over), two in a row are.
    seq = [finding(0, conf=0.83), finding(60, cause="suspected_attack", conf=0.49), finding(120, conf=0.83),
           finding(180, cause="suspected_attack", conf=0.49), finding(240, cause="suspected_attack", conf=0.49)]
    tr = AlertTracker(switch_after=2)
    out = [(f.ts, a) for f in seq for a in tr.observe(f)]
    assert [(ts, a.cause) for ts, a in out] == [(0, "capacity_saturation"), (240, "suspected_attack")]
    assert out[1][1].status == "firing" and out[1][1].starts_at == 0
    off = AlertTracker(switch_after=0)
    assert [a.cause for f in seq for a in off.observe(f)] == ["capacity_saturation"]


def test_an_attack_alert_is_not_talked_out_of_it_by_saturation_windows():
    tr = AlertTracker(switch_after=2)
    out = tr.observe(finding(0, cause="suspected_attack", conf=0.83))
    for t in range(60, 600, 60):
        out += tr.observe(finding(t, cause="capacity_saturation", conf=0.83))
    assert [a.cause for a in out] == ["suspected_attack"]


def test_the_count_of_attack_windows_moves_with_the_alert():
    tr = AlertTracker(switch_after=2)
    tr.observe(finding(0, conf=0.83))
    assert tr.observe(finding(60, cause="suspected_attack", conf=0.49)) == []
    other = AlertTracker(switch_after=2)
    for _labels, data in tr.export().values():
        other.load(data)
    assert [a.cause for a in other.observe(finding(120, cause="suspected_attack", conf=0.49))] == [
        "suspected_attack"]
