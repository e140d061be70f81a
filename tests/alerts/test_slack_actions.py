"""Acting from Slack: the buttons, the request checks, and what each click does.

The parent message is posted to the fake Slack (real HTTP) with the action
buttons; clicks are the payloads Slack would send for it; the visible
answers (edited parent, thread replies, ephemeral refusals) go back to the
fake Slack through slack-sdk's AsyncWebClient.
"""

from __future__ import annotations

import time

import orjson
import pytest
from slack_sdk.web.async_client import AsyncWebClient

from alerts.ack import Ack, AckStore
from alerts.model import Alert
from alerts.notify.slack import build_blocks
from alerts.notify.slack_actions import (
    ACK,
    WRONG_CAUSE,
    ActionError,
    AllowList,
    RequestVerifier,
    SlackActions,
    action_blocks,
    http_payload,
    parent_actions,
    until_resolved_expiries,
)
from alerts.secret import Secret
from alerts.silence import SilenceLimits, Silencer, SilenceStore
from tests.alerts.fake_slack_app import (
    FORGED_SECRET,
    SIGNING_SECRET,
    FakeSlackApp,
    block_actions,
    signed,
)

T0 = 1617696240.0
NOW = T0 + 600.0
GROUP = '/:oncall:{service="ent-grand-est"}'
ONCALL = "U024BE7LH"


class Bus:
    """Stands for the topics: what was published, by port; ``fail`` makes every publish raise."""

    def __init__(self) -> None:
        self.silences: list[dict] = []
        self.labels: list[dict] = []
        self.acks: list[dict] = []
        self.fail = False

    def port(self, name: str):
        async def publish(rec: dict) -> None:
            if self.fail:
                raise ConnectionError("broker unreachable")
            getattr(self, name).append(rec)

        return publish


@pytest.fixture
async def slack(no_proxy_env):
    server = await FakeSlackApp(user_groups={"S0ONCALL": ["U0GROUPIE"]}).start()
    yield server
    await server.stop()


def make_actions(slack: FakeSlackApp, bus: Bus, *, users=(ONCALL,), groups=(), now=NOW):
    client = AsyncWebClient(token=slack.token, base_url=slack.base_url)
    store, acks = SilenceStore(), AckStore()
    actions = SlackActions(
        silences=store, limits=SilenceLimits(max_duration=2 * 86400.0), publish_silence=bus.port("silences"),
        publish_label=bus.port("labels"), publish_ack=bus.port("acks"), acks=acks,
        allow=AllowList(tuple(users), tuple(groups), client), client=client,
        verifier=RequestVerifier(Secret(SIGNING_SECRET), clock=lambda: now), clock=lambda: now,
    )
    return actions, store, acks


async def post_parent(slack: FakeSlackApp, alert: Alert, labels: dict | None = None):
    client = AsyncWebClient(token=slack.token, base_url=slack.base_url)
    blocks = build_blocks(alert) + action_blocks(GROUP, labels if labels is not None else
                                                 {"service": "ent-grand-est"}, alert)
    resp = await client.chat_postMessage(channel="alerts", text=alert.title, blocks=blocks)
    await client.session.close() if client.session else None
    return slack.messages[resp["ts"]]


def test_the_buttons_of_a_parent(make_alert):
    alert = make_alert()
    [block] = action_blocks(GROUP, {"service": "ent-grand-est"}, alert)
    ids = [e["action_id"] for e in block["elements"]]
    assert ids == [ACK, "tocsin_silence_1h", "tocsin_silence_4h", "tocsin_silence_resolved", WRONG_CAUSE]
    assert [e["text"]["text"] for e in block["elements"][:4]] == [
        "Acknowledge", "Silence 1 h", "Silence 4 h", "Silence until resolved"]
    ctx = orjson.loads(block["elements"][0]["value"])
    assert ctx == {"g": GROUP, "f": alert.fingerprint, "m": ['service="ent-grand-est"']}
    select = block["elements"][-1]
    # The right cause is one of the others (the label causes), never the one tocsin named.
    assert [o["value"] for o in select["options"]] == [
        f"{c}|{alert.fingerprint}" for c in ("capacity_saturation", "disk_failure", "benign")]
    assert all(len(o["value"]) <= 150 and len(e.get("value", "")) <= 2000
               for e in block["elements"] for o in select["options"])


def test_a_parent_shows_who_acknowledged_it(make_alert):
    alert = make_alert()
    acks = AckStore()
    assert parent_actions(GROUP, {"service": "ent-grand-est"}, alert, NOW, acks) == action_blocks(
        GROUP, {"service": "ent-grand-est"}, alert)
    acks.apply(Ack(GROUP, alert.fingerprint, ONCALL, at=NOW))
    note, buttons = parent_actions(GROUP, {"service": "ent-grand-est"}, alert, NOW + 60, acks)
    assert note["elements"][0]["text"] == f":eyes: acknowledged by <@{ONCALL}> at 08:14 UTC"
    assert [e["action_id"] for e in buttons["elements"]][0] == "tocsin_silence_1h"


def test_a_group_without_labels_is_silenced_by_the_alerts_own(make_alert):
    alert = make_alert(labels={"service": "ent", "host": "web-3", "disk": None})
    [block] = action_blocks("/:oncall:{}", {}, alert)
    assert orjson.loads(block["elements"][1]["value"])["m"] == ['host="web-3"', 'service="ent"']


def test_signatures_forgeries_old_and_replayed_requests():
    v = RequestVerifier(Secret(SIGNING_SECRET), clock=lambda: NOW)
    payload = {"type": "block_actions"}
    body, headers = signed(payload, ts=int(NOW))
    v.check(body, headers)
    with pytest.raises(ActionError, match="replay"):
        v.check(body, headers)  # the same request again
    cases = [
        (signed(payload, secret=FORGED_SECRET, ts=int(NOW)), "bad request signature"),
        (signed(payload, ts=int(NOW) - 301), "more than 300 s"),
        (signed(payload, ts=int(NOW) + 301), "more than 300 s"),
        ((body, {}), "unsigned"),
        ((body, {**headers, "X-Slack-Request-Timestamp": "yesterday"}), "not a Unix time"),
    ]
    for (b, h), error in cases:
        with pytest.raises(ActionError, match=error) as exc:
            v.check(b, h)
        assert exc.value.status == 401
    # A signed body changed on the way: the signature no longer matches.
    body2, headers2 = signed(payload, ts=int(NOW) - 1)
    with pytest.raises(ActionError, match="bad request signature"):
        v.check(body2.replace(b"block_actions", b"block_actionz"), headers2)


def test_http_payload_errors():
    assert http_payload(b"payload=%7B%22a%22%3A1%7D") == {"a": 1}
    for body, error in ((b"", "no payload"), (b"payload=%7Bnot", "not JSON"), (b"\xff\xfe", "UTF-8")):
        with pytest.raises(ActionError, match=error):
            http_payload(body)


async def test_silence_one_hour_is_a_real_silence_by_the_slack_user(slack, make_alert):
    bus = Bus()
    actions, store, _ = make_actions(slack, bus)
    msg = await post_parent(slack, make_alert())
    out = await actions.handle(block_actions(msg, "tocsin_silence_1h", ONCALL))
    assert out.status == 200
    [rec] = bus.silences
    assert rec["created_by"] == ONCALL and rec["matchers"] == ['service="ent-grand-est"']
    assert rec["starts_at"] == "2021-04-06T08:14:00Z" and rec["ends_at"] == "2021-04-06T09:14:00Z"
    assert Silencer(store).mutes({"service": "ent-grand-est"}, NOW + 3599)
    assert not Silencer(store).mutes({"service": "ent-grand-est"}, NOW + 3600)
    assert not Silencer(store).mutes({"service": "ent-idf"}, NOW)
    # Said in the thread, by whom and until when.
    [reply] = slack.replies(msg.ts)
    assert f"<@{ONCALL}> silenced service=\"ent-grand-est\" until 09:14 UTC" in reply.text and rec["id"] in reply.text
    await actions.client.session.close() if actions.client.session else None


async def test_silence_until_resolved_ends_when_the_alert_resolves(slack, make_alert):
    bus = Bus()
    actions, store, _ = make_actions(slack, bus)
    alert = make_alert()
    msg = await post_parent(slack, alert)
    await actions.handle(block_actions(msg, "tocsin_silence_resolved", "U024BE7LH"))
    [s] = list(store)
    assert s.ends_at - s.starts_at == 2 * 86400.0  # the longest silence allowed
    assert until_resolved_expiries(store, alert, NOW + 60) == []  # still firing
    other = make_alert(labels={"service": "ent-idf", "host": None, "disk": None})
    assert until_resolved_expiries(store, other.resolved(NOW + 60), NOW + 60) == []
    [expiry] = until_resolved_expiries(store, alert.resolved(NOW + 60), NOW + 60)
    store.apply(expiry)
    assert expiry.id == s.id and not Silencer(store).mutes({"service": "ent-grand-est"}, NOW + 61)


async def test_wrong_cause_is_a_label_record(slack, make_alert):
    bus = Bus()
    actions, store, _ = make_actions(slack, bus)
    alert = make_alert()
    msg = await post_parent(slack, alert)
    out = await actions.handle(block_actions(msg, WRONG_CAUSE, ONCALL, option="capacity_saturation"))
    assert out.status == 200 and len(store) == 0
    assert bus.labels == [{"schema": "tocsin.label.v1", "fingerprint": alert.fingerprint,
                           "cause": "capacity_saturation", "author": ONCALL, "source": "slack",
                           "ts": "2021-04-06T08:14:00Z"}]
    [reply] = slack.replies(msg.ts)
    assert "Capacity saturation" in reply.text
    # An option value tocsin never offered is refused.
    forged = block_actions(msg, WRONG_CAUSE, ONCALL, option="benign")
    forged["actions"][0]["selected_option"]["value"] = f"root_access|{alert.fingerprint}"
    with pytest.raises(ActionError, match="not one of"):
        await actions.handle(forged)
    assert len(bus.labels) == 1


async def test_acknowledge_mutes_reminders_and_shows_who_and_when(slack, make_alert):
    bus = Bus()
    actions, _, acks = make_actions(slack, bus)
    alert = make_alert()
    msg = await post_parent(slack, alert)
    assert not acks.mutes_reminder(GROUP, NOW)
    out = await actions.handle(block_actions(msg, ACK, ONCALL))
    assert out.status == 200
    assert bus.acks == [{"schema": "tocsin.ack.v1", "group_key": GROUP, "fingerprint": alert.fingerprint,
                         "author": ONCALL, "source": "slack", "ts": "2021-04-06T08:14:00Z", "cleared_at": None}]
    assert acks.mutes_reminder(GROUP, NOW + 3600) and not acks.mutes_reminder("/:oncall:{}", NOW)
    # The parent, edited: who and when above the buttons, no Acknowledge button left.
    [edit] = slack.calls_to("chat.update")
    assert edit.json["ts"] == msg.ts
    note = [b for b in msg.blocks if b.get("block_id") == "tocsin_ack_note"]
    assert note[0]["elements"][0]["text"] == f":eyes: acknowledged by <@{ONCALL}> at 08:14 UTC"
    [buttons] = [b for b in msg.blocks if b["type"] == "actions"]
    assert ACK not in [e["action_id"] for e in buttons["elements"]]
    assert msg.blocks[: len(msg.edits[0]["blocks"]) - 1] == msg.edits[0]["blocks"][:-1]
    # The alert resolving ends the ack: the group's next incident reminds again.
    for a in acks.clears(alert.resolved(NOW + 60), NOW + 60):
        acks.apply(a)
    assert not acks.mutes_reminder(GROUP, NOW + 61)


async def test_unauthorised_users_are_refused_and_nothing_changes(slack, make_alert):
    bus = Bus()
    actions, store, acks = make_actions(slack, bus)
    msg = await post_parent(slack, make_alert())
    for action, option in (("tocsin_silence_4h", None), (ACK, None), (WRONG_CAUSE, "benign")):
        out = await actions.handle(block_actions(msg, action, "U0INTRUDER", option=option))
        assert out.status == 403
    assert bus.silences == bus.labels == bus.acks == [] and len(store) == len(acks) == 0
    assert slack.replies(msg.ts) == [] and not msg.edits
    assert len(slack.ephemeral) == 3 and slack.ephemeral[0]["user"] == "U0INTRUDER"
    assert "not allowed" in slack.ephemeral[0]["text"]
    assert actions.counts["refused.user"] == 3
    # A link button (Runbook) is reported by Slack too: not tocsin's, nobody is told off.
    link = block_actions(msg, ACK, "U0INTRUDER")
    link["actions"][0] = {"action_id": "runbook", "type": "button", "block_id": "x"}
    assert (await actions.handle(link)).status == 200 and len(slack.ephemeral) == 3


async def test_members_of_an_allowed_user_group_may_act(slack, make_alert):
    bus = Bus()
    actions, store, _ = make_actions(slack, bus, users=(), groups=("S0ONCALL", "S0GONE"))
    msg = await post_parent(slack, make_alert())
    assert (await actions.handle(block_actions(msg, "tocsin_silence_1h", "U0GROUPIE"))).status == 200
    assert (await actions.handle(block_actions(msg, "tocsin_silence_1h", ONCALL))).status == 403
    assert len(bus.silences) == 1 and bus.silences[0]["created_by"] == "U0GROUPIE"
    # Membership is cached: one call per group within the ttl (S0GONE does not exist: refused, not an error).
    assert len(slack.calls_to("usergroups.users.list", outcome=None)) == 2


async def test_a_failed_publish_keeps_nothing_and_says_so(slack, make_alert):
    bus = Bus()
    bus.fail = True
    actions, store, acks = make_actions(slack, bus)
    msg = await post_parent(slack, make_alert())
    for action in ("tocsin_silence_1h", ACK):
        with pytest.raises(ActionError, match="could not be written") as exc:
            await actions.handle(block_actions(msg, action, ONCALL))
        assert exc.value.status == 503
    assert len(store) == len(acks) == 0 and slack.replies(msg.ts) == [] and not msg.edits


async def test_a_silence_over_the_limits_is_refused(slack, make_alert):
    bus = Bus()
    actions, store, _ = make_actions(slack, bus)
    actions.api.limits = SilenceLimits(max_duration=1800.0)
    msg = await post_parent(slack, make_alert())
    with pytest.raises(ActionError, match="longer than the limit") as exc:
        await actions.handle(block_actions(msg, "tocsin_silence_1h", ONCALL))
    assert exc.value.status == 400 and bus.silences == [] and len(store) == 0


async def test_handle_http_verifies_before_anything(slack, make_alert):
    bus = Bus()
    now = time.time()
    actions, store, _ = make_actions(slack, bus, now=now)
    msg = await post_parent(slack, make_alert())
    payload = block_actions(msg, "tocsin_silence_1h", ONCALL)
    body, headers = signed(payload, secret=FORGED_SECRET)
    with pytest.raises(ActionError, match="signature"):
        await actions.handle_http(body, headers)
    assert bus.silences == []
    body, headers = signed(payload)
    assert (await actions.handle_http(body, headers)).status == 200
    assert len(bus.silences) == 1
