"""DiskFailureDetector on seeded synthetic drives (no dependence on shared data)."""

from __future__ import annotations

import random

import pytest

from detectors.disk import DiskFailureDetector, DiskVerdict, DriveState
from detectors.events import DiskHealthEvent

DAY = 86400.0
T0 = 1_600_000_000.0


def drive(
    seed: int,
    days: int = 40,
    smart5=lambda d, r: 0.0,
    smart197=lambda d, r: 0.0,
    latency=None,
    errors=None,
    poh_stall_from: int | None = None,
    disk: str = "d1",
    model: str = "ACME 4TB",
    fail: bool = False,
) -> list[DiskHealthEvent]:
    """A daily series of readings of one synthetic drive."""
    r = random.Random(seed)
    poh = r.uniform(1_000, 30_000)
    out = []
    for d in range(days):
        if poh_stall_from is None or d < poh_stall_from:
            poh += 24.0
        smart = {
            "1": r.uniform(0, 2e8),
            "5": float(smart5(d, r)),
            "9": poh,
            "194": float(r.randint(20, 35)),
            "197": float(smart197(d, r)),
        }
        out.append(
            DiskHealthEvent(
                ts=T0 + d * DAY + r.uniform(-600, 600),
                host="node-1",
                disk=disk,
                smart=smart,
                model=model,
                io_latency_ms=None if latency is None else float(latency(d, r)),
                io_errors=None if errors is None else int(errors(d, r)),
                failure=True if fail and d == days - 1 else None,
            )
        )
    return out


def replay(det: DiskFailureDetector, events: list[DiskHealthEvent]) -> list[DiskVerdict]:
    state = None
    verdicts = []
    for ev in events:
        verdicts.append(det.score_one(ev, state))
        state = det.learn_one(ev, state)
    return verdicts


@pytest.mark.parametrize("seed", range(5))
def test_constant_nonzero_reallocated_count_is_not_flagged(seed):
    events = drive(seed, days=60, smart5=lambda d, r: 1479.0, smart197=lambda d, r: 8.0)
    verdicts = replay(DiskFailureDetector(), events)
    assert not any(v.flagged for v in verdicts)
    assert max(v.score for v in verdicts) < 0.1


@pytest.mark.parametrize("seed", range(5))
def test_healthy_drives_with_noisy_vendor_attributes_are_not_flagged(seed):
    # SMART 1 and 194 swing wildly; they must not matter.
    verdicts = replay(DiskFailureDetector(), drive(seed, days=90))
    assert not any(v.flagged for v in verdicts)


@pytest.mark.parametrize("attr", ["5", "197"])
def test_rising_counter_is_flagged_with_evidence_naming_it(attr):
    def rising(d, r):
        return 0.0 if d < 20 else float(4 * (d - 19) + r.randint(0, 3))

    kw = {"smart5": rising} if attr == "5" else {"smart197": rising}
    verdicts = replay(DiskFailureDetector(), drive(3, days=40, **kw))
    flagged = [i for i, v in enumerate(verdicts) if v.flagged]
    assert flagged, "a climbing error counter must be flagged"
    assert flagged[0] >= 20  # not before it starts to climb
    assert flagged[0] <= 26  # and within days of it
    v = verdicts[-1]
    assert v.signal == f"smart_{attr}_raw"
    assert v.evidence and v.evidence[0].startswith(f"SMART {attr} (")
    assert "rose from 0 to" in v.evidence[0]
    assert v.value > v.expected == 0.0


def test_rising_latency_with_io_errors_is_flagged():
    def latency(d, r):
        return r.gauss(8.0, 0.8) if d < 25 else 8.0 * 1.35 ** (d - 24)

    def errors(d, r):
        return 0 if d < 27 else r.randint(2, 9)

    verdicts = replay(DiskFailureDetector(), drive(5, days=35, latency=latency, errors=errors))
    assert not any(v.flagged for v in verdicts[:25])
    assert any(v.flagged for v in verdicts[25:])
    v = verdicts[-1]
    assert v.flagged and v.signal in ("io_latency_ms", "io_errors")
    assert any("I/O latency" in e for e in v.evidence)
    assert any("I/O errors" in e for e in v.evidence)


def test_noisy_but_steady_latency_is_not_flagged():
    verdicts = replay(
        DiskFailureDetector(),
        drive(6, days=120, latency=lambda d, r: r.lognormvariate(2.0, 0.25), errors=lambda d, r: 0),
    )
    assert not any(v.flagged for v in verdicts)


def test_power_on_hours_that_stop_advancing_are_flagged():
    verdicts = replay(DiskFailureDetector(), drive(7, days=30, poh_stall_from=25))
    assert not any(v.flagged for v in verdicts[:25])
    assert verdicts[-1].flagged and verdicts[-1].signal == "smart_9_raw"
    assert "power-on hours" in verdicts[-1].evidence[0]


def test_first_readings_are_warming_up():
    verdicts = replay(DiskFailureDetector(), drive(8, days=5))
    assert verdicts[0].warming_up and not verdicts[-1].warming_up


def _same(a: DiskVerdict, b: DiskVerdict) -> bool:
    return repr(a) == repr(b)  # repr: NaN-safe equality


@pytest.mark.parametrize("seed", range(4))
def test_state_round_trip_gives_identical_verdicts(seed):
    det = DiskFailureDetector()
    r = random.Random(seed)
    events = drive(
        seed,
        days=50,
        smart5=lambda d, rr: 0.0 if d < 30 else 3.0 * (d - 29),
        latency=lambda d, rr: rr.gauss(6.0, 1.0) if d < 40 else 30.0,
        errors=lambda d, rr: int(d > 42),
        poh_stall_from=r.choice([None, 45]),
    )
    state = None
    for ev in events:
        copy = None if state is None else DriveState.from_bytes(state.to_bytes())
        assert _same(det.score_one(ev, state), det.score_one(ev, copy))
        state = det.learn_one(ev, state)
        copy = det.learn_one(ev, copy)
        assert state.to_bytes() == copy.to_bytes()
    assert len(state.to_bytes()) < 1024


def test_shared_model_learns_from_labels_and_round_trips():
    det = DiskFailureDetector(learning_rate=0.05, negative_after_days=10.0)
    before = det.weights
    for k in range(6):
        replay(det, drive(100 + k, days=20, smart5=lambda d, r: d // 2, disk=f"f{k}", fail=True))
        replay(det, drive(200 + k, days=25, disk=f"h{k}"))
    after = det.weights
    assert after != before
    assert after["rise_5"] > before["rise_5"]  # failed drives all showed rising SMART 5
    clone = DiskFailureDetector.from_bytes(
        det.to_bytes(), learning_rate=0.05, negative_after_days=10.0
    )
    assert clone.weights == after
    events = drive(9, days=30, smart5=lambda d, r: max(0, d - 20))
    assert [repr(v) for v in replay(det, events)] == [repr(v) for v in replay(clone, events)]


def test_no_learning_by_default():
    det = DiskFailureDetector()
    before = det.to_bytes()
    replay(det, drive(1, days=20, smart5=lambda d, r: d, fail=True))
    assert det.weights == DiskFailureDetector().weights
    assert len(before) < 64 * 1024


@pytest.mark.parametrize("seed", range(6))
def test_scores_stay_in_unit_interval(seed):
    r = random.Random(seed)
    det = DiskFailureDetector(learning_rate=0.1)
    states: dict[str, DriveState] = {}
    for i in range(3000):
        disk = f"d{r.randrange(30)}"
        smart = {
            k: r.choice([0.0, 1.0, r.uniform(0, 1e9), 65535.0])
            for k in ("5", "9", "187", "188", "197", "198")
        }
        ev = DiskHealthEvent(
            ts=T0 + i * 3600.0,
            host="h",
            disk=disk,
            smart=smart,
            model=r.choice([None, "A", "B"]),
            io_latency_ms=r.choice([None, 0.0, r.expovariate(0.01)]),
            io_errors=r.choice([None, 0, r.randrange(10**6)]),
            failure=r.random() < 0.01 or None,
        )
        v = det.score_one(ev, states.get(disk))
        assert 0.0 <= v.score <= 1.0
        assert v.flagged == (v.score >= det.threshold) or abs(v.score - det.threshold) < 1e-9
        states[disk] = det.learn_one(ev, states.get(disk))


def test_constructor_arguments_are_stored_and_validated():
    det = DiskFailureDetector(threshold=0.8, bias=-5.0, learning_rate=0.01)
    assert (det.threshold, det.bias, det.learning_rate) == (0.8, -5.0, 0.01)
    with pytest.raises(ValueError):
        DiskFailureDetector(threshold=1.5)


def _fleet(det: DiskFailureDetector, model: str, n: int, days: int, **kw) -> None:
    """Replay ``n`` healthy drives of one model, interleaved by day, so the model's rates are learned."""
    series = [drive(300 + k, days=days, disk=f"{model}-{k}", model=model, **kw) for k in range(n)]
    states: dict[str, DriveState] = {}
    for d in range(days):
        for s in series:
            ev = s[d]
            det.score_one(ev, states.get(ev.disk))
            states[ev.disk] = det.learn_one(ev, states.get(ev.disk))


def _spike(d, r):
    return 0.0 if d < 20 else 16.0  # one jump, larger than a tick


def test_a_one_off_pending_sector_jump_is_not_flagged_even_in_a_model_where_it_is_rare():
    # One-off SMART 197 jumps are common on some healthy models (issue 19); a
    # pending-sector count counts once seen on two readings (a confirmed rise).
    quiet = DiskFailureDetector()
    _fleet(quiet, "ACME 4TB", 40, 30)  # healthy drives of this model never show SMART 197
    verdicts = replay(quiet, drive(11, days=21, smart197=_spike))
    assert not any(v.flagged for v in verdicts)
    assert quiet.weights["spike_197"] == 0.0


def test_slow_power_on_hours_count_only_in_a_model_where_they_are_rare():
    def slow(seed):
        events = drive(seed, days=25)
        out = []
        for i, ev in enumerate(events):  # the last 2 days advance 12 h, not 24
            poh = ev.smart["9"] - 12.0 * max(0, i - 22)
            out.append(
                ev.__class__(
                    **{
                        **{f: getattr(ev, f) for f in ev.__struct_fields__},
                        "smart": {**ev.smart, "9": poh},
                    }
                )
            )
        return out

    det = DiskFailureDetector()
    _fleet(det, "ACME 4TB", 40, 30)
    verdicts = replay(det, slow(12))
    assert not any(v.flagged for v in verdicts[:23])
    assert verdicts[-1].flagged and verdicts[-1].signal == "smart_9_raw"
    assert "too slowly" in verdicts[-1].evidence[0]
    # a fresh detector knows nothing of the model yet: slow hours alone are not evidence
    assert not any(v.flagged for v in replay(DiskFailureDetector(), slow(12)))


def test_version_1_drive_state_still_reads():
    import struct

    state = None
    det = DiskFailureDetector()
    for ev in drive(4, days=10, smart5=lambda d, r: float(d)):
        state = det.learn_one(ev, state)
    b = state.to_bytes()
    head = struct.Struct("<BIHHHI7d")
    v = head.unpack_from(b)
    v1 = struct.pack("<BIHHI7d", 1, *v[1:4], *v[5:]) + b[head.size :]
    assert len(v1) == 279
    assert DriveState.from_bytes(v1) == state


# --------------------------------------------------------------------------- issue 13 item 6, issue 19


def _ticks(seed: int, disk: str, latency=None) -> list[DiskHealthEvent]:
    """A healthy drive whose SMART 5, 187, 197 and 198 tick by 1 on day 10, SMART 5 once more on day 20."""
    out = []
    for ev in drive(seed, days=40, disk=disk, latency=latency, errors=None if latency is None else (lambda d, r: 0)):
        d = round((ev.ts - T0) / DAY)
        one = 1.0 if d >= 10 else 0.0
        smart = {**ev.smart, "5": one + (d >= 20), "187": one, "197": one, "198": one}
        out.append(DiskHealthEvent(ts=ev.ts, host=ev.host, disk=ev.disk, smart=smart, model=ev.model,
                                   io_latency_ms=ev.io_latency_ms, io_errors=ev.io_errors))
    return out


def test_one_or_two_small_ticks_that_stay_flat_are_not_flagged():
    off = DiskFailureDetector(tick_max=0.0)  # without the rule, these ticks alone are flagged
    _fleet(off, "ACME 4TB", 40, 30)  # a model whose healthy drives never tick: ticks are rare
    assert any(v.flagged for v in replay(off, _ticks(21, "ticker")))

    det = DiskFailureDetector()
    _fleet(det, "ACME 4TB", 40, 30)
    assert not any(v.flagged for v in replay(det, _ticks(21, "ticker")))
    # the same with I/O latency a little above its usual level on the days of the ticks
    lat = _ticks(21, "ticker2", latency=lambda d, r: 8.8 if d in (10, 11, 20, 21) else 8.0)
    assert not any(v.flagged for v in replay(det, lat))


def test_one_large_jump_is_a_warning_at_most_until_the_counter_keeps_rising():
    det = DiskFailureDetector()
    _fleet(det, "ACME 4TB", 40, 30)

    def jump(d, r):
        return 0.0 if d < 10 else (64.0 if d < 30 else 64.0 + 16 * (d - 29))

    verdicts = replay(det, drive(22, days=35, smart5=jump, disk="jumper"))
    assert verdicts[10].flagged and verdicts[10].score < 0.9  # the engine pages from 0.9 on
    assert all(v.score < 0.9 for v in verdicts[:30])
    assert max(v.score for v in verdicts[30:]) >= 0.9  # then it keeps rising: a page


def test_a_counter_that_creeps_on_every_drive_of_a_model_alerts_none_of_them():
    det = DiskFailureDetector()
    r = random.Random(5)
    states: dict[str, DriveState] = {}
    flagged = set()
    base = {f"c{k}": r.uniform(50, 80) for k in range(60)}
    for d in range(40):
        for k in range(60):  # 60 drives of a model whose SMART 188 creeps, day by day
            disk = f"c{k}"
            base[disk] += r.choice([0.0, 0.0, 1.0, 2.0])
            ev = DiskHealthEvent(ts=T0 + d * DAY, host="h", disk=disk, model="CREEP 160GB",
                                 smart={"5": 0.0, "9": 1000.0 + 24 * d, "188": float(int(base[disk]))})
            if det.score_one(ev, states.get(disk)).flagged:
                flagged.add(disk)
            states[disk] = det.learn_one(ev, states.get(disk))
    assert not flagged


def test_io_latency_only_fault_is_flagged_and_nightly_backup_io_is_not():
    """Readings every 10 minutes; a daily load pattern; no SMART warning at all."""
    r = random.Random(9)
    step = 600.0

    def reading(disk, i, lat, errs):
        return DiskHealthEvent(ts=T0 + i * step, host="db-1", disk=disk, model="ACME 4TB",
                               smart={"5": 0.0, "197": 0.0, "9": 5000.0 + i * step / 3600.0},
                               io_latency_ms=lat, io_errors=errs)

    n = 3 * 144  # three days
    fault_from = n - 9  # the last 90 minutes: latency and errors climb
    bad, backup = [], []
    for i in range(n):
        hour = (i * step / 3600.0) % 24
        usual = 6.0 * (1.0 + 0.25 * (8 <= hour < 18)) * r.lognormvariate(0.0, 0.08)
        p = max(0, i - fault_from) / 9
        bad.append(reading("sick", i, usual * (1.0 + 5.0 * p * p), int(r.random() < p) * r.randint(1, 6)))
        night = 3.0 if 1 <= hour < 3 else 1.0  # the nightly backup triples latency for two hours
        backup.append(reading("backup", i, usual * night, 1 if r.random() < 0.002 else 0))
    vb = replay(DiskFailureDetector(), bad)
    assert not any(v.flagged for v in vb[:fault_from])
    hit = [i for i, v in enumerate(vb) if v.flagged]
    assert hit and hit[0] - fault_from <= 6, hit  # within an hour of the onset
    assert vb[hit[0]].signal in ("io_latency_ms", "io_errors")
    assert any("I/O latency" in e for e in vb[-1].evidence)
    assert not any(v.flagged for v in replay(DiskFailureDetector(), backup))


def test_evidence_names_the_counter_against_its_model():
    det = DiskFailureDetector()
    _fleet(det, "ACME 4TB", 40, 30)

    def rising(d, r):
        return 0.0 if d < 5 else float(8 * (d - 4))

    v = replay(det, drive(23, days=15, smart197=rising, disk="x"))[-1]
    assert v.flagged
    assert v.evidence[0].startswith("SMART 197 (pending sectors) rose from 0 to 80 in 10 days; "), v.evidence
    assert "SMART 197 rises in 0% of 1160 healthy readings of model ACME 4TB" in v.evidence[0]


def test_previous_release_model_bytes_still_read():
    import struct

    from detectors.disk import PRIOR_WEIGHTS

    det = DiskFailureDetector()
    _fleet(det, "ACME 4TB", 5, 4)
    w = list(PRIOR_WEIGHTS[:-1])
    counts = struct.pack("<4d", 15.0, 1.0, 0.0, 0.0)
    old = struct.pack("<BII" + "d" * len(w), 2, 0, 0, *w) + struct.pack("<H", 1)
    old += struct.pack("<B", 8) + b"ACME 4TB" + counts
    clone = DiskFailureDetector.from_bytes(old)
    assert clone.weights == DiskFailureDetector().weights
    assert clone._family["ACME 4TB"] == [15.0, 1.0, 0.0, 0.0] + [0.0] * (len(det._family[""]) - 4)
    again = DiskFailureDetector.from_bytes(det.to_bytes())
    assert again._family == det._family and again.to_bytes() == det.to_bytes()
    assert len(det.to_bytes()) < 1000  # two models' counts and the weights
