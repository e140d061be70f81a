"""The client mix: what tells users from automation, measured on real request batches."""

from detectors.cause_features import ClientMix, _network
from detectors.events import RequestBatch, RequestEvent

DAY = 86400.0


def _rows(n, ip, ep="/page", status=200, ua="Mozilla", service="s"):
    return [{"service": service, "client_ip": ip(i), "endpoint": ep(i) if callable(ep) else ep,
             "status": status, "user_agent": ua(i) if callable(ua) else ua} for i in range(n)]


def _close(mix, rows, t0, service="s"):
    mix.add_batch(RequestBatch([t0 + (i % 60) for i in range(len(rows))], rows))
    return mix.close(service, t0)


def test_browsers_fetch_assets_and_bots_do_not():
    mix = ClientMix(window=60.0)
    users = _close(mix, _rows(400, lambda i: f"10.1.{i % 40}.{i % 40}", ep=lambda i: "/static" if (i // 40) % 2 else "/page"), 0.0)
    bots = _close(mix, _rows(400, lambda i: f"10.2.{i % 40}.{i % 40}"), 60.0)
    assert users.asset_ratio == 1.0 and users.assetless_share == 0.0
    assert bots.asset_ratio == 0.0 and bots.assetless_share == 1.0


def test_credential_stuffing_shows_as_login_failures_and_agent_churn():
    mix = ClientMix(window=60.0)
    agents = ["A", "B", "C", "D", "E"]
    f = _close(mix, _rows(300, lambda i: f"10.3.0.{i % 30}", ep="/login", status=401, ua=lambda i: agents[(i // 30) % 5]), 0.0)
    assert f.login_fail == 1.0 and f.login_share == 1.0
    assert f.ua_churn == 5.0
    calm = _close(mix, _rows(300, lambda i: f"10.3.0.{i % 30}", ep="/login"), 60.0)
    assert calm.login_fail == 0.0 and calm.ua_churn == 1.0


def test_requests_per_client_is_a_distribution():
    mix = ClientMix(window=60.0)
    rows = _rows(100, lambda i: f"10.4.{i}.1") + _rows(200, lambda i: "10.9.9.9")
    f = _close(mix, rows, 0.0)
    assert f.clients == 101 and f.rpc_p50 == 1.0 and f.rpc_p90 == 1.0
    assert abs(f.heavy_share - 200 / 300) < 1e-9


def test_networks_seen_on_an_earlier_day_are_known_and_new_ones_are_not():
    mix = ClientMix(window=60.0)
    day1 = _close(mix, _rows(50, lambda i: f"10.5.{i}.7"), 0.0)
    assert day1.known_net_share == 0.0  # first day: nothing seen before
    same_day = _close(mix, _rows(50, lambda i: f"10.5.{i}.8"), 3600.0)
    assert same_day.known_net_share == 0.0  # seen today only: not "earlier"
    next_day = _close(mix, _rows(50, lambda i: f"10.5.{i}.9") + _rows(50, lambda i: f"172.16.{i}.1"), DAY + 60.0)
    assert 0.45 <= next_day.known_net_share <= 0.55  # same /24s known, the other half new (hash collisions aside)


def test_robots_that_say_so_are_counted():
    mix = ClientMix(window=60.0)
    f = _close(mix, _rows(100, lambda i: f"66.249.64.{i}", ua=lambda i: "Googlebot/2.1" if i < 60 else "Mozilla"), 0.0)
    assert abs(f.bot_share - 0.6) < 1e-9


def test_sample_follows_whole_clients_and_events_work_too():
    mix = ClientMix(window=60.0, sample_mod=4)
    evs = [RequestEvent(ts=float(i % 60), service="s", status=200, latency_ms=5.0, endpoint="/p",
                        client_ip=f"10.6.{i % 97}.{i % 89}") for i in range(2000)]
    mix.add_batch(evs)
    f = mix.close("s", 0.0)
    assert 200 < f.requests < 1000  # about a quarter of the clients, every request of each
    assert f.rpc_p50 >= 1


def test_windows_are_separate_and_old_ones_dropped():
    mix = ClientMix(window=60.0)
    mix.add_batch(RequestBatch([5.0, 65.0], _rows(2, lambda i: "10.7.0.1")))
    assert mix.close("s", 60.0).requests == 1
    assert mix.close("s", 0.0).requests == 1
    assert mix.close("s", 0.0).requests == 0  # read once
    mix.add_batch(RequestBatch([125.0], _rows(1, lambda i: "10.7.0.1")))
    mix.drop("s", 120.0)
    assert mix.close("s", 120.0).requests == 0
    assert mix.close("other", 0.0).requests == 0


def test_network_prefixes():
    assert _network("90.12.34.56") == "90.12.34"
    assert _network("2a01:cb12:3456:1:2::9") == "2a01:cb12:3456"


def test_memory_per_service_is_bounded():
    mix = ClientMix(window=60.0, max_clients=100)
    f = _close(mix, _rows(5000, lambda i: f"10.{i // 256}.{i % 256}.1"), 0.0)
    assert f.clients == 100 and f.requests == 400  # 4 * max_clients requests kept
    assert mix.bytes_per_service() < 200_000
