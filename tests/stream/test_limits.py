"""Caps on tracked keys: floods of random service, host and drive names cannot grow the engine without bound."""

from __future__ import annotations

import random

from detectors.config import DetectorsConfig, LimitsConfig
from detectors.events import DiskHealthEvent, RequestBatch, RequestEvent
from detectors.sketches import SeenFilter, hash64
from stream.engine import Engine

T0 = 1617692400.0


def engine(**limits) -> Engine:
    return Engine(DetectorsConfig(limits=LimitsConfig(**limits)))


def normal(t0: float, seconds: int, services=("ent-a", "ent-b"), rate=20, hosts=3, seed=1):
    rnd = random.Random(seed)
    out = []
    for i in range(seconds * rate):
        svc = services[i % len(services)]
        out.append(RequestEvent(t0 + i / rate, svc, 200, 100.0 + rnd.random() * 20, host=f"{svc}-web-{i % hosts}",
                                client_ip=f"10.0.{rnd.randrange(50)}.{rnd.randrange(250)}"))
    return out


def flood(t0: float, seconds: int, names: int, seed=2):
    rnd = random.Random(seed)
    return [RequestEvent(t0 + i * seconds / names, f"rnd-{rnd.getrandbits(48):012x}", 200, 50.0,
                         host=f"h-{rnd.getrandbits(32):08x}", client_ip="192.0.2.1") for i in range(names)]


def run(eng: Engine, evs, size=500):
    evs = sorted(evs, key=lambda e: e.ts)
    for a in range(0, len(evs), size):
        eng.process_requests(RequestBatch.of(evs[a:a + size]))


def test_a_flood_of_random_service_names_stays_under_the_cap_and_normal_services_keep_their_models():
    eng = engine(max_services=200, max_hosts=300)
    run(eng, normal(T0, 600))  # the normal services are established first
    before = {s: eng.traffic[s].to_bytes() for s in ("ent-a", "ent-b")}
    run(eng, normal(T0 + 600, 600, seed=3) + flood(T0 + 600, 60, 5000))
    assert eng.aggregator.tracked() <= 200
    assert len(eng._host_seen) <= 300
    assert {"ent-a", "ent-b"} <= set(eng.traffic)
    assert all(eng.traffic[s].to_bytes() != before[s] for s in before)  # still learning
    c = eng.counts
    assert c["services.evicted"] + c["services.refused"] + c["services.forgotten"] >= 5000 - 200
    stats = eng.key_stats()
    assert stats["tracked.services"] <= 200 and stats["services.evicted"] == c["services.evicted"]
    # the stray names are gone once quiet for a few windows; the normal ones stay
    run(eng, normal(T0 + 1200, 600, seed=4))
    assert set(eng.traffic) == {"ent-a", "ent-b"}
    assert eng.aggregator.tracked() == 2
    assert c["services.forgotten"] > 0


def test_a_flood_of_random_host_names_evicts_the_least_recently_seen_host_models():
    eng = engine(max_hosts=50)
    rnd = random.Random(5)
    evs = normal(T0, 1200, services=("ent-a",), hosts=3)
    evs += [RequestEvent(T0 + 300 + i * 0.1, "ent-a", 200, 80.0, host=f"h-{rnd.getrandbits(32):08x}")
            for i in range(3000)]
    run(eng, evs)
    assert len(eng._host_seen) <= 50
    assert len([k for k in eng.latency if "|" in k]) <= 50
    assert eng.counts["hosts.evicted"] > 2000
    assert {f"ent-a|ent-a-web-{i}" for i in range(3)} <= set(eng.latency)  # seen every window: never the oldest


def test_refused_when_every_tracked_service_is_in_the_batch():
    eng = engine(max_services=3)
    names = [f"s{i}" for i in range(5)]
    batch = [RequestEvent(T0 + i * 0.01, names[i % 5], 200, 1.0) for i in range(50)]
    eng.process_requests(RequestBatch.of(batch))
    assert eng.aggregator.tracked() == 3
    assert eng.counts["services.refused"] == 2 and eng.counts["requests.refused"] == 20
    # per event too
    eng.process_request(RequestEvent(T0 + 1, "s4", 200, 1.0))
    assert eng.aggregator.is_tracked("s4") and eng.counts["services.evicted"] >= 1


def test_young_idle_services_are_forgotten_and_their_checkpoints_deleted():
    eng = engine(young_requests=100, young_idle_windows=3)
    eng.dirty_states()  # a worker that checkpoints
    run(eng, normal(T0, 300, services=("ent-a",)) + [RequestEvent(T0 + 10, "stray", 200, 1.0)])
    assert "stray" in eng.traffic or eng.aggregator.is_tracked("stray") or eng.counts["services.forgotten"]
    run(eng, normal(T0 + 300, 300, services=("ent-a",)))
    assert not eng.aggregator.is_tracked("stray") and "stray" not in eng.traffic
    assert eng.counts["services.forgotten"] == 1
    states = eng.dirty_states()
    assert states.get("traffic:stray", b"") is None
    assert states["traffic:ent-a"] is not None


def test_drives_are_evicted_least_recently_seen_first():
    eng = engine(max_drives=10)
    for i in range(30):
        for d in (0, 1, 2, i + 3):  # drives 0-2 read every round, the others once
            eng.process_disk(DiskHealthEvent(T0 + 600 * i + d, "h1", f"d{d}", {"5": 0.0, "9": 1000.0 + i}))
    assert len(eng.drives) == 10
    assert {"h1/d0", "h1/d1", "h1/d2"} <= set(eng.drives)
    assert eng.counts["drives.evicted"] == 30 + 3 - 10


def test_seen_filter_memory_grows_with_clients_and_stays_bounded():
    small, big = SeenFilter(), SeenFilter()
    assert small.nbytes() == 512
    false_positives = sum(big.check_and_add(hash64(f"10.{i // 65536}.{i // 256 % 256}.{i % 256}")) for i in range(1000))
    assert false_positives < 20  # about 0.5% a slice
    assert big.nbytes() < 16 * 1024
    for i in range(1000, 2_000_000, 7):
        big.check_and_add(hash64(f"c{i}"))
    assert big.nbytes() <= (1 << 20) // 8  # the cap of a generation, whatever the clients
    big.rotate()
    assert big.nbytes() <= (1 << 20) // 8 + 512
    # what was seen before the rotation is still seen (the older generation)
    assert big.check_and_add(hash64("10.0.0.5"))
