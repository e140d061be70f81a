"""The cause features' learned state (client-mix first-seen tables, the diagnoser's per-service
baselines and capacity) survives a restart through the checkpoint store, is deleted with its
service, and a record that cannot be read is refused without stopping the worker."""

from __future__ import annotations

import logging
import random
from types import SimpleNamespace

import orjson

from detectors.cause_features import ClientMix
from detectors.config import DetectorsConfig, DiagnosisConfig, LimitsConfig
from stream.engine import Engine
from stream.runner import DictStore, ListOutbox, Runner

T0 = 1617667200.0  # 2021-04-06 00:00 UTC
DAY = 86400.0


def _population(seed: int, networks: int = 300) -> list[str]:
    """/24 networks of a service's usual users (domestic ISP blocks)."""
    rng = random.Random(seed)
    return [f"{rng.choice((82, 86, 90, 92))}.{rng.randrange(256)}.{rng.randrange(256)}" for _ in range(networks)]


def _requests(service: str, nets: list[str], start: float, minutes: int, per_minute: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    out = []
    for m in range(minutes):
        for i in range(per_minute):
            ts = start + m * 60 + i * 60.0 / per_minute
            ip = f"{rng.choice(nets)}.{rng.randrange(1, 255)}"
            page = rng.random() < 0.6
            out.append(orjson.dumps({
                "ts": ts, "service": service, "status": 200, "latency_ms": 80.0 + rng.random() * 40,
                "host": f"web-{i % 3}", "client_ip": ip, "asn": 3215 + rng.randrange(5),
                "endpoint": "/home" if page else "/static/app.js", "user_agent": "Mozilla/5.0 Firefox/120.0",
                "country": "FR"}))
    return out


def _feed(runner: Runner, values: list[bytes], partition: int = 0) -> None:
    for i in range(0, len(values), 2000):
        runner.process_request_records(partition, [SimpleNamespace(offset=i + j, value=v)
                                                   for j, v in enumerate(values[i:i + 2000])])


def _config(**limits: int) -> DetectorsConfig:
    # Every client followed and every quiet window's mix read: days of learning in a short test.
    return DetectorsConfig(diagnosis=DiagnosisConfig(mix_sample=1, mix_every=1), limits=LimitsConfig(**limits))


def _days(runner: Runner, service: str, nets: list[str], days: int, seed: int) -> None:
    """A few hours of each day (the tables key networks by day; the hours between do not matter)."""
    for d in range(days):
        _feed(runner, _requests(service, nets, T0 + d * DAY + 9 * 3600, 90, 40, seed + d))


def test_the_client_mix_baselines_come_back_after_a_restart():
    store = DictStore()
    a = Runner(Engine(_config()), ListOutbox(), store)
    nets = _population(1)
    _days(a, "ent", nets, 3, seed=10)
    assert a.checkpoint() > 0
    assert b"r0/mix:ent" in store.data and b"r0/cause:ent" in store.data
    assert a.checkpoint() == 0  # nothing changed since: nothing written

    b = Runner(Engine(_config()), ListOutbox(), store)
    assert b.restore() == len(store.data) and not b.engine.counts["checkpoint.refused"]
    ma, mb = a.engine.mix, b.engine.mix
    assert ma is not None and mb is not None
    assert mb.state_bytes("ent") == ma.state_bytes("ent")
    da, db = a.engine.diagnoser, b.engine.diagnoser
    assert db.service_state_bytes("ent") == da.service_state_bytes("ent")
    assert db._mix_base["ent"].values == da._mix_base["ent"].values and db._mix_base["ent"].n >= 30
    assert db._capacity["ent"].peak_rate == da._capacity["ent"].peak_rate and db._capacity["ent"].n >= 60
    assert set(db._hosts_seen["ent"]) == {"web-0", "web-1", "web-2"}

    # A flash crowd of returning users on day 4: new addresses in the networks seen before.
    rng = random.Random(99)
    crowd = [f"{rng.choice(nets)}.{rng.randrange(1, 255)}" for _ in range(2000)]
    day4 = int((T0 + 3 * DAY) // DAY)
    share = ma.known_net_share("ent", crowd, day4)
    assert share == 1.0 and mb.known_net_share("ent", crowd, day4) == share
    fresh = Engine(_config()).mix
    assert fresh is not None and fresh.known_net_share("ent", crowd, day4) == 0.0  # what a restart gave before

    # Both workers then read the same next day and keep the same tables and baselines
    # (the restarted one's first window is partial, not learned: start both after it).
    nxt = _requests("ent", nets, T0 + 3 * DAY + 9 * 3600, 30, 40, seed=77)
    _feed(a, nxt)
    _feed(b, nxt)
    assert mb.state_bytes("ent") == ma.state_bytes("ent")


def test_an_evicted_service_takes_its_mix_state_out_of_the_store():
    store = DictStore()
    r = Runner(Engine(_config(max_services=2)), ListOutbox(), store)
    for d in range(2):
        start = T0 + d * DAY + 9 * 3600
        both = (_requests("one", _population(2), start, 90, 40, seed=20 + d)
                + _requests("two", _population(3), start, 90, 40, seed=30 + d))
        _feed(r, sorted(both, key=lambda v: orjson.loads(v)["ts"]))
    r.checkpoint()
    assert {b"r0/mix:one", b"r0/cause:one", b"r0/mix:two", b"r0/cause:two"} <= set(store.data)

    _feed(r, _requests("new", _population(4), T0 + 2 * DAY + 9 * 3600, 5, 40, seed=40))
    assert r.engine.counts["services.evicted"] == 1
    (gone,) = {"one", "two"} - set(r.engine.traffic)
    (kept,) = {"one", "two"} - {gone}
    r.checkpoint()
    names = {k.decode() for k in store.data}
    assert not {n for n in names if n.endswith(f":{gone}")}, names
    assert {f"r0/mix:{kept}", f"r0/cause:{kept}", "r0/mix:new"} <= names
    # ...and out of memory.
    d = r.engine.diagnoser
    assert gone not in d._capacity and gone not in d._mix_base and gone not in d._hosts_seen
    assert r.engine.mix is not None and r.engine.mix.state_bytes(gone) is None


def test_a_corrupt_or_old_record_is_refused_and_the_worker_goes_on(caplog):
    store = DictStore()
    a = Runner(Engine(_config()), ListOutbox(), store)
    _days(a, "ent", _population(5), 2, seed=50)
    _days(a, "api", _population(6), 2, seed=60)
    a.checkpoint()
    mix = store.data[b"r0/mix:ent"]
    store.data[b"r0/mix:ent"] = mix[:40]  # cut short
    store.data[b"r0/mix:api"] = bytes([0]) + mix[1:]  # an older version
    cause = store.data[b"r0/cause:ent"]
    store.data[b"r0/cause:ent"] = cause + b"\x00"  # trailing bytes

    b = Runner(Engine(_config()), ListOutbox(), store)
    with caplog.at_level(logging.ERROR, logger="stream.engine"):
        b.restore()
    counts = b.engine.counts
    assert counts["checkpoint.refused"] == 3
    assert counts["checkpoint.refused.mix"] == 2 and counts["checkpoint.refused.cause"] == 1
    text = caplog.text
    assert "'mix:ent' refused" in text and "'cause:ent' refused" in text
    assert "version 0, this worker reads version 1" in text
    # The rest came back, and the refused state starts afresh without stopping anything.
    assert b.engine.traffic["ent"].to_bytes() == a.engine.traffic["ent"].to_bytes()
    assert b.engine.diagnoser.service_state_bytes("api") == a.engine.diagnoser.service_state_bytes("api")
    mb = b.engine.mix
    assert mb is not None and mb.state_bytes("ent") is None and mb.state_bytes("api") is None
    _feed(b, _requests("ent", _population(5), T0 + 2 * DAY + 9 * 3600, 10, 40, seed=51))
    assert mb.state_bytes("ent") is not None and b.engine.counts["windows"] > 0


def test_a_checkpoint_record_stays_bounded_and_small(capsys):
    """Bytes of a service's client-mix record at 10,000 and 1,000,000 clients first seen over a week
    (printed: the report's figure)."""
    rng = random.Random(7)
    sizes = {}
    for n in (10_000, 1_000_000):
        mix = ClientMix(window=60.0, sample_mod=1, max_clients=n)
        rows = [{"service": "s", "client_ip": f"{rng.choice((82, 86, 90))}.{rng.randrange(256)}."
                 f"{rng.randrange(256)}.{rng.randrange(1, 255)}", "endpoint": "/", "status": 200,
                 "user_agent": "x", "asn": rng.randrange(60000)} for _ in range(n)]
        # first seen over a week (the table's worst: days differ from slot to slot)
        mix._rows[("s", 0.0)] = [(float(i % 7) * DAY, r) for i, r in enumerate(rows)]
        mix.close("s", 0.0)
        data = mix.state_bytes("s")
        assert data is not None and len(data) <= 4 + (1 << 16) + (1 << 12)
        other = ClientMix()
        other.load_state("s", data)
        assert other.state_bytes("s") == data
        sizes[n] = len(data)
    with capsys.disabled():
        print(f"\nclient-mix checkpoint record per service: {sizes[10_000]:,} bytes at 10,000 clients, "
              f"{sizes[1_000_000]:,} at 1,000,000")
    assert sizes[10_000] < 40_000
