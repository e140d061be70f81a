"""Alertmanager's duration syntax (``1h30m``) wherever tocsin takes a duration."""

from __future__ import annotations

import pytest

from alerts.silence import SilenceAPI, SilenceStore
from detectors.configfile import load_model_text, parse_duration
from detectors.errors import ConfigError
from stream.settings import Config


@pytest.mark.parametrize(("text", "seconds"), [
    ("1h30m", 5400.0), ("1w2d", 9 * 86400.0), ("1y", 365 * 86400.0), ("90s", 90.0), ("1m30s500ms", 90.5),
    ("250ms", 0.25), ("0s", 0.0), ("1.5h", 5400.0), ("2d", 172800.0), (" 5m ", 300.0), (45, 45.0),
])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["1m1h", "1.5h30m", "h", "", "-1h", "1 h 30m", "1e400", float("inf"),
                                 float("nan"), -3, True, None])
def test_bad_durations(bad):
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_the_config_file_and_silences_take_alertmanager_durations():
    cfg = load_model_text("alerting:\n  keep_firing_for: 2m30s\n  route:\n    receiver: console\n"
                          "    group_wait: 1m30s\n    repeat_interval: 1d12h\ndetectors:\n  window: 1m30s\n",
                          Config, "t.yaml")
    assert cfg.alerting.keep_firing_for == 150.0 and cfg.alerting.route.group_wait == 90.0
    assert cfg.alerting.route.repeat_interval == 1.5 * 86400 and cfg.detectors.window == 90.0
    with pytest.raises(ConfigError, match="t.yaml:3: alerting.route.group_wait"):
        load_model_text("alerting:\n  route:\n    group_wait: 1m1h\n    receiver: console\n", Config, "t.yaml")
    rec = SilenceAPI(SilenceStore()).create_silence(
        {"matchers": ['service="x"'], "duration": "1h30m", "created_by": "a", "comment": "c"}, now=1617696000.0)
    assert rec["ends_at"] == "2021-04-06T09:30:00Z"
