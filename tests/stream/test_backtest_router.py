"""tocsin backtest replays the router: DIR/notifications.jsonl is what each receiver would have been sent."""

from __future__ import annotations

import contextlib
import io

import orjson
import pytest

from stream.cli import main

CONFIG = """\
alerting:
  keep_firing_for: 5m
  receivers:
    - name: everything
      console: {}
    - name: oncall
      console: {}
  route:
    receiver: everything
    group_by: [service, host, disk]
    group_wait: 30s
    group_interval: 5m
    repeat_interval: 4h
    routes:
      - matchers: ['severity="critical"']
        receiver: oncall
        group_by: [service, host, disk]
        group_wait: 30s
        group_interval: 5m
        repeat_interval: 1h
        continue: true
      - receiver: everything
"""


def read(path):
    return [orjson.loads(line) for line in open(path, "rb")]


@pytest.fixture(scope="module")
def replayed(sim_recording, tmp_path_factory):
    root = tmp_path_factory.mktemp("router")
    cfg = root / "tocsin.yaml"
    cfg.write_text(CONFIG)
    outs = []
    for run in ("a", "b"):
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            rc = main(["backtest", "--requests", str(sim_recording / "requests.jsonl.gz"),
                       "--disks", str(sim_recording / "disks.jsonl"), "--out", str(root / run), "--config", str(cfg)])
        assert rc == 0
        (root / run / "summary.txt").write_text(printed.getvalue())
        outs.append(root / run)
    return outs


def test_every_notification_follows_the_contract_and_replays_identically(replayed):
    a, b = replayed
    assert (a / "notifications.jsonl").read_bytes() == (b / "notifications.jsonl").read_bytes()
    notes = read(a / "notifications.jsonl")
    assert notes
    for n in notes:
        assert {"schema", "ts", "receiver", "group_key", "kind", "fingerprints"} <= set(n)
        assert n["schema"] == "tocsin.notification.v1"
        assert n["receiver"] in ("everything", "oncall")
        assert n["kind"] in ("new", "update", "reminder", "resolve")
        assert n["fingerprints"] == sorted(set(n["fingerprints"]))


def test_each_firing_alert_reaches_its_receivers_and_each_group_opens_before_it_closes(replayed):
    a = replayed[0]
    alerts = read(a / "alerts.jsonl")
    notes = read(a / "notifications.jsonl")
    told = {(n["receiver"], fp) for n in notes for fp in n["fingerprints"]}
    firing = {al["fingerprint"]: al for al in alerts if al["status"] == "firing"}
    assert firing
    for fp, al in firing.items():
        assert ("everything", fp) in told
        if al["severity"] == "critical":
            assert ("oncall", fp) in told
    # Per receiver and group: the first notification is "new"; "resolve" only after it.
    seen: dict[tuple[str, str], list[str]] = {}
    for n in notes:
        seen.setdefault((n["receiver"], n["group_key"]), []).append(n["kind"])
    for kinds in seen.values():
        assert kinds[0] == "new"
    assert any("resolve" in kinds for kinds in seen.values())


def test_notifications_are_sent_in_event_time_order_after_the_alerts_they_carry_began(replayed):
    from detectors.timeutil import parse_ts

    a = replayed[0]
    first_firing: dict[str, float] = {}
    for al in read(a / "alerts.jsonl"):
        if al["status"] == "firing":
            first_firing.setdefault(al["fingerprint"], parse_ts(al["starts_at"]))
    notes = read(a / "notifications.jsonl")
    times = [parse_ts(n["ts"]) for n in notes]
    assert times == sorted(times)
    for n, t in zip(notes, times, strict=True):
        # (An alert that began more than group_wait before it was raised is
        # sent at once, as Alertmanager does: no lower bound beyond its start.)
        assert all(t >= first_firing[fp] for fp in n["fingerprints"] if fp in first_firing)


def test_the_summary_counts_notifications_per_receiver(replayed):
    a = replayed[0]
    out = (a / "summary.txt").read_text()
    notes = read(a / "notifications.jsonl")
    assert "notifications (notifications.jsonl):" in out
    for receiver in ("everything", "oncall"):
        n_new = sum(1 for n in notes if n["receiver"] == receiver and n["kind"] == "new")
        assert any(line.split()[:3] == [receiver, str(n_new), "new,"] for line in out.splitlines()), out


def test_a_truncated_input_leaves_no_partial_outputs(sim_recording, tmp_path):
    cut = tmp_path / "cut.jsonl.gz"
    data = (sim_recording / "requests.jsonl.gz").read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    rc = main(["backtest", "--requests", str(cut), "--out", str(tmp_path / "o")])
    assert rc == 2
    assert not list((tmp_path / "o").iterdir())
