"""Slack's two ways in, over the wire: the request URL on the worker's web server, and Socket Mode.

The request URL is served by a real Faust web server (the worker's aiohttp
driver) on 127.0.0.1, and the fake Slack POSTs signed and forged clicks to
it; Socket Mode is slack-sdk's client connected to the fake Slack's local
websocket server, which sends it an ``interactive`` envelope.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import aiohttp
import faust
import pytest
from slack_sdk.web.async_client import AsyncWebClient

from alerts.ack import AckStore
from alerts.model import Alert
from alerts.notify.slack import build_blocks
from alerts.notify.slack_actions import AllowList, RequestVerifier, SlackActions, action_blocks
from alerts.secret import Secret
from alerts.silence import SilenceLimits, Silencer, SilenceStore
from stream.broker import free_port
from stream.settings import WebConfig
from stream.slack_socket import SlackSocket
from stream.web import faust_web_settings, install_slack_actions
from tests.alerts.fake_slack_app import (
    APP_TOKEN,
    FORGED_SECRET,
    SIGNING_SECRET,
    FakeSlackApp,
    block_actions,
    signed,
)

GROUP = '/:oncall:{service="ent-grand-est"}'
ONCALL = "U024BE7LH"


@pytest.fixture
async def slack(no_proxy_env):
    server = await FakeSlackApp().start()
    yield server
    await server.stop()


@pytest.fixture
def make_alert():
    def make(**kw) -> Alert:
        fields = {"labels": {"service": "ent-grand-est", "host": None, "disk": None}, "status": "firing",
                  "severity": "critical", "title": "Traffic 8.2x usual on ent-grand-est: suspected attack",
                  "cause": "suspected_attack", "confidence": 0.86, "starts_at": time.time() - 300}
        return Alert(**{**fields, **kw})

    return make


@pytest.fixture
def no_proxy_env(monkeypatch):
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(name, raising=False)


def build(slack: FakeSlackApp, published: list, **kw) -> SlackActions:
    async def publish(rec: dict) -> None:
        published.append(rec)

    client = AsyncWebClient(token=slack.token, base_url=slack.base_url)
    return SlackActions(
        silences=SilenceStore(), limits=SilenceLimits(), publish_silence=publish, publish_label=publish,
        publish_ack=publish, acks=AckStore(), allow=AllowList((ONCALL,)), client=client,
        verifier=RequestVerifier(Secret(SIGNING_SECRET)), **kw)


async def parent(slack: FakeSlackApp, alert):
    client = AsyncWebClient(token=slack.token, base_url=slack.base_url)
    resp = await client.chat_postMessage(channel="alerts", text=alert.title, blocks=build_blocks(alert)
                                         + action_blocks(GROUP, {"service": "ent-grand-est"}, alert))
    return slack.messages[resp["ts"]]


@contextlib.asynccontextmanager
async def serve(actions: SlackActions):
    web = WebConfig(port=free_port())
    app = faust.App(f"slack-test-{web.port}", broker="kafka://127.0.0.1:1", autodiscover=False, web_enabled=True,
                    **faust_web_settings(web))
    install_slack_actions(app, actions, web)
    await app.web.start()
    try:
        yield f"http://127.0.0.1:{web.port}/slack/actions"
    finally:
        await app.web.stop()


async def test_request_url_takes_signed_clicks_and_refuses_forged_ones(slack, make_alert):
    published: list[dict] = []
    actions = build(slack, published)
    msg = await parent(slack, make_alert())
    click = block_actions(msg, "tocsin_silence_1h", ONCALL)
    async with serve(actions) as url:
        # Forged: another secret; unsigned; too old; then the real one, then it replayed.
        assert (await slack.click(url, click, secret=FORGED_SECRET))[0] == 401
        status, answer = await slack.click(url, click, headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert status == 401 and "unsigned" in answer["error"]
        assert (await slack.click(url, click, ts=int(time.time()) - 600))[0] == 401
        assert published == [] and len(actions.silences) == 0
        body, headers = signed(click)
        async with aiohttp.ClientSession() as http:
            async with http.post(url, data=body, headers=headers) as r:
                assert r.status == 200, await r.text()
            async with http.post(url, data=body, headers=headers) as r:
                assert r.status == 401 and "replay" in (await r.json())["error"]
        # Signed, but not someone allowed: 403, told in Slack, nothing kept.
        status, _ = await slack.click(url, block_actions(msg, "tocsin_silence_4h", "U0INTRUDER"))
        assert status == 403 and slack.ephemeral[-1]["user"] == "U0INTRUDER"
        # Signed, allowed, but not a block_actions payload tocsin knows.
        status, answer = await slack.click(url, {"type": "view_submission", "user": {"id": ONCALL}})
        assert status == 400 and "block_actions" in answer["error"]
    assert len(published) == 1 and published[0]["created_by"] == ONCALL
    assert Silencer(actions.silences).mutes({"service": "ent-grand-est"}, time.time())


async def test_request_url_without_a_signing_secret_refuses_every_click(slack, make_alert):
    published: list[dict] = []
    actions = build(slack, published)
    actions.verifier = None
    msg = await parent(slack, make_alert())
    async with serve(actions) as url:
        status, answer = await slack.click(url, block_actions(msg, "tocsin_silence_1h", ONCALL))
    assert status == 403 and "no signing secret" in answer["error"] and published == []


async def test_socket_mode_delivers_clicks_over_an_outbound_websocket(slack, make_alert):
    published: list[dict] = []
    actions = build(slack, published)
    alert = make_alert()
    msg = await parent(slack, alert)
    sock = SlackSocket(Secret(APP_TOKEN), actions, base_url=slack.base_url, ping_interval=1.0)
    await sock.start()
    try:
        assert await sock.connected()
        # The client asked for the websocket URL with the app token, not the bot token.
        [opened] = slack.calls_to("apps.connections.open")
        assert opened.headers["Authorization"] == f"Bearer {APP_TOKEN}"
        await slack.send_interactive(block_actions(msg, "tocsin_wrong_cause", ONCALL, option="capacity_saturation"))
        await slack.send_interactive(block_actions(msg, "tocsin_silence_4h", "U0INTRUDER"))
        for _ in range(100):
            if sock.handled + sock.refused >= 2:
                break
            await asyncio.sleep(0.05)
    finally:
        await sock.stop()
    assert (sock.handled, sock.refused) == (1, 1)
    assert published == [{"schema": "tocsin.label.v1", "fingerprint": alert.fingerprint,
                          "cause": "capacity_saturation", "author": ONCALL, "source": "slack",
                          "ts": published[0]["ts"]}]
    assert slack.ephemeral[-1]["user"] == "U0INTRUDER" and len(actions.silences) == 0


async def test_socket_mode_with_a_wrong_app_token_never_acts(slack, make_alert):
    actions = build(slack, [])
    sock = SlackSocket(Secret("xapp-wrong"), actions, base_url=slack.base_url, ping_interval=0.2)
    task = asyncio.ensure_future(sock.start())
    try:
        for _ in range(40):
            if slack.calls_to("apps.connections.open", outcome="invalid_auth"):
                break
            await asyncio.sleep(0.05)
        assert slack.calls_to("apps.connections.open", outcome="invalid_auth")
        assert not slack.sockets
    finally:
        await sock.stop()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
