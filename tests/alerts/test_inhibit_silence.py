"""Inhibition, silences (records, store, API) and mute time intervals."""

from __future__ import annotations

import pytest

from alerts.config import AlertingConfig, InhibitRuleConfig
from alerts.inhibit import Inhibitor
from alerts.matchers import alert_labels
from alerts.model import Alert
from alerts.notify.base import Receiver
from alerts.notify.notifier import AlertNotifier
from alerts.silence import (
    SilenceAPI,
    SilenceError,
    SilenceNotFound,
    Silencer,
    SilenceStore,
    decode,
    encode,
)
from alerts.timeinterval import TimeRange
from detectors.configfile import load_model_text

T = 1617696240.0  # Tuesday 2021-04-06T08:04:00Z (10:04 in Paris)

RULE = InhibitRuleConfig(
    source_matchers=['cause="disk_failure"'],
    target_matchers=['cause=~"unknown|capacity_saturation"'],
    equal=["host"],
)


def alert(cause="unknown", service=None, host=None, disk=None, status="firing"):
    return Alert({"service": service, "host": host, "disk": disk}, status, "warning", "t", cause, 0.5, T)


@pytest.mark.parametrize(
    ("target", "muted"),
    [
        (alert("unknown", "ent-a", "web-3"), True),
        (alert("capacity_saturation", "ent-a", "web-3"), True),
        (alert("suspected_attack", "ent-a", "web-3"), False),  # not a target
        (alert("unknown", "ent-a", "web-4"), False),  # other host
        (alert("unknown", "ent-a", None), False),  # no host: not equal to web-3
        (alert("disk_failure", None, "web-3", "Z1"), False),  # never itself
    ],
)
def test_a_failing_disk_mutes_the_latency_alerts_of_its_host(target, muted):
    inh = Inhibitor([RULE])
    inh.observe(alert("disk_failure", None, "web-3", "Z1"))
    assert inh.mutes(alert_labels(target)) is muted


def test_inhibition_ends_when_the_source_resolves_and_unset_equal_labels_are_equal():
    inh = Inhibitor([InhibitRuleConfig(source_matchers=['cause="disk_failure"'],
                                       target_matchers=['cause="unknown"'], equal=["service"])])
    src = alert("disk_failure", None, "web-3", "Z1")
    inh.observe(src)
    assert inh.mutes(alert_labels(alert("unknown", None, "web-9")))  # service unset on both
    inh.observe(src.resolved(T + 60))
    assert not inh.mutes(alert_labels(alert("unknown", None, "web-9")))


def test_silence_records_round_trip_and_the_latest_update_wins_in_any_order():
    store = SilenceStore()
    api = SilenceAPI(store)
    rec = api.create_silence({"matchers": ['service="ent-a"', 'cause!="disk_failure"'], "duration": "2h",
                              "created_by": "ana", "comment": "deploy"}, now=T)
    s = store.get(rec["id"])
    assert decode(encode(s)) == s
    expiry = api.expire_silence(rec["id"], now=T + 600)
    assert expiry["status"] == "expired"
    # Another worker reads the records back, the expiry first: the expiry still wins.
    other = SilenceStore()
    other.apply(encode(store.get(rec["id"])))
    other.apply(encode(s))  # then the original create record
    assert other.get(rec["id"]).ends_at == T + 600
    assert not Silencer(other).mutes({"service": "ent-a", "cause": "unknown"}, T + 700)
    assert Silencer(SilenceStore()).mutes({"service": "ent-a"}, T) is False


def test_silence_is_active_between_start_and_end_only():
    store = SilenceStore()
    rec = SilenceAPI(store).create_silence({"matchers": ['host=~"web-.*"'], "starts_at": T + 60,
                                            "ends_at": "2021-04-06T09:00:00Z", "created_by": "a", "comment": "c"}, now=T)
    assert rec["status"] == "pending"
    sil = Silencer(store)
    labels = {"host": "web-3"}
    assert [sil.mutes(labels, t) for t in (T, T + 60, T + 3000, T + 3360)] == [False, True, True, False]


def test_silences_persist_through_a_table_and_old_ones_are_collected():
    table: dict[str, bytes] = {}
    api = SilenceAPI(SilenceStore(table))
    rec = api.create_silence({"matchers": ['service="x"'], "duration": "1h", "created_by": "a", "comment": "c"}, now=T)
    assert SilenceStore(table).get(rec["id"]) is not None
    store = SilenceStore(table)
    assert store.gc(T + 3600 + 121 * 3600) == 1 and table == {}


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        ({"ends_at": T + 60, "created_by": "a", "comment": "c"}, "matchers: a non-empty list"),
        ({"matchers": ["service is x"], "duration": "1h", "created_by": "a", "comment": "c"}, "matchers.0:"),
        ({"matchers": ['service=~".*"'], "duration": "1h", "created_by": "a", "comment": "c"}, "silence everything"),
        ({"matchers": ['service="x"'], "created_by": "a", "comment": "c"}, "ends_at: required"),
        ({"matchers": ['service="x"'], "ends_at": T - 1, "created_by": "a", "comment": "c"}, "ends_at:"),
        ({"matchers": ['service="x"'], "ends_at": "tomorrow", "created_by": "a", "comment": "c"}, "ends_at:"),
        ({"matchers": ['service="x"'], "duration": "soon", "created_by": "a", "comment": "c"}, "duration:"),
        ({"matchers": ['service="x"'], "duration": "1h", "comment": "c"}, "created_by: required"),
        ({"matchers": ['service="x"'], "duration": "1h", "created_by": "a", "comment": " "}, "comment: required"),
        ({"matchers": ['service="x"'], "duration": "1h", "created_by": "a", "comment": "c", "author": "b"}, "unknown field(s): author"),
        ([], "JSON object"),
    ],
)
def test_bad_silences_say_what_is_wrong(payload, error):
    with pytest.raises(SilenceError) as exc:
        SilenceAPI(SilenceStore()).create_silence(payload, now=T)
    assert error in str(exc.value)
    assert exc.value.status == 400


def test_expire_errors():
    api = SilenceAPI(SilenceStore())
    with pytest.raises(SilenceNotFound) as exc:
        api.expire_silence("nope", now=T)
    assert exc.value.status == 404
    rec = api.create_silence({"matchers": ['service="x"'], "duration": "1h", "created_by": "a", "comment": "c"}, now=T)
    api.expire_silence(rec["id"], now=T + 1)
    with pytest.raises(SilenceError, match="already expired"):
        api.expire_silence(rec["id"], now=T + 2)
    assert [r["status"] for r in api.list_silences(T + 3)] == ["expired"]


def test_decode_rejects_what_is_not_a_silence_record():
    for bad in (b"{", b'{"schema": "other"}', b'{"schema": "tocsin.silence.v1", "id": "x"}'):
        with pytest.raises(SilenceError):
            decode(bad)


@pytest.mark.parametrize(
    ("spec", "ts", "inside"),
    [
        ({"weekdays": ["monday:friday"], "times": [{"start_time": "09:00", "end_time": "17:00"}],
          "location": "Europe/Paris"}, T, True),
        ({"weekdays": ["monday:friday"], "times": [{"start_time": "09:00", "end_time": "17:00"}]}, T, False),  # 08:04 UTC
        ({"weekdays": ["saturday", "sunday"]}, T, False),
        ({"days_of_month": ["-25:-1"], "months": ["april"]}, T, True),  # the 6th of a 30-day month is -25
        ({"days_of_month": ["-24:-1"]}, T, False),
        ({"years": ["2020:2021"], "months": ["1:3"]}, T, False),
    ],
)
def test_time_ranges(spec, ts, inside):
    assert TimeRange.parse(spec).contains(ts) is inside


@pytest.mark.parametrize(
    ("spec", "error"),
    [
        ({"weekdays": ["funday"]}, "weekdays"),
        ({"times": [{"start_time": "18:00", "end_time": "09:00"}]}, "not after"),
        ({"times": [{"start_time": "25:00", "end_time": "26:00"}]}, "out of range"),
        ({"location": "Mars/Olympus"}, "unknown time zone"),
        ({"days_of_month": ["0"]}, "out of range"),
        ({"hours": ["1"]}, "unknown field"),
    ],
)
def test_bad_time_ranges(spec, error):
    with pytest.raises(ValueError, match=error):
        TimeRange.parse(spec)


class Recorder(Receiver):
    name = "r"

    def __init__(self) -> None:
        self.sent: list[str] = []

    async def notify(self, alert, memory):
        self.sent.append(f"{alert.labels['service'] or ''}:{alert.status}")
        return {}


async def test_notifier_applies_inhibition_silences_and_mute_time_intervals():
    cfg = load_model_text("""
receivers: [{name: r, console: {}}]
route:
  receiver: r
  group_by: [service]
  group_wait: 0s
  group_interval: 1m
  routes:
    - matchers: ['service="night-batch"']
      mute_time_intervals: [office-hours]
inhibit_rules:
  - source_matchers: ['cause="disk_failure"']
    target_matchers: ['cause="unknown"']
    equal: [host]
time_intervals:
  - name: office-hours
    time_intervals:
      - weekdays: ['monday:friday']
        times: [{start_time: '09:00', end_time: '18:00'}]
        location: Europe/Paris
""", AlertingConfig)
    rec = Recorder()
    n = AlertNotifier(cfg, {"r": rec}, {})
    SilenceAPI(n.silences).create_silence(
        {"matchers": ['service="silenced"'], "duration": "1h", "created_by": "a", "comment": "c"}, now=T)
    disk = Alert({"service": None, "host": "web-3", "disk": "Z1"}, "firing", "critical", "d", "disk_failure", 0.9, T)
    for a in (disk, alert("unknown", "inhibited", "web-3"), alert("unknown", "silenced", "web-9"),
              alert("unknown", "night-batch", "web-9"), alert("unknown", "told", "web-9")):
        await n.receive(a, T)
    assert sorted(rec.sent) == [":firing", "told:firing"]
    assert n.counts["muted.r"] == 2 and n.counts["muted_time.r"] == 1
    # Later: the disk is replaced, the silence has ended, office hours are over.
    evening = T + 9 * 3600  # 19:04 in Paris
    await n.receive(disk.resolved(evening), evening)
    await n.flush(evening + 60)
    assert sorted(rec.sent) == [":firing", ":resolved", "inhibited:firing", "night-batch:firing",
                                "silenced:firing", "told:firing"]
