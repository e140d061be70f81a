"""A failing drive's alert in the tracker: open until resolved, refreshed with its latest evidence."""

from __future__ import annotations

import math

from alerts.lifecycle import AlertTracker
from detectors.diagnosis import Diagnoser, DiskSignal

DAY = 86400.0


def drive_finding(ts: float, count: int):
    sig = DiskSignal("web-2", "S10", ts, 0.97, [f"SMART 5 (reallocated sectors) rose from 0 to {count}"], f"d{ts:.0f}")
    return Diagnoser(use_model=False).disk_finding(sig)


def test_a_drive_alert_is_a_warning_that_no_quiet_spell_resolves():
    tr = AlertTracker(keep_firing_for=300)
    (a,) = tr.observe(drive_finding(0.0, 8))
    assert a.severity == "warning" and a.labels == {"service": None, "host": "web-2", "disk": "S10"}
    # No flagged reading for a month: still open (its readings may score low while it fails).
    assert tr.tick(30 * DAY) == [] and a.fingerprint in tr.active
    (r,) = tr.resolve(a.fingerprint, 31 * DAY)  # its failure record, or a new serial in its place
    assert (r.status, r.ends_at) == ("resolved", 31 * DAY) and not tr.active


def test_its_latest_evidence_is_sent_again_at_most_every_refresh_every_and_only_when_it_changed():
    tr = AlertTracker(refresh_every=3600)
    out = tr.observe(drive_finding(0.0, 8))
    out += tr.observe(drive_finding(600.0, 16))  # too soon: kept, not sent
    out += tr.observe(drive_finding(3000.0, 16))
    out += tr.observe(drive_finding(3600.0, 16))  # an hour after the last sent: the kept reading goes out
    out += tr.observe(drive_finding(9000.0, 16))  # nothing new since
    out += tr.observe(drive_finding(9600.0, 24))
    assert [(a.status, a.evidence[0].text[-2:]) for a in out] == [("firing", " 8"), ("firing", "16"),
                                                                   ("firing", "24")]
    assert len({(a.fingerprint, a.severity, a.starts_at) for a in out}) == 1  # the same state, fresher evidence


def test_an_open_until_replaced_alert_survives_a_checkpoint():
    tr = AlertTracker()
    (a,) = tr.observe(drive_finding(0.0, 8))
    (labels, data), = tr.export().values()
    other = AlertTracker()
    assert other.load(data) == labels
    assert other.export() == tr.export()
    assert other.tick(10 * DAY) == [] and math.isinf(other._alerts[a.fingerprint].hold)


def test_evidence_held_back_before_a_checkpoint_is_still_sent_after_it():
    tr = AlertTracker(refresh_every=3600)
    tr.observe(drive_finding(0.0, 8))
    assert tr.observe(drive_finding(600.0, 16)) == []  # too soon: held back
    other = AlertTracker(refresh_every=3600)
    for _, data in tr.export().values():
        other.load(data)
    (a,) = other.observe(drive_finding(3600.0, 16))  # same reading again, after the restart: now it goes out
    assert a.evidence[0].text.endswith("16")
