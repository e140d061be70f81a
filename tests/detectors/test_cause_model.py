"""The River cause model: trained from a text table, learns from people's labels, calibrated."""

import random

import pytest

from detectors.cause_features import FEATURE_NAMES
from detectors.cause_model import CALIBRATION, TABLE, CauseModel


def _rows(n=300, seed=1):
    """Seeded, separable windows: floods of new networks, surges of the usual users, slow single hosts."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        k = rng.randrange(4)
        x = {name: rng.gauss(0.0, 0.05) for name in FEATURE_NAMES}
        if k == 0:
            x.update(log_rate_ratio=1.2 + rng.random(), known_net_share=-0.5, assetless_share=0.6)
            y = "suspected_attack"
        elif k == 1:
            x.update(log_rate_ratio=1.0 + rng.random(), log_p95_ratio=1.5, slow_host_share=1.0, load_vs_peak=1.4)
            y = "capacity_saturation"
        elif k == 2:
            x.update(log_p95_ratio=0.8, slow_host_share=0.25, disk_on_slow_host=1.0)
            y = "disk_failure"
        else:
            x.update(log_rate_ratio=0.6, bot_share=0.5)
            y = "benign"
        out.append((x, y))
    return out


def test_learns_the_causes_and_says_which_features_carried_it():
    m = CauseModel.from_rows(_rows())
    test = _rows(200, seed=2)
    right = sum(m.predict(x)[0] == y for x, y in test)
    assert right / len(test) >= 0.95
    x = next(x for x, y in test if y == "suspected_attack")
    names = [n for n, _ in m.contributions(x, "suspected_attack")]
    assert {"known_net_share", "assetless_share", "log_rate_ratio"} & set(names)


def test_a_label_by_fingerprint_moves_the_model_and_unknown_fingerprints_say_so():
    m = CauseModel.from_rows(_rows(), label_weight=20)
    x = {name: 0.0 for name in FEATURE_NAMES} | {"log_rate_ratio": 0.6, "bot_share": 0.5}
    assert m.predict(x)[0] == "benign"
    m.remember("04b95f564b704143", x)
    before = m.proba(x)["suspected_attack"]
    assert m.learn_label("04b95f564b704143", "suspected_attack")
    assert m.proba(x)["suspected_attack"] > before
    assert not m.learn_label("ffffffffffffffff", "benign")
    with pytest.raises(ValueError, match="unknown cause"):
        m.learn_label(x, "aliens")


def test_recent_alerts_are_a_bounded_lru():
    m = CauseModel(lru_size=3)
    for i in range(5):
        m.remember(f"fp{i}", {"log_rate_ratio": float(i)})
    assert not m.learn_label("fp0", "benign") and not m.learn_label("fp1", "benign")
    assert m.learn_label("fp4", "benign")


def test_table_round_trip_and_calibration(tmp_path):
    rows = _rows(120)
    path = tmp_path / "t.csv"
    assert CauseModel.write_table(path, rows) == 120
    assert path.read_text().splitlines()[0].endswith(",cause")
    cal = tmp_path / "c.json"
    cal.write_text('{"bins": [[0.5, 0.3], [0.8, 0.6], [1.0, 0.9]]}')
    m = CauseModel.from_table(path, cal)
    assert m.confidence(0.4) == 0.3 and m.confidence(0.7) == 0.6 and m.confidence(0.99) == 0.9
    bad = tmp_path / "bad.csv"
    bad.write_text(path.read_text().replace("benign", "weather"))
    with pytest.raises(ValueError, match="unknown causes"):
        CauseModel.from_table(bad, None)


@pytest.mark.skipif(not TABLE.exists(), reason="no shipped table")
def test_the_shipped_table_trains_a_model_that_knows_every_cause():
    m = CauseModel.from_table(TABLE, CALIBRATION)
    assert m.n_learned > 100
    import csv

    with open(TABLE) as fh:
        causes = {r["cause"] for r in csv.DictReader(fh)}
    assert causes == {"capacity_saturation", "suspected_attack", "disk_failure", "benign"}


@pytest.mark.skipif(not TABLE.exists(), reason="no shipped table")
def test_the_engine_learns_a_label_given_to_one_of_its_alerts():
    from stream.engine import Engine

    eng = Engine()
    model = eng.diagnoser.cause_model
    assert model is not None
    x = {name: 0.0 for name in FEATURE_NAMES} | {"log_rate_ratio": 1.2, "assetless_share": 0.5}
    model.remember("04b95f564b704143", x)  # what the engine does when a finding becomes an alert
    before = model.proba(x)["benign"]
    assert eng.learn_label("04b95f564b704143", "benign")
    assert model.proba(x)["benign"] > before
    assert not eng.learn_label("0000000000000000", "benign")
    assert Engine().diagnoser.cause_model.proba(x)["benign"] == pytest.approx(before)  # engines do not share labels


def test_table_says_which_world_each_window_came_from_and_a_world_can_be_left_out(tmp_path):
    rows = _rows(120)
    path = tmp_path / "t.csv"
    worlds = [str(101 + i % 3) for i in range(120)]
    assert CauseModel.write_table(path, rows, worlds) == 120
    assert path.read_text().splitlines()[0].endswith(",cause,seed")
    back = CauseModel.read_table(path)
    assert [w for _, _, w in back] == worlds and [y for _, y, _ in back] == [y for _, y in rows]
    full = CauseModel.from_table(path, None)
    out_of_fold = CauseModel.from_table(path, None, exclude={"101"})
    assert out_of_fold.n_learned < full.n_learned
    # a table without the column reads as one world with no name
    plain = tmp_path / "p.csv"
    CauseModel.write_table(plain, rows)
    assert {w for _, _, w in CauseModel.read_table(plain)} == {""}
