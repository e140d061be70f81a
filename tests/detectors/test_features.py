"""WindowAggregator.add_batch against add, one event at a time (the reference).

Every test runs twice: add_batch through detectors/_native.c (when the
install built it) and without it (add for each event).
"""

import math
import random
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import detectors.features
from detectors.events import RequestEvent
from detectors.features import WindowAggregator

T0 = 1617692400.0
NATIVE = detectors.features._native


@pytest.fixture(autouse=True, params=["native", "python"])
def batch_path(request, monkeypatch):
    """The path add_batch takes in this test (new aggregators take it)."""
    if request.param == "native":
        if NATIVE is None:
            pytest.skip("detectors._native is not built (pure Python install)")
    else:
        monkeypatch.setattr(detectors.features, "_native", None)
    assert WindowAggregator().native == (request.param == "native")
    return request.param


def events(n, seed=1, services=3, disorder=0.0, rate=2.0, clients=400, endpoints=90, agents=300, hosts=4):
    """Requests of a few services; ``disorder`` seconds of jitter in arrival order (below the lateness)."""
    rnd = random.Random(seed)
    out = []
    t = T0
    for _ in range(n):
        t += rnd.expovariate(rate)
        ts = round(t + (rnd.uniform(-disorder, 0) if disorder else 0.0), 3)
        svc = f"svc-{rnd.randrange(services)}"
        out.append(RequestEvent(
            ts, svc, rnd.choice([200, 200, 200, 304, 404, 429, 500, 503]), round(rnd.expovariate(1 / 150), 1),
            endpoint=rnd.choice([None, f"/e{rnd.randrange(endpoints)}", "/home"]),
            host=rnd.choice([None, f"{svc}-web-{rnd.randrange(hosts)}"]),
            client_ip=rnd.choice([None, f"10.0.{rnd.randrange(clients) % 256}.{rnd.randrange(clients) // 256}",
                                  "10.9.9.9"]),
            country=rnd.choice([None, "FR", "FR", "BE", "MA"]),
            asn=rnd.choice([None, 3215, 16509, 14061]),
            user_agent=rnd.choice([None, f"agent/{rnd.randrange(agents)}", "Mozilla"]),
        ))
    return out


def state(agg):
    return {
        name: (svc.closed_until, svc.watermark, svc.rotated_at, [bytes(s) for s in svc.seen.cur],
               [bytes(s) for s in svc.seen.prev], svc.seen.fill,
               svc.source, sorted(svc.windows))
        for name, svc in agg._services.items()
    }, dict(agg._sources), dict(agg._source_boundary), agg.watermark, agg.late_events


def per_event(agg, evs, source=0):
    """add for each event, closing what is due after each (as Engine.process_request)."""
    out = []
    for e in evs:
        agg.add(e, source)
        if agg.due():
            out.append(agg.advance())
    return out


def batched(agg, evs, sizes, source=0):
    out = []
    i = 0
    while i < len(evs):
        n = sizes[len(out) % len(sizes)]
        out.extend(agg.close_steps(agg.add_batch(evs[i:i + n], source), source))
        i += n
    return [w for w in out if w]


@pytest.mark.parametrize(
    ("kwargs", "agg_kwargs", "sizes"),
    [
        ({}, {}, [3000]),
        ({}, {}, [1, 7, 15, 16, 17, 500]),  # small batches go event by event
        ({"disorder": 4.0}, {}, [777]),  # out of window order, but never late
        ({}, {"seen_rotation": 300.0}, [1000, 64]),  # the first-time-client filter rotates inside batches
        ({"clients": 20, "endpoints": 5, "agents": 5}, {}, [2000]),
        ({"services": 1, "rate": 5.0}, {"seen_bits": 1 << 10}, [4096]),  # a small filter: collisions
    ],
)
def test_add_batch_is_add_for_each(kwargs, agg_kwargs, sizes):
    evs = events(12_000, **kwargs)
    a = WindowAggregator(**agg_kwargs)
    b = WindowAggregator(**agg_kwargs)
    wa = [w for ws in per_event(a, evs) for w in ws]
    wb = [w for ws in batched(b, evs, sizes) for w in ws]
    assert a.late_events == 0
    assert wa == wb and len(wa) > 30
    assert any(w.new_client_share for w in wa)
    assert state(a) == state(b)
    assert open_windows(a) == open_windows(b)
    assert a.flush() == b.flush()


def open_windows(agg):
    return {
        (name, s): (w.n, w.n5xx, w.n429, w.n4xx, w.hist.bins, list(w.hist.bins), w.hist.n,
                    {h: (c, e, hist.bins) for h, (c, e, hist) in w.hosts.items()}, list(w.hosts),
                    bytes(w.hll.reg), w.top.counts, list(w.top.counts), w.top.total, w.new,
                    w.countries, list(w.countries), w.hosting, w.hosting_by, list(w.hosting_by),
                    w.endpoints, list(w.endpoints), w.agents, list(w.agents), w.with_ip)
        for name, svc in agg._services.items() for s, w in svc.windows.items()
    }


@pytest.mark.parametrize("split", [[5000], [100, 900, 4000], [3000, 2000], [10, 4990]])
def test_capped_counts_and_sketches_of_a_busy_window(split):
    """One window of one service with more endpoints, agents and clients than the caps: same dicts, same order."""
    evs = [e for e in events(5000, seed=5, services=1, rate=100.0, clients=2000, endpoints=150, agents=600)]
    a = WindowAggregator(window=3600.0)
    b = WindowAggregator(window=3600.0)
    for e in evs:
        a.add(e)
    i = 0
    for n in split:
        b.add_batch(evs[i:i + n])
        i += n
    wa = open_windows(a)
    assert wa == open_windows(b)
    (w,) = a._services["svc-0"].windows.values()
    assert "(other)" in w.endpoints and "(other)" in w.agents and len(w.top.counts) == 32


def test_add_batch_closes_at_the_same_points():
    evs = events(6000)
    a = WindowAggregator()
    b = WindowAggregator()
    closes_a = [[(w.service, w.start) for w in ws] for ws in per_event(a, evs) if ws]
    closes_b = [[(w.service, w.start) for w in ws] for ws in batched(b, evs, [2500])]
    assert closes_a == closes_b


def test_two_sources_in_batches():
    evs0 = events(5000, seed=2)
    evs1 = [RequestEvent(e.ts - 600, "lagging-" + e.service, e.status, e.latency_ms, host=e.host,
                         client_ip=e.client_ip) for e in events(5000, seed=3)]
    a = WindowAggregator()
    b = WindowAggregator()
    wa, wb = [], []
    for i in range(0, 5000, 500):
        wa += [w for ws in per_event(a, evs0[i:i + 500], 0) + per_event(a, evs1[i:i + 500], 1) for w in ws]
        wb += [w for ws in batched(b, evs0[i:i + 500], [500], 0) + batched(b, evs1[i:i + 500], [500], 1)
               for w in ws]
    assert wa == wb and a.late_events == b.late_events == 0
    assert state(a) == state(b) and a.low_watermark() == b.low_watermark()


def test_in_a_batch_a_late_event_lands_in_its_own_window():
    """The one difference: windows close between batches, not inside one.

    What add counts late into the oldest open window (its own closed earlier
    in the batch), add_batch counts into its own window.
    """
    evs = [RequestEvent(T0 + s, "s", 200, 10.0) for s in (1.0, 61.0, 59.0)] * 6  # 59 after 61: late per event
    a = WindowAggregator(window=60.0, lateness=0.0)
    per_event(a, evs)
    assert a.late_events == 11
    b = WindowAggregator(window=60.0, lateness=0.0)
    closed = [w for step in b.close_steps(b.add_batch(evs)) for w in step]
    assert b.late_events == 0
    assert [(w.start, w.count) for w in closed] == [(T0, 12)]


def test_heavy_hitters_and_latency_bins():
    import math

    from detectors.sketches import LogHistogram, SpaceSaving, log_bin

    rnd = random.Random(9)
    for _ in range(2000):
        a = SpaceSaving(rnd.choice([1, 2, 4, 32]))
        exact: dict[str, int] = {}
        for _ in range(rnd.randint(1, 4)):
            for x in [str(rnd.randint(0, rnd.choice([3, 30, 300]))) for _ in range(rnd.randint(0, 120))]:
                a.add(x)
                exact[x] = exact.get(x, 0) + 1
        assert len(a.counts) <= a.k and a.total == sum(exact.values())
        # SpaceSaving never under-counts a key it holds
        assert all(c >= exact[x] for x, c in a.counts.items())
        assert a.top(10) == sorted(a.counts.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
    values = [rnd.uniform(0, 1e4) for _ in range(20000)] + [math.expm1(b / LogHistogram._K) for b in range(400)] + [0.0]
    assert [log_bin(v) for v in values] == [int(math.log1p(v) * LogHistogram._K) for v in values]
    h = LogHistogram()
    for v in values[:3000]:
        h.add(v)
    items = sorted(h.bins.items())
    for q in (0.0, 0.5, 0.95, 0.99, 1.0):
        acc = 0
        for b, c in items:
            acc += c
            if acc >= q * h.n:
                assert h.quantile(q) == math.expm1((b + 0.5) / h._K)
                break


@pytest.mark.parametrize("sizes", [[3000], [1, 150, 199, 200, 2450]])
def test_add_batch_of_a_decoded_batch_is_add_for_each(sizes):
    """The RequestBatch of decode_requests (columns, no RequestEvents) counts as add of each decoded event."""
    import datetime

    import orjson

    from detectors.events import RequestBatch, decode_request, decode_requests

    def ts(i, t):  # both forms of the time
        if i % 3:
            return t
        d = datetime.datetime.fromtimestamp(t, datetime.UTC)
        return d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{d.microsecond // 1000:03d}Z"

    values = [orjson.dumps({f: getattr(e, f) for f in e.__struct_fields__} | {"ts": ts(i, e.ts)})
              for i, e in enumerate(events(9000, seed=4, disorder=2.0))]
    evs = [decode_request(v) for v in values]
    a = WindowAggregator()
    b = WindowAggregator()
    wa = [w for ws in per_event(a, evs) for w in ws]
    wb, i = [], 0
    while i < len(values):
        n = sizes[len(wb) % len(sizes)]
        batch, bad = decode_requests(values[i:i + n])
        assert isinstance(batch, RequestBatch) and not bad and batch == evs[i:i + n]
        wb.append([w for ws in b.close_steps(b.add_batch(batch)) for w in ws])
        i += n
    assert wa == [w for ws in wb for w in ws] and len(wa) > 30
    assert state(a) == state(b)
    assert open_windows(a) == open_windows(b)
    assert a.flush() == b.flush()


@pytest.mark.skipif(NATIVE is None, reason="detectors._native is not built (pure Python install)")
@pytest.mark.parametrize(
    ("kwargs", "agg_kwargs", "sizes"),
    [
        # late events (disorder beyond the lateness), many services and hosts (the C side's caches overflow)
        ({"disorder": 40.0, "services": 20, "hosts": 12, "rate": 20.0}, {"lateness": 5.0}, [700, 3, 2500]),
        # heavy hitters evicted all the time, the filter rotating and colliding
        ({"clients": 5000, "rate": 50.0}, {"seen_rotation": 200.0, "seen_bits": 1 << 12}, [1000]),
        # caps overflowing; a filter whose size is not a power of two
        ({"clients": 30, "endpoints": 300, "agents": 900, "disorder": 3.0},
         {"window": 10.0, "lateness": 1.0, "seen_bits": 5000}, [64, 4000]),
    ],
)
def test_native_batches_are_add_for_each_batch_for_batch(kwargs, agg_kwargs, sizes, batch_path, monkeypatch):
    """add_batch in C and add for each event, batch for batch, two sources; with late events (closed between batches)."""
    if batch_path == "python":
        pytest.skip("compares the two paths itself")
    evs = events(15_000, **kwargs)
    half = len(evs) // 2
    runs = []
    for native in (True, False):
        agg = WindowAggregator(**agg_kwargs)
        agg.native = native
        out = []
        for source, part in ((0, evs[:half]), (1, evs[half:])):
            out.append(batched(agg, part, sizes, source))
        runs.append((agg, out))
    (c, wc), (p, wp) = runs
    assert wc == wp and sum(len(step) for part in wc for step in part) > 10
    assert state(c) == state(p)
    assert open_windows(c) == open_windows(p)
    assert {(n, s): (w.top.at_min, w.top.min_count) for n, v in c._services.items() for s, w in v.windows.items()} == \
        {(n, s): (w.top.at_min, w.top.min_count) for n, v in p._services.items() for s, w in v.windows.items()}
    assert c.late_events == p.late_events
    if kwargs.get("disorder", 0) > 10:
        assert c.late_events > 0
    assert c.flush() == p.flush()


@pytest.mark.skipif(NATIVE is None, reason="detectors._native is not built (pure Python install)")
def test_native_leaves_rows_it_cannot_read_to_python(batch_path):
    """Rows whose fields are not data descriptors of their type (msgspec fields, slots): NotImplemented, nothing changed."""
    if batch_path == "python":
        pytest.skip("about the native path")

    class Row:
        service, status, latency_ms = "s", 200, 1.0

    agg = WindowAggregator()

    def add_rows(rows, ts):
        return NATIVE.add_rows(agg._services, rows, ts, 0, agg._new_service, 60.0, 5.0, 3600.0, -math.inf,
                               -math.inf)

    assert add_rows([Row()], [T0]) is NotImplemented
    assert add_rows(events(3), [T0, T0, 1]) is NotImplemented  # a time that is not a float
    assert agg._services == {}
    evs = [RequestEvent(0.0, "a", 200, 1.0), RequestEvent(0.0, "b", 200, 1.0), RequestEvent(0.0, "a", 200, 1.0)]
    steps, wm, bnd, late = add_rows(evs, [T0, T0 + 1, T0 + 70])
    assert (steps, wm, bnd, late) == ([T0, T0 + 70], T0 + 70, (T0 + 65) // 60 * 60, 0)
    assert sorted(agg._services) == ["a", "b"] and agg._services["a"].watermark == T0 + 70


def test_edge_latencies_and_addresses_count_as_one_by_one(batch_path):
    """Latencies at the edges of log_bin (0, subnormal, huge) and addresses that are not ASCII or long (hashed in C or asked)."""
    lats = [0.0, -0.0, 5e-324, 1e-300, 0.05, 0.0499999999, 1e15, 1.7e308, 3.0, 30000.7]
    ips = ["10.0.0.1", "", "2001:db8::1", "é.例.test", "x" * 129, "y" * 256, "10.0.0.1 ", "🙂"]
    rnd = random.Random(7)
    evs = [RequestEvent(T0 + i * 0.1, "svc", 200, rnd.choice(lats), client_ip=rnd.choice(ips)) for i in range(3000)]
    one = WindowAggregator()
    batch = WindowAggregator()
    wa = [w for ws in per_event(one, evs) for w in ws]
    assert wa == [w for ws in batched(batch, evs, [700]) for w in ws] and len(wa) >= 4
    assert state(batch) == state(one)
    assert open_windows(batch) == open_windows(one)
    assert batch.flush() == one.flush()


@pytest.mark.skipif(NATIVE is None, reason="detectors._native is not built (pure Python install)")
@settings(max_examples=500, deadline=None)
@given(st.text(max_size=300))
def test_native_hash64_is_the_reference(text):
    """The C hash64 (two table CRCs and the splitmix64 mix, written in C) against sketches.hash64 (zlib, binascii)."""
    from detectors.sketches import hash64

    assert NATIVE.hash64(text) == hash64(text)
    assert NATIVE.hash64("a" * len(text)) == hash64("a" * len(text))  # every length, ASCII


@pytest.mark.skipif(NATIVE is None, reason="detectors._native is not built (pure Python install)")
def test_native_hash64_on_random_addresses_and_texts():
    """Seeded random strings: ASCII and IPv6-like, non-ASCII (2-, 3- and 4-byte UTF-8), empty, long (past 64 KiB)."""
    from detectors.sketches import hash64

    rnd = random.Random(18)
    alphabets = [string.printable, "0123456789abcdef:.", "éàü€例🙂\x00\x7f" + string.ascii_letters]
    texts = ["", " ", "\x00", "a" * 65_536, "é" * 40_000, "🙂" * 70_000]
    for _ in range(3000):
        alpha = rnd.choice(alphabets)
        texts.append("".join(rnd.choice(alpha) for _ in range(rnd.choice([1, 7, 15, 39, rnd.randrange(300)]))))
    texts += [f"{rnd.randrange(256)}.{rnd.randrange(256)}.{rnd.randrange(256)}.{rnd.randrange(256)}"
              for _ in range(2000)]
    for t in texts:
        assert NATIVE.hash64(t) == hash64(t), t[:40]
    with pytest.raises(UnicodeEncodeError):
        NATIVE.hash64("\ud800")  # a lone surrogate: no UTF-8 (as str.encode() says to the reference)
    with pytest.raises(UnicodeEncodeError):
        hash64("\ud800")
