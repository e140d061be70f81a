"""A fake Slack Web API served over real HTTP on 127.0.0.1, port 0.

Implements ``chat.postMessage``, ``chat.update`` and ``auth.test`` with JSON
or form bodies and bearer (or ``token`` field) auth, records every call and
every message (text, blocks, coloured attachments, ``reply_broadcast``), and
fails on demand:

- ``mode`` (switchable at run time): ``ok``, ``ratelimited`` (HTTP 429 with
  ``Retry-After``), ``error500``, ``drop`` (close the connection without an
  answer), ``invalid_auth`` (HTTP 200, ``ok: false``);
- ``fail_next(n, mode)``: the next ``n`` calls fail that way, then ``mode``
  applies again;
- ``delay``: seconds to wait before answering, to make clients time out.

A call that fails is recorded (``Call.outcome`` says how) but changes no
message, as on Slack, so a retry after it cannot duplicate a message.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

__all__ = ["FakeSlack", "Call", "Message", "MODES"]

MODES = ("ok", "ratelimited", "error500", "drop", "invalid_auth")


@dataclass
class Call:
    """One request the fake received."""

    method: str
    json: dict[str, Any]
    headers: dict[str, str]
    body: str
    outcome: str = "ok"
    at: float = 0.0  # loop time of arrival


@dataclass
class Message:
    channel: str
    ts: str
    text: str | None
    blocks: list[dict[str, Any]] | None
    thread_ts: str | None = None
    edits: list[dict[str, Any]] = field(default_factory=list)
    attachments: list[dict[str, Any]] | None = None
    broadcast: bool = False

    @property
    def all_blocks(self) -> list[dict[str, Any]]:
        """The top-level blocks, then those of the attachments (what the channel shows)."""
        return [*(self.blocks or []), *(b for a in self.attachments or [] for b in a.get("blocks", []))]

    @property
    def shown_text(self) -> str:
        """Every text of the message's blocks, one per line: what a reader sees."""
        out = []
        for b in self.all_blocks:
            if "text" in b:
                out.append(b["text"]["text"])
            out.extend(e["text"]["text"] if isinstance(e.get("text"), dict) else e.get("text", "")
                       for e in b.get("elements", []))
        return "\n".join(out)


class FakeSlack:
    """The fake server; ``await start()``, then point a client at ``base_url``."""

    def __init__(
        self,
        token: str = "xoxb-fake-0000-SECRET-token",  # noqa: S107 - a fake token
        channels: dict[str, str] | None = None,
        retry_after: int = 1,
    ):
        self.token = token
        self.channels = channels if channels is not None else {"alerts": "C0ALERTS01"}
        self.retry_after = retry_after
        self.mode = "ok"
        self.delay = 0.0  # seconds to wait before answering (timeouts)
        self.calls: list[Call] = []
        self.messages: dict[str, Message] = {}
        self._failures: deque[str] = deque()
        # More Web API methods (name -> handler(payload) -> answer), for fakes built on this one.
        self.extra_methods: dict[str, Any] = {}
        self._ts = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    # -- control -----------------------------------------------------------

    def set_mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}, expected one of {MODES}")
        self.mode = mode

    def fail_next(self, n: int, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}, expected one of {MODES}")
        self._failures.extend([mode] * n)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/"

    def calls_to(self, method: str, outcome: str | None = "ok") -> list[Call]:
        """Calls of ``method`` that ended with ``outcome`` (None: all)."""
        return [
            c
            for c in self.calls
            if c.method == method and (outcome is None or c.outcome == outcome)
        ]

    def top_level(self) -> list[Message]:
        return [m for m in self.messages.values() if m.thread_ts is None]

    def replies(self, thread_ts: str) -> list[Message]:
        return [m for m in self.messages.values() if m.thread_ts == thread_ts]

    # -- server ------------------------------------------------------------

    async def start(self) -> FakeSlack:
        app = web.Application()
        app.router.add_post("/api/{method}", self._handle)
        app.router.add_get("/api/{method}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        sock = site._server.sockets[0]  # type: ignore[union-attr]
        self.port = sock.getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeSlack:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _read(self, request: web.Request) -> tuple[dict[str, Any], str]:
        body = await request.text()
        if request.content_type == "application/json":
            return (json.loads(body) if body else {}), body
        if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
            form = await request.post()
            return {k: v for k, v in form.items() if isinstance(v, str)}, body
        return dict(request.query), body

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        payload, body = await self._read(request)
        payload = {**dict(request.query), **payload}
        call = Call(
            method=method,
            json=payload,
            headers=dict(request.headers),
            body=body,
            at=asyncio.get_running_loop().time(),
        )
        self.calls.append(call)

        mode = self._failures.popleft() if self._failures else self.mode
        if self.delay:
            await asyncio.sleep(self.delay)
        call.outcome = mode
        if mode == "drop":
            assert request.transport is not None
            request.transport.abort()
            # Nothing can be answered on an aborted connection.
            raise asyncio.CancelledError
        if mode == "ratelimited":
            return web.json_response(
                {"ok": False, "error": "ratelimited"},
                status=429,
                headers={"Retry-After": str(self.retry_after)},
            )
        if mode == "error500":
            return web.json_response({"ok": False, "error": "internal_error"}, status=500)
        if mode == "invalid_auth":
            return web.json_response({"ok": False, "error": "invalid_auth"})

        auth = request.headers.get("Authorization", "")
        token = auth[len("Bearer ") :] if auth.startswith("Bearer ") else payload.get("token")
        if not token:
            call.outcome = "not_authed"
            return web.json_response({"ok": False, "error": "not_authed"})
        if token != self.token:
            call.outcome = "invalid_auth"
            return web.json_response({"ok": False, "error": "invalid_auth"})

        handler = {
            "chat.postMessage": self._post_message,
            "chat.update": self._update,
            "auth.test": self._auth_test,
        }.get(method) or self.extra_methods.get(method)
        if handler is None:
            call.outcome = "unknown_method"
            return web.json_response({"ok": False, "error": "unknown_method"}, status=404)
        result = handler(payload)
        if not result.get("ok"):
            call.outcome = result.get("error", "error")
        return web.json_response(result)

    def _channel_id(self, channel: str | None) -> str | None:
        if not channel:
            return None
        if channel in self.channels.values():
            return channel
        return self.channels.get(channel.lstrip("#"))

    @staticmethod
    def _blocks(payload: dict[str, Any], key: str = "blocks") -> list[dict[str, Any]] | None:
        blocks = payload.get(key)
        if isinstance(blocks, str):  # form bodies carry blocks as a JSON string
            blocks = json.loads(blocks)
        return blocks

    def _post_message(self, p: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel_id(p.get("channel"))
        if channel is None:
            return {"ok": False, "error": "channel_not_found"}
        if not p.get("text") and not p.get("blocks"):
            return {"ok": False, "error": "no_text"}
        thread_ts = p.get("thread_ts")
        if thread_ts is not None and thread_ts not in self.messages:
            return {"ok": False, "error": "thread_not_found"}
        ts = f"1700000000.{next(self._ts):06d}"
        msg = Message(channel, ts, p.get("text"), self._blocks(p), thread_ts,
                      attachments=self._blocks(p, "attachments"),
                      broadcast=bool(thread_ts and p.get("reply_broadcast") in (True, "true", "1")))
        self.messages[ts] = msg
        return {
            "ok": True,
            "channel": channel,
            "ts": ts,
            "message": {"type": "message", "text": msg.text, "ts": ts, "blocks": msg.blocks},
        }

    def _update(self, p: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel_id(p.get("channel"))
        if channel is None:
            return {"ok": False, "error": "channel_not_found"}
        msg = self.messages.get(p.get("ts", ""))
        if msg is None or msg.channel != channel:
            return {"ok": False, "error": "message_not_found"}
        msg.edits.append({"text": msg.text, "blocks": msg.blocks, "attachments": msg.attachments})
        msg.text = p.get("text", msg.text)
        msg.blocks = self._blocks(p) if "blocks" in p else msg.blocks
        msg.attachments = self._blocks(p, "attachments") if "attachments" in p else msg.attachments
        return {"ok": True, "channel": channel, "ts": msg.ts, "text": msg.text}

    def _auth_test(self, p: dict[str, Any]) -> dict[str, Any]:
        return {
            "ok": True,
            "url": "https://tocsin.slack.com/",
            "team": "tocsin",
            "user": "tocsin-bot",
            "team_id": "T0TOCSIN",
            "user_id": "U0TOCSIN",
            "bot_id": "B0TOCSIN",
        }
