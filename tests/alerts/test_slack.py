"""SlackReceiver against a fake Slack Web API over real HTTP."""

from __future__ import annotations

import json
import logging
import traceback
from typing import Any

import aiohttp
import pytest

from alerts.errors import NotifyError
from alerts.model import Evidence
from alerts.notify.base import Receiver
from alerts.notify.message import Presentation
from alerts.notify.slack import (
    FIELD_MAX,
    HEADER_MAX,
    MAX_BLOCKS,
    SECTION_TEXT_MAX,
    SlackNotifyError,
    SlackReceiver,
    build_blocks,
)
from alerts.secret import Secret, redact
from tests.alerts.fake_slack import FakeSlack

RUNBOOK = "https://runbooks.example/traffic"
DASHBOARD = "https://grafana.example/d/ent"


@pytest.fixture
async def receivers(fake_slack: FakeSlack):
    """A factory of SlackReceivers pointed at the fake; all closed at teardown."""
    made: list[SlackReceiver] = []

    def make(**kwargs: Any) -> SlackReceiver:
        kwargs.setdefault("token", Secret(fake_slack.token))
        kwargs.setdefault("channel", "#alerts")
        kwargs.setdefault("base_url", fake_slack.base_url)
        kwargs.setdefault("timeout", 5)
        r = SlackReceiver(**kwargs)
        made.append(r)
        return r

    yield make
    for r in made:
        await r.aclose()


def check_limits(blocks: list[dict[str, Any]]) -> None:
    assert 0 < len(blocks) <= MAX_BLOCKS
    for b in blocks:
        if b["type"] == "header":
            assert b["text"]["type"] == "plain_text"
            assert len(b["text"]["text"]) <= HEADER_MAX
        elif b["type"] == "section":
            if "text" in b:
                assert len(b["text"]["text"]) <= SECTION_TEXT_MAX
            assert len(b.get("fields", [])) <= 10
            for f in b.get("fields", []):
                assert len(f["text"]) <= FIELD_MAX
        elif b["type"] == "context":
            assert 1 <= len(b["elements"]) <= 10
            for e in b["elements"]:
                assert len(e["text"]) <= 3000
        elif b["type"] == "actions":
            assert 1 <= len(b["elements"]) <= 25
        else:
            raise AssertionError(f"unexpected block type {b['type']}")


def all_blocks(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """A message's blocks, top level then in its attachments."""
    return [*payload.get("blocks", []), *(b for a in payload.get("attachments") or [] for b in a.get("blocks", []))]


def block_texts(blocks: list[dict[str, Any]]) -> str:
    return json.dumps(blocks, ensure_ascii=False)


# -- the conversation ---------------------------------------------------------


async def test_first_firing_posts_one_message_with_blocks(fake_slack, receivers, make_alert):
    receiver = receivers(runbook_url=RUNBOOK, dashboard_url=DASHBOARD)
    assert isinstance(receiver, Receiver)
    memory = await receiver.notify(make_alert(), None)

    posts = fake_slack.calls_to("chat.postMessage")
    assert len(fake_slack.calls) == 1 and len(posts) == 1
    call = posts[0]
    assert call.headers["Authorization"] == f"Bearer {fake_slack.token}"
    assert call.json["channel"] == "#alerts"
    assert "thread_ts" not in call.json
    assert call.json["text"].count("suspected attack") == 1  # the cause once
    blocks = all_blocks(call.json)
    check_limits(blocks)
    assert blocks[0]["type"] == "header"
    assert blocks[0]["text"]["text"].startswith(":rotating_light: CRITICAL · Traffic 8.2x usual")
    assert call.json["attachments"][0]["color"] == "#D0021B"
    assert "*Cause:* suspected attack (86% confidence)" in blocks[1]["text"]["text"]
    evidence = next(b["text"]["text"] for b in blocks if b["type"] == "section" and "*Evidence*" in b["text"]["text"])
    assert "• 812 req/s against 99 usual" in evidence
    context = next(b for b in blocks if b["type"] == "context")
    ctx = " ".join(e["text"] for e in context["elements"])
    assert "service=ent-grand-est" in ctx and "2021-04-06 08:04 UTC" in ctx
    actions = next(b for b in blocks if b["type"] == "actions")
    assert [e["url"] for e in actions["elements"]] == [RUNBOOK, DASHBOARD]

    (msg,) = fake_slack.top_level()
    assert (memory["channel"], memory["ts"]) == ("C0ALERTS01", msg.ts)


async def test_no_buttons_without_urls(fake_slack, receivers, make_alert):
    await receivers().notify(make_alert(), None)
    blocks = all_blocks(fake_slack.calls_to("chat.postMessage")[0].json)
    assert all(b["type"] != "actions" for b in blocks)


async def test_huge_alert_stays_within_block_kit_limits(fake_slack, receivers, make_alert):
    alert = make_alert(
        title="T" * 1000,
        evidence=tuple(
            Evidence(f"signal_{i}", float(i), 1.0, f"evidence {i} " + "x<&>" * 1500)
            for i in range(200)
        ),
    )
    receiver = receivers(runbook_url=RUNBOOK, dashboard_url=DASHBOARD)
    memory = await receiver.notify(alert, None)
    await receiver.notify(alert, memory)
    await receiver.notify(alert.resolved(alert.starts_at + 3600), memory)

    sent = [c for c in fake_slack.calls if c.method in ("chat.postMessage", "chat.update")]
    assert [c.outcome for c in sent] == ["ok"] * 4
    for call in sent:
        if "blocks" in call.json:
            check_limits(all_blocks(call.json))
        assert len(call.json["text"]) <= 3000
    root = all_blocks(sent[0].json)
    assert len(root[0]["text"]["text"]) == HEADER_MAX
    assert "more" in block_texts(root)


@pytest.mark.parametrize("kind", ["new", "resolved"])
@pytest.mark.parametrize("n_evidence", [0, 1, 10, 11, 200])
def test_build_blocks_limits(make_alert, kind, n_evidence):
    alert = make_alert(
        title="é" * 400,
        labels={"service": "s" * 4000, "host": "h", "disk": None},
        evidence=tuple(Evidence("sig", 1.0, 2.0, "&" * 3000) for _ in range(n_evidence)),
    )
    if kind == "resolved":
        alert = alert.resolved(alert.starts_at + 90)
    blocks = build_blocks(alert, kind=kind, pres=Presentation(runbook_url=RUNBOOK, dashboard_url=DASHBOARD))
    check_limits(blocks)
    for b in blocks:  # no entity cut in half by a truncation
        for e in b.get("elements", []):
            if e.get("type") == "mrkdwn":
                assert not e["text"].rstrip("…").endswith(("&", "&a", "&am", "&amp"))


async def test_second_firing_replies_in_thread(fake_slack, receivers, make_alert):
    receiver = receivers()
    memory = await receiver.notify(make_alert(), None)
    memory2 = await receiver.notify(make_alert(severity="warning", confidence=0.5), memory)

    assert (memory2["channel"], memory2["ts"]) == (memory["channel"], memory["ts"])
    posts = fake_slack.calls_to("chat.postMessage")
    assert len(posts) == 2
    reply = posts[1].json
    assert reply["thread_ts"] == memory["ts"]
    assert reply["channel"] == memory["channel"]
    text = reply["blocks"][0]["text"]["text"]
    assert "*Severity*: critical → *warning*" in text and "*Confidence:* 86% → 50%" in text
    assert "reply_broadcast" not in reply  # a de-escalation stays in the thread
    check_limits(reply["blocks"])
    assert len(fake_slack.top_level()) == 1
    assert len(fake_slack.replies(memory["ts"])) == 1


async def test_resolve_edits_original_and_replies_in_thread(fake_slack, receivers, make_alert):
    receiver = receivers()
    alert = make_alert()
    memory = await receiver.notify(alert, None)
    after = await receiver.notify(alert.resolved(alert.starts_at + 3725), memory)

    assert (after["channel"], after["ts"]) == (memory["channel"], memory["ts"])
    (update,) = fake_slack.calls_to("chat.update")
    assert update.json["ts"] == memory["ts"] and update.json["channel"] == memory["channel"]
    blocks = all_blocks(update.json)
    header = blocks[0]["text"]["text"]
    assert header.startswith(":white_check_mark: RESOLVED · ")
    assert "after 1h 2m" in blocks[1]["text"]["text"]
    assert update.json["text"].startswith("[RESOLVED] Traffic 8.2x usual on ent-grand-est: recovered")
    assert update.json["attachments"][0]["color"] == "#2EB67D"
    check_limits(blocks)

    root = fake_slack.messages[memory["ts"]]
    assert root.edits and root.blocks == update.json["blocks"]
    (reply,) = fake_slack.replies(memory["ts"])
    assert "*Resolved:* Traffic 8.2x usual on ent-grand-est: recovered Tue 6 Apr 09:06 UTC after 1h 2m" in reply.text
    assert fake_slack.calls_to("chat.postMessage")[-1].json["thread_ts"] == memory["ts"]


async def test_restarted_receiver_continues_the_thread(fake_slack, receivers, make_alert):
    memory = await receivers().notify(make_alert(), None)
    fresh = receivers()  # a new worker: all it has is the persisted memory
    await fresh.notify(make_alert(), dict(memory))
    await fresh.notify(make_alert().resolved(make_alert().starts_at + 60), dict(memory))
    assert len(fake_slack.top_level()) == 1
    assert len(fake_slack.replies(memory["ts"])) == 2
    assert fake_slack.calls_to("chat.update")[0].json["ts"] == memory["ts"]


async def test_resolved_without_memory_posts_a_resolved_message(fake_slack, receivers, make_alert):
    alert = make_alert()
    memory = await receivers().notify(alert.resolved(alert.starts_at + 30), None)
    (msg,) = fake_slack.top_level()
    assert memory == {"channel": "C0ALERTS01", "ts": msg.ts}
    assert msg.blocks[0]["text"]["text"].startswith(":white_check_mark: RESOLVED · ")


async def test_resolve_of_deleted_message_posts_a_new_one(fake_slack, receivers, make_alert):
    alert = make_alert()
    memory = await receivers().notify(alert, None)
    del fake_slack.messages[memory["ts"]]
    after = await receivers().notify(alert.resolved(alert.starts_at + 30), memory)
    assert after["ts"] != memory["ts"]
    assert (
        fake_slack.messages[after["ts"]].blocks[0]["text"]["text"].startswith(":white_check_mark:")
    )


# -- failures -------------------------------------------------------------------


async def test_rate_limited_then_ok_is_delivered_once_after_retry_after(
    fake_slack, receivers, make_alert
):
    fake_slack.retry_after = 1
    fake_slack.fail_next(1, "ratelimited")
    memory = await receivers().notify(make_alert(), None)

    calls = fake_slack.calls_to("chat.postMessage", outcome=None)
    assert [c.outcome for c in calls] == ["ratelimited", "ok"]
    assert calls[1].at - calls[0].at >= 1.0
    assert len(fake_slack.messages) == 1
    assert memory["ts"] in fake_slack.messages


async def test_rate_limited_longer_than_max_wait_is_left_to_the_caller(
    fake_slack, receivers, make_alert
):
    fake_slack.retry_after = 7
    fake_slack.set_mode("ratelimited")
    with pytest.raises(NotifyError) as info:
        await receivers(max_retry_after=2).notify(make_alert(), None)
    assert info.value.retryable is True
    assert info.value.retry_after == 7
    assert len(fake_slack.calls) == 1
    assert not fake_slack.messages


async def test_rate_limited_every_time_gives_up_after_bounded_retries(
    fake_slack, receivers, make_alert
):
    fake_slack.set_mode("ratelimited")
    with pytest.raises(NotifyError) as info:
        await receivers(max_retries=1).notify(make_alert(), None)
    assert info.value.retryable and info.value.retry_after == 1
    assert len(fake_slack.calls) == 2


async def test_server_error_then_ok_is_delivered_once(fake_slack, receivers, make_alert):
    fake_slack.fail_next(1, "error500")
    memory = await receivers().notify(make_alert(), None)
    assert [c.outcome for c in fake_slack.calls] == ["error500", "ok"]
    assert list(fake_slack.messages) == [memory["ts"]]


async def test_server_error_every_time_is_retryable(fake_slack, receivers, make_alert):
    fake_slack.set_mode("error500")
    with pytest.raises(SlackNotifyError) as info:
        await receivers(max_retries=1).notify(make_alert(), None)
    assert info.value.retryable is True and info.value.status == 500
    assert len(fake_slack.calls) == 2


@pytest.mark.parametrize(
    ("setup", "error"),
    [
        (lambda fake: fake.set_mode("invalid_auth"), "invalid_auth"),
        (lambda fake: setattr(fake, "token", "xoxb-another-token"), "invalid_auth"),
        (lambda fake: fake.channels.clear(), "channel_not_found"),
    ],
)
async def test_permanent_errors_are_not_retryable(fake_slack, receivers, make_alert, setup, error):
    receiver = receivers()
    setup(fake_slack)
    with pytest.raises(SlackNotifyError) as info:
        await receiver.notify(make_alert(), None)
    assert info.value.retryable is False
    assert info.value.error == error
    assert error in str(info.value)
    assert len(fake_slack.calls) == 1  # no in-call retry either


async def test_dropped_connection_once_is_delivered_after_retry(fake_slack, receivers, make_alert):
    fake_slack.fail_next(1, "drop")
    memory = await receivers().notify(make_alert(), None)
    assert [c.outcome for c in fake_slack.calls] == ["drop", "ok"]
    assert list(fake_slack.messages) == [memory["ts"]]


async def test_dropped_connection_every_time_is_retryable(fake_slack, receivers, make_alert):
    fake_slack.set_mode("drop")
    with pytest.raises(NotifyError) as info:
        await receivers(max_retries=1).notify(make_alert(), None)
    assert info.value.retryable is True
    assert not fake_slack.messages


async def test_timeout_is_retryable(fake_slack, receivers, make_alert):
    fake_slack.delay = 2.0
    with pytest.raises(NotifyError) as info:
        await receivers(timeout=0.3, max_retries=0).notify(make_alert(), None)
    assert info.value.retryable is True
    assert "timed out" in str(info.value)


async def test_unreachable_server_is_retryable(fake_slack_factory, make_alert):
    fake = await fake_slack_factory()
    url = fake.base_url
    await fake.stop()
    receiver = SlackReceiver(Secret(fake.token), "#alerts", base_url=url, max_retries=0)
    try:
        with pytest.raises(NotifyError) as info:
            await receiver.notify(make_alert(), None)
    finally:
        await receiver.aclose()
    assert info.value.retryable is True


async def test_failed_thread_reply_on_resolve_is_retryable_and_idempotent(
    fake_slack, receivers, make_alert
):
    receiver = receivers(max_retries=0)
    alert = make_alert()
    memory = await receiver.notify(alert, None)
    resolved = alert.resolved(alert.starts_at + 60)
    # chat.update succeeds, the thread reply fails: the retry redoes both, harmlessly.
    calls_before = len(fake_slack.calls)

    original = fake_slack._post_message
    state = {"n": 0}

    def flaky(p):
        state["n"] += 1
        if state["n"] == 1:
            return {"ok": False, "error": "internal_error"}
        return original(p)

    fake_slack._post_message = flaky
    with pytest.raises(NotifyError) as info:
        await receiver.notify(resolved, memory)
    assert info.value.retryable is True
    after = await receiver.notify(resolved, memory)
    assert (after["channel"], after["ts"]) == (memory["channel"], memory["ts"])
    methods = [c.method for c in fake_slack.calls[calls_before:]]
    assert methods == ["chat.update", "chat.postMessage", "chat.update", "chat.postMessage"]
    assert len(fake_slack.replies(memory["ts"])) == 1


# -- the token ------------------------------------------------------------------


async def test_token_never_leaks(fake_slack, receivers, make_alert, caplog):
    caplog.set_level(logging.DEBUG)
    token = fake_slack.token
    receiver = receivers(max_retries=1, max_retry_after=0.1)
    assert token not in repr(receiver) and token not in str(receiver.token)
    assert token not in repr(vars(receiver))

    texts: list[str] = []
    memory = await receiver.notify(make_alert(), None)
    for mode in ("ratelimited", "error500", "drop", "invalid_auth"):
        fake_slack.set_mode(mode)
        try:
            await receiver.notify(make_alert(), memory)
        except NotifyError as err:
            texts += [str(err), repr(err), "".join(traceback.format_exception(err))]
        else:
            raise AssertionError(f"mode {mode} did not fail")
    fake_slack.set_mode("ok")
    fake_slack.token = "xoxb-rotated"  # noqa: S105 - the server now rejects ours
    with pytest.raises(NotifyError) as info:
        await receiver.notify(make_alert(), memory)
    texts += [str(info.value), "".join(traceback.format_exception(info.value))]

    assert len(texts) == 14
    for text in texts:
        assert token not in text
    logged = caplog.text + "".join(repr(r.args) for r in caplog.records)
    assert "Sending a request" in logged  # slack-sdk's debug logging was on
    assert token not in logged
    for call in fake_slack.calls:
        assert token not in call.body
        assert token not in json.dumps(call.json)


def test_secret_masks_and_redacts():
    s = Secret("xoxb-1-2/3")
    assert repr(s) == str(s) == f"{s}" == "**********"
    assert s.get() == "xoxb-1-2/3"
    assert s == Secret("xoxb-1-2/3") and s != Secret("x")
    assert redact("a xoxb-1-2/3 b xoxb-1-2%2F3 c", [s, None, ""]) == "a ********** b ********** c"
    with pytest.raises(TypeError):
        "token " + s  # type: ignore[operator]


# -- the fake itself ------------------------------------------------------------


async def test_fake_accepts_form_bodies_and_token_field(fake_slack):
    async with aiohttp.ClientSession() as session:
        form = {"token": fake_slack.token, "channel": "alerts", "text": "hello"}
        async with session.post(fake_slack.base_url + "chat.postMessage", data=form) as resp:
            body = await resp.json()
        async with session.post(
            fake_slack.base_url + "auth.test", headers={"Authorization": "Bearer nope"}
        ) as resp:
            denied = await resp.json()
    assert body["ok"] and body["channel"] == "C0ALERTS01"
    assert fake_slack.calls[0].json["text"] == "hello"
    assert denied == {"ok": False, "error": "invalid_auth"}


async def test_receiver_check_calls_auth_test(fake_slack, receivers):
    info = await receivers().check()
    assert info["user_id"] == "U0TOCSIN"
    assert fake_slack.calls_to("auth.test")[0].headers["Authorization"].startswith("Bearer ")
