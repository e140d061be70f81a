"""Slack's side of interactivity, faked over real HTTP and a real websocket on 127.0.0.1.

:class:`FakeSlackApp` is the fake Web API (:class:`FakeSlack`) plus:

- ``chat.postEphemeral`` and ``usergroups.users.list`` (members from
  ``user_groups``);
- ``apps.connections.open`` with the app-level token: answers the URL of a
  local Socket Mode websocket server (its own aiohttp server, port 0);
  :meth:`FakeSlackApp.send_interactive` sends an ``interactive`` envelope
  down every open connection and waits for the client's acknowledgement;
- :func:`block_actions`: the payload Slack sends when a user clicks a
  button (or picks an option) of a message the fake holds, and
  :func:`signed` / :meth:`FakeSlackApp.click`: that payload form-encoded and
  signed as Slack signs requests (``v0=`` HMAC-SHA256 of
  ``v0:<timestamp>:<body>`` with the signing secret), POSTed to a request URL.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import time
from typing import Any
from urllib.parse import urlencode

import aiohttp
from aiohttp import web

from tests.alerts.fake_slack import FakeSlack, Message

__all__ = ["APP_TOKEN", "FORGED_SECRET", "SIGNING_SECRET", "FakeSlackApp", "block_actions", "signed"]

SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"  # noqa: S105 - Slack's documented example secret
APP_TOKEN = "xapp-1-fake-app-token"  # noqa: S105 - a fake token
FORGED_SECRET = "guessed-signing-secret"  # noqa: S105 - what a forger signs with


def signed(payload: dict[str, Any], secret: str = SIGNING_SECRET, ts: int | None = None) -> tuple[bytes, dict[str, str]]:
    """The body and headers of Slack's interactivity request for ``payload``."""
    body = urlencode({"payload": json.dumps(payload)}).encode()
    stamp = str(int(time.time()) if ts is None else ts)
    sig = "v0=" + hmac.new(secret.encode(), f"v0:{stamp}:".encode() + body, hashlib.sha256).hexdigest()
    return body, {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": sig,
                  "Content-Type": "application/x-www-form-urlencoded"}


def block_actions(msg: Message, action_id: str, user: str, option: str | None = None) -> dict[str, Any]:
    """What Slack sends when ``user`` clicks ``action_id`` on ``msg`` (``option``: the cause picked)."""
    for block in msg.blocks or []:
        for el in block.get("elements", []) if block.get("type") == "actions" else []:
            if el.get("action_id") != action_id:
                continue
            action: dict[str, Any] = {"action_id": action_id, "block_id": block.get("block_id"),
                                      "type": el["type"], "action_ts": f"{time.time():.6f}"}
            if el["type"] == "static_select":
                [picked] = [o for o in el["options"] if o["value"].split("|")[0] == option]
                action["selected_option"] = picked
            else:
                action["value"] = el.get("value")
            return {
                "type": "block_actions",
                "user": {"id": user, "username": user.lower(), "team_id": "T0TOCSIN"},
                "team": {"id": "T0TOCSIN", "domain": "tocsin"},
                "container": {"type": "message", "message_ts": msg.ts, "channel_id": msg.channel,
                              "is_ephemeral": False},
                "channel": {"id": msg.channel, "name": "alerts"},
                "message": {"type": "message", "ts": msg.ts, "text": msg.text, "blocks": msg.blocks},
                "actions": [action],
                "response_url": "https://hooks.slack.invalid/actions/T0/1/x",
                "trigger_id": "1.2.3",
            }
    raise AssertionError(f"no {action_id} on message {msg.ts}")


class FakeSlackApp(FakeSlack):
    def __init__(self, *args: Any, user_groups: dict[str, list[str]] | None = None,
                 app_token: str = APP_TOKEN, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.user_groups = user_groups or {}
        self.app_token = app_token
        self.ephemeral: list[dict[str, Any]] = []
        self.sockets: list[web.WebSocketResponse] = []
        self.acks: dict[str, asyncio.Future[None]] = {}
        self._envelopes = itertools.count(1)
        self._ws_runner: web.AppRunner | None = None
        self.ws_port: int | None = None
        self.extra_methods.update({"chat.postEphemeral": self._ephemeral,
                                   "usergroups.users.list": self._group_members})

    async def start(self) -> FakeSlackApp:
        await super().start()
        app = web.Application()
        app.router.add_get("/link", self._socket)
        self._ws_runner = web.AppRunner(app, access_log=None)
        await self._ws_runner.setup()
        site = web.TCPSite(self._ws_runner, "127.0.0.1", 0)
        await site.start()
        self.ws_port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        for ws in list(self.sockets):
            await ws.close()
        if self._ws_runner is not None:
            await self._ws_runner.cleanup()
            self._ws_runner = None
        await super().stop()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["method"] != "apps.connections.open":
            return await super()._handle(request)
        auth = request.headers.get("Authorization", "")
        ok = auth == f"Bearer {self.app_token}"
        self.calls.append(self._call_of(request, "ok" if ok else "invalid_auth"))
        if not ok:
            return web.json_response({"ok": False, "error": "invalid_auth"})
        return web.json_response({"ok": True, "url": f"ws://127.0.0.1:{self.ws_port}/link"})

    def _call_of(self, request: web.Request, outcome: str) -> Any:
        from tests.alerts.fake_slack import Call

        return Call(method=request.match_info["method"], json={}, headers=dict(request.headers), body="",
                    outcome=outcome)

    def _ephemeral(self, p: dict[str, Any]) -> dict[str, Any]:
        self.ephemeral.append(p)
        return {"ok": True, "message_ts": f"1700000000.9{len(self.ephemeral):05d}"}

    def _group_members(self, p: dict[str, Any]) -> dict[str, Any]:
        members = self.user_groups.get(p.get("usergroup", ""))
        if members is None:
            return {"ok": False, "error": "no_such_subteam"}
        return {"ok": True, "users": members}

    # -- Socket Mode -------------------------------------------------------------

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        await ws.send_str(json.dumps({"type": "hello", "num_connections": 1,
                                      "debug_info": {"host": "fake"}, "connection_info": {"app_id": "A0FAKE"}}))
        self.sockets.append(ws)
        try:
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    data = json.loads(msg.data)
                    fut = self.acks.get(data.get("envelope_id", ""))
                    if fut is not None and not fut.done():
                        fut.set_result(None)
        finally:
            self.sockets.remove(ws)
        return ws

    async def send_interactive(self, payload: dict[str, Any], timeout: float = 10.0) -> str:
        """Send ``payload`` as an ``interactive`` envelope; returns its id once the client acknowledged it."""
        envelope = f"env-{next(self._envelopes)}"
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.acks[envelope] = fut
        for ws in self.sockets:
            await ws.send_str(json.dumps({"envelope_id": envelope, "type": "interactive", "payload": payload,
                                          "accepts_response_payload": False}))
        await asyncio.wait_for(fut, timeout)
        return envelope

    async def click(self, url: str, payload: dict[str, Any], secret: str = SIGNING_SECRET, ts: int | None = None,
                    headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
        """POST ``payload`` signed (or with ``headers`` instead) to a request URL; (status, JSON answer)."""
        body, signed_headers = signed(payload, secret, ts)
        async with aiohttp.ClientSession() as http, http.post(url, data=body,
                                                             headers=headers if headers is not None
                                                             else signed_headers) as r:
            text = await r.text()
            try:
                return r.status, json.loads(text)
            except ValueError:
                return r.status, {"text": text}
