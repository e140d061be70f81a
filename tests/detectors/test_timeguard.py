"""EventTimeGuard: implausible event times are rejected with a reason and never reach the windows."""

import numpy as np
import pytest

from detectors.events import RequestBatch, RequestEvent
from detectors.features import WindowAggregator
from detectors.timeguard import EventTimeGuard

T0 = 1617696000.0  # 2021-04-06T08:00:00Z
FUTURE = 32503680000.0  # 3000-01-01


def stream(n, rng, hosts=8, rate=20.0, skew=None):
    """n requests of one service, `rate` a second, round-robin over hosts; `skew` = (host, seconds)."""
    evs = []
    for i in range(n):
        host = f"web-{i % hosts}"
        ts = T0 + i / rate + float(rng.uniform(0, 0.01))
        if skew and host == skew[0]:
            ts += skew[1]
        evs.append(RequestEvent(ts, "ent", 200, 100.0, host=host, client_ip=f"10.0.{i % 50}.1"))
    return evs


def guarded(evs, guard, size=500, arrival=None):
    kept, rejected = [], []
    for a in range(0, len(evs), size):
        k, r = guard.split(RequestBatch.of(evs[a : a + size]), 0, arrival)
        kept.extend(k)
        rejected.extend((a + i, why) for i, why in r)
    return kept, rejected


def test_one_far_future_event_is_rejected_and_the_watermark_stays():
    rng = np.random.default_rng(1)
    evs = stream(3000, rng)
    evs.insert(1500, RequestEvent(FUTURE, "ent", 200, 100.0))
    guard = EventTimeGuard(clock=None)
    kept, rejected = guarded(evs, guard)
    assert [i for i, _ in rejected] == [1500]
    assert "ahead" in rejected[0][1] and "3000-01-01" in rejected[0][1]
    assert guard.rejected == {"ahead": 1}
    agg = WindowAggregator()
    agg.add_batch(kept)
    assert agg.watermark == max(e.ts for e in evs if e.ts < FUTURE)
    # without the guard, the one event moves the watermark by almost a millennium
    raw = WindowAggregator()
    raw.add_batch(evs)
    assert raw.watermark == FUTURE


def test_a_minority_host_six_hours_ahead_loses_only_its_own_events():
    rng = np.random.default_rng(2)
    evs = stream(4000, rng, hosts=5, skew=("web-3", 6 * 3600.0))
    guard = EventTimeGuard(clock=None)
    kept, rejected = guarded(evs, guard)
    assert {evs[i].host for i, _ in rejected} == {"web-3"}
    assert len(rejected) == sum(e.host == "web-3" for e in evs)
    assert all(e.host != "web-3" for e in kept)
    assert guard.rejected["ahead"] == len(rejected) and not guard.rejected["behind"]


def test_a_host_far_behind_is_rejected_as_behind():
    rng = np.random.default_rng(3)
    evs = stream(2000, rng, hosts=4, skew=("web-1", -2 * 3600.0))
    guard = EventTimeGuard(clock=None)
    kept, rejected = guarded(evs, guard)
    assert {evs[i].host for i, _ in rejected} == {"web-1"}
    assert all("behind" in why for _, why in rejected)
    assert guard.rejected == {"behind": 500}


def test_late_events_within_max_behind_and_ordinary_jitter_are_kept():
    rng = np.random.default_rng(4)
    evs = stream(2000, rng, hosts=4, skew=("web-1", -600.0))  # ten minutes behind: a slow shipper
    evs += stream(100, rng, hosts=4, skew=("web-2", 120.0))  # two minutes ahead
    kept, rejected = guarded(evs, EventTimeGuard(clock=None))
    assert rejected == [] and len(kept) == len(evs)


def test_a_gap_in_a_recording_is_crossed():
    # a whole source jumps an hour ahead (a gap in the recording): at most span/2 events are lost
    rng = np.random.default_rng(5)
    evs = stream(1000, rng) + [RequestEvent(e.ts + 3600, e.service, 200, 1.0) for e in stream(1000, rng)]
    guard = EventTimeGuard(clock=None, span=128)
    kept, rejected = guarded(evs, guard)
    assert len(rejected) <= 64
    assert all(1000 <= i < 1000 + 64 for i, _ in rejected)
    assert kept[-1].ts == evs[-1].ts


def test_arrival_time_is_the_reference_when_known():
    rng = np.random.default_rng(6)
    evs = stream(300, rng)
    guard = EventTimeGuard(max_ahead=60.0, clock=None)
    # every producer's clock ahead of the arrival by ten minutes: all rejected, whatever the median says
    kept, rejected = guard.split(RequestBatch.of(evs), 0, arrival=T0 - 600)
    assert len(kept) == 0 and len(rejected) == 300
    assert "arrival time" in rejected[0][1]
    # a consumer catching up on hours of backlog: the wall clock is far ahead of the events, nothing is rejected
    kept, rejected = EventTimeGuard(clock=None).split(RequestBatch.of(evs), 0, arrival=T0 + 5 * 3600)
    assert rejected == [] and len(kept) == 300


def test_the_first_event_of_a_replay_is_bounded_by_the_machine_clock():
    guard = EventTimeGuard(clock=lambda: T0 + 86400)
    assert "clock of this machine" in guard.check(FUTURE, source=1)
    assert guard.check(T0, source=2) is None


def test_per_event_check_for_disk_readings_and_sources_are_separate():
    guard = EventTimeGuard(clock=None, span=31)
    for i in range(40):
        assert guard.check(T0 + 600 * i / 40, source=0) is None
    assert guard.check(FUTURE, source=0).startswith("event time 3000-01-01")
    assert guard.check(T0 + 30 * 86400, source=0) is not None  # a month ahead
    assert guard.check(T0 + 30 * 86400, source=1) is None  # another source has its own history
    assert guard.rejected["ahead"] == 2
    assert guard.reference(0) == pytest.approx(T0 + 600, abs=60)  # about the latest reading
    guard.forget({0})
    assert guard.reference(0) is None


def test_parameters_are_checked():
    with pytest.raises(ValueError):
        EventTimeGuard(max_ahead=0)
    with pytest.raises(ValueError):
        EventTimeGuard(span=0)


def test_the_reference_is_numpys_percentiles_to_the_last_bit():
    """The pure-Python quantiles of the guard against numpy.percentile (which the guard used), on awkward samples."""
    from detectors.timeguard import _estimate

    rng = np.random.default_rng(18)
    for n in [1, 2, 3, 5, 127, 128]:
        for _ in range(200):
            xs = (T0 + rng.normal(0, 1e4, n)).tolist() if rng.random() < 0.5 else \
                (T0 + rng.integers(0, 4, n) * 0.001).tolist()  # ties
            q40, q50, q60 = np.percentile(np.array(xs), (40.0, 50.0, 60.0))
            assert _estimate(sorted(xs)) == float(q50 + 2.5 * (q60 - q40))


def test_disk_readings_one_at_a_time_are_judged_as_a_batch_of_one_each():
    """check() (a sorted window kept by bisect) gives the verdicts split() gives to batches of one event."""
    rng = np.random.default_rng(5)
    times = [T0 + i * 30.0 + float(rng.uniform(0, 5)) for i in range(600)]
    times[300] = FUTURE
    times[400] = T0 - 86400.0
    one, many = EventTimeGuard(clock=None, span=64), EventTimeGuard(clock=None, span=64)
    got = [one.check(t, 3) for t in times]
    want = []
    for t in times:
        _, r = many.split(RequestBatch.of([RequestEvent(t, "d", 200, 1.0)]), 3)
        want.append(r[0][1] if r else None)
    assert got == want
    assert [i for i, why in enumerate(got) if why] == [300, 400]
    assert one.reference(3) == many.reference(3)
