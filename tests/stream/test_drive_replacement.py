"""When a failing drive counts as replaced: its failure record, or a new serial once it stopped reporting."""

from __future__ import annotations

from detectors.config import DetectorsConfig, LimitsConfig
from detectors.events import DiskHealthEvent
from stream.engine import Engine
from stream.runner import DictStore, ListOutbox, Runner

T0 = 1617580800.0
H = 3600.0


def reading(t: float, disk: str, s5: int = 0, host: str = "web-2", **kw) -> DiskHealthEvent:
    return DiskHealthEvent(ts=t, host=host, disk=disk, smart={"5": s5, "197": s5 // 4, "9": 1000 + t / H},
                           model="ST4000DM000", **kw)


def failing(e: Engine, until_k: int, extra=()) -> list:
    """Readings every 6 h of S10 (failing from k=8) and S11 (healthy) on web-2; the drive alerts."""
    out = []
    for k in range(until_k):
        t = T0 + 6 * H * k
        out += e.process_disk(reading(t, "S10", max(0, 10 * (k - 8)))).alerts
        out += e.process_disk(reading(t, "S11")).alerts
        for ev in extra:
            if ev.ts == t:
                out += e.process_disk(ev).alerts
    return out


def test_a_drive_added_beside_a_failing_one_that_still_reports_replaces_nothing():
    e = Engine()
    newcomer = [reading(T0 + 6 * H * k, "N12") for k in range(12, 20)]
    out = failing(e, 20, newcomer)
    assert [a.status for a in out if a.labels["disk"] == "S10"].count("resolved") == 0
    assert e.counts["drives.replaced_by_new_serial"] == 0


def test_a_new_serial_replaces_the_failing_drive_once_it_missed_a_reading():
    e = Engine()
    out = failing(e, 12)
    assert out and out[0].status == "firing" and out[0].severity == "warning"
    # S10 is gone after k=11; N10 reports from k=12 on.
    got = e.process_disk(reading(T0 + 6 * H * 12, "N10")).alerts
    got += e.process_disk(reading(T0 + 6 * H * 12, "S11")).alerts
    assert got == []  # at k=12, S10 may only be late: one interval is not yet a missed reading
    assert e.process_disk(reading(T0 + 6 * H * 13, "S11")).alerts == []  # an old drive of the host: no news
    (r,) = e.process_disk(reading(T0 + 6 * H * 13, "N10")).alerts  # the newcomer, 12 h after S10's last
    assert (r.status, r.labels["disk"], r.ends_at) == ("resolved", "S10", T0 + 6 * H * 12)
    sig = next(s for s in e.disk_signals["web-2"] if s.disk == "S10")
    assert sig.replaced_at == T0 + 6 * H * 12 and "web-2/S10" not in e.drives
    assert e.counts["drives.replaced_by_new_serial"] == 1


def test_the_failure_record_ends_the_drive_alert_at_once():
    e = Engine()
    failing(e, 12)
    *_, r = e.process_disk(reading(T0 + 6 * H * 12, "S10", 40, failure=True)).alerts
    assert r.status == "resolved" and r.ends_at == T0 + 6 * H * 12


def test_a_drive_alert_restored_from_a_checkpoint_is_still_watched_for_its_replacement():
    e = Engine()
    failing(e, 12)
    other = Engine()
    for name, data in e.dirty_states().items():
        if data is not None:
            other.load_state(name, data)
    assert other.process_disk(reading(T0 + 6 * H * 12, "N10")).alerts == []
    out = other.process_disk(reading(T0 + 6 * H * 13, "N10")).alerts
    assert [(r.status, r.labels["disk"]) for r in out] == [("resolved", "S10")], out


def test_a_failing_drive_evicted_by_the_drives_cap_is_still_replaced():
    # Two drives at most: the pulled drive (least recently seen) is the one evicted when its
    # replacement first reports, and its alert must still end.
    e = Engine(DetectorsConfig(limits=LimitsConfig(max_drives=2)))
    failing(e, 12)
    out = []
    for k in range(12, 16):
        out += e.process_disk(reading(T0 + 6 * H * k, "N10")).alerts
        out += e.process_disk(reading(T0 + 6 * H * k, "S11")).alerts
    assert "web-2/S10" not in e.drives
    assert [(a.status, a.labels["disk"]) for a in out] == [("resolved", "S10")]
    assert e.tracker.active == {}


def test_redelivered_readings_do_not_shorten_the_gap_that_says_a_drive_stopped_reporting():
    e = Engine()
    out = []
    for k in range(16):
        t = T0 + 6 * H * k
        for _ in range(2):  # at-least-once delivery: every reading twice
            out += e.process_disk(reading(t, "S10", max(0, 10 * (k - 8)))).alerts
        if k >= 12:  # a drive added beside S10, which goes on reporting every 6 h
            out += e.process_disk(reading(t + 5 * H, "N12")).alerts
    assert [a for a in out if a.status == "resolved"] == []
    assert e.counts["drives.replaced_by_new_serial"] == 0


def test_open_drive_alerts_are_bounded_and_end_when_their_drive_is_silent_for_a_month():
    e = Engine(DetectorsConfig(limits=LimitsConfig(max_drives=20)))
    for i in range(60):  # 60 hosts, each with a drive that fails
        for k in range(12):
            e.process_disk(reading(T0 + 6 * H * k + i, "S10", max(0, 10 * (k - 8)), host=f"h{i}"))
    assert len(e.tracker.active) <= 20 and e.counts["drives.failing_evicted"] >= 40
    # A month and more later, one reading of another drive: the silent drives' alerts end.
    out = e.process_disk(reading(T0 + 40 * 86400, "X1", host="other"))
    assert e.tracker.active == {} and len([a for a in out.alerts if a.status == "resolved"]) >= 1
    assert e.counts["drives.failing_silent"] >= 1


def test_a_replacement_seen_after_a_restart_is_forgotten_in_the_checkpoint():
    store = DictStore()
    r1 = Runner(Engine(), ListOutbox(), store)
    for k in range(12):
        t = T0 + 6 * H * k
        r1.process_disk_event(reading(t, "S10", max(0, 10 * (k - 8))), 1)
        r1.process_disk_event(reading(t, "S11"), 1)
    r1.checkpoint()
    assert any(b"S10" in k for k in store.data)
    r2 = Runner(Engine(), ListOutbox(), store)  # a restart: S10 was pulled, N10 takes its bay
    r2.restore()
    out = []
    for k in range(12, 15):
        out += r2.process_disk_event(reading(T0 + 6 * H * k, "N10"), 1).alerts
    r2.checkpoint()
    assert [(a.status, a.labels["disk"]) for a in out] == [("resolved", "S10")]
    assert not [k for k in store.data if b"S10" in k]  # the alert and the drive's state are gone from the store
    r3 = Runner(Engine(), ListOutbox(), store)
    r3.restore()
    assert r3.engine.tracker.active == {}
