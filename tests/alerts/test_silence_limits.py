"""Silences: bounds checked before storing, silences of everything, Alertmanager's format (no HTTP here)."""

from __future__ import annotations

import pytest

from alerts.matchers import Matcher
from alerts.silence import (
    SilenceAPI,
    SilenceError,
    SilenceLimits,
    SilenceNotFound,
    Silencer,
    SilenceStore,
    alertmanager_filter,
    from_alertmanager,
    matches_every_alert,
    to_alertmanager,
)

T = 1617696000.0
BASE = {"duration": "1h", "created_by": "a", "comment": "c"}


@pytest.mark.parametrize(("matchers", "broad"), [
    (['severity=~".+"'], True),
    (['severity=~"warning|critical|info"'], True),
    (['service=~".+"'], True),
    (['service!="ent"'], True),
    (['service=~".*"'], True),
    (['alertname="tocsin"'], True),  # what amtool sends for `amtool silence add tocsin`
    (['status!="x"', 'cause=~".*"'], True),
    (['severity="critical"'], False),
    (['cause!="disk_failure"'], False),
    (['service=~"ent-.*"'], False),
    (['service=""'], False),  # the alerts without a service: a real class
    (['severity=~".+"', 'host="web-3"'], False),
])
def test_matches_every_alert(matchers, broad):
    assert matches_every_alert([Matcher.parse(m) for m in matchers]) is broad
    api = SilenceAPI(SilenceStore())
    if broad:
        with pytest.raises(SilenceError, match="silence everything"):
            api.new_silence({**BASE, "matchers": matchers}, T)
        assert api.new_silence({**BASE, "matchers": matchers, "match_all": True}, T).matchers
    else:
        api.new_silence({**BASE, "matchers": matchers}, T)


def test_new_silence_stores_nothing_and_the_limits_are_the_ones_given():
    store = SilenceStore()
    api = SilenceAPI(store, SilenceLimits(max_duration=7200, max_start_ahead=3600, max_silences=2))
    s = api.new_silence({**BASE, "matchers": ['service="a"'], "duration": "2h"}, T)
    assert len(store) == 0 and s.ends_at - s.starts_at == 7200
    for change, error in (({"duration": "2h1s"}, "longer than the limit, 2h"),
                          ({"starts_at": T + 3601}, "more than 1h ahead"),
                          ({"duration": None, "ends_at": T + 7201}, "longer than the limit, 2h")):
        with pytest.raises(SilenceError, match=error):
            api.new_silence({k: v for k, v in {**BASE, "matchers": ['service="a"'], **change}.items()
                             if v is not None}, T)
    api.create_silence({**BASE, "matchers": ['service="a"']}, T)
    api.create_silence({**BASE, "matchers": ['service="b"']}, T)
    with pytest.raises(SilenceError, match="2 silences are pending or active already"):
        api.create_silence({**BASE, "matchers": ['service="c"']}, T)
    assert len(store) == 2
    # Expired ones do not count.
    assert api.create_silence({**BASE, "matchers": ['service="c"']}, T + 3600)["status"] == "active"


def test_a_value_that_cannot_be_kept_as_text_is_refused():
    with pytest.raises(SilenceError, match="double quote"):
        SilenceAPI(SilenceStore()).new_silence({**BASE, "matchers": [Matcher("service", "=", 'a"b')]}, T)


def test_alertmanager_round_trip_filter_and_update():
    body = {"matchers": [{"name": "service", "value": "ent-.*", "isRegex": True},
                         {"name": "cause", "value": "disk_failure", "isRegex": False, "isEqual": False}],
            "startsAt": "2021-04-06T08:00:00.000Z", "endsAt": "2021-04-06T09:00:00.000Z",
            "createdBy": "ana", "comment": "maintenance"}
    sid, payload = from_alertmanager(body)
    assert sid is None and [str(m) for m in payload["matchers"]] == ['service=~"ent-.*"', 'cause!="disk_failure"']
    store = SilenceStore()
    api = SilenceAPI(store)
    s = store.apply(api.new_silence(payload, T))
    am = to_alertmanager(s, T)
    assert am["matchers"] == [{"name": "service", "value": "ent-.*", "isRegex": True, "isEqual": True},
                              {"name": "cause", "value": "disk_failure", "isRegex": False, "isEqual": False}]
    assert am["status"] == {"state": "active"} and am["endsAt"] == "2021-04-06T09:00:00Z"
    postable = {k: v for k, v in am.items() if k not in ("status", "updatedAt")}
    assert from_alertmanager(postable)[0] == s.id
    assert alertmanager_filter(store, ['service=~"ent.*"']) == [s]
    assert alertmanager_filter(store, ['host="web-1"']) == []
    # Update: same matchers keep the id, different matchers expire the old one.
    [same] = api.update(s.id, {**payload, "ends_at": "2021-04-06T10:00:00Z"}, T + 60)
    assert same.id == s.id and same.ends_at == T + 7200
    old, new = api.update(s.id, {**payload, "matchers": ['service="x"']}, T + 60)
    assert old.id == s.id and old.ends_at == T + 60 and new.id != s.id
    with pytest.raises(SilenceNotFound):
        api.update("nope", payload, T)


@pytest.mark.parametrize(("body", "error"), [
    ([], "JSON object"),
    ({"matchers": []}, "non-empty list"),
    ({"matchers": [{"name": "service"}]}, "matchers.0"),
    ({"matchers": [{"name": "1x", "value": "a"}], "endsAt": "2021-04-06T09:00:00Z"}, "not a label name"),
    ({"matchers": [{"name": "x", "value": "(", "isRegex": True}], "endsAt": "2021-04-06T09:00:00Z"}, "regular"),
    ({"matchers": [{"name": "x", "value": "a", "isRegex": "yes"}], "endsAt": "2021-04-06T09:00:00Z"}, "true or"),
    ({"matchers": [{"name": "x", "value": "a"}]}, "endsAt: required"),
    ({"matchers": [{"name": "x", "value": "a"}], "endsAt": "x", "extra": 1}, "unknown field(s): extra"),
])
def test_bad_alertmanager_silences(body, error):
    with pytest.raises(SilenceError, match=error.replace("(", r"\(").replace(")", r"\)")):
        from_alertmanager(body)


def test_alertname_matchers_match_tocsin_alerts():
    store = SilenceStore()
    SilenceAPI(store).create_silence({**BASE, "matchers": ['alertname="tocsin"', 'host="web-3"']}, T)
    SilenceAPI(store).create_silence({**BASE, "matchers": ['alertname="other"', 'host="web-4"']}, T)
    assert Silencer(store).mutes({"host": "web-3", "service": None}, T)
    assert not Silencer(store).mutes({"host": "web-4"}, T)
