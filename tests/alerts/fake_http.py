"""A local HTTP endpoint for the webhook, Slack incoming-webhook and Alertmanager receivers.

Served over real HTTP on 127.0.0.1, port 0. Records every POST (path, JSON
body, headers) and answers each one by the next entry of ``modes`` (then
``mode``): ``ok``, ``429`` (with ``Retry-After: 7``), ``500``, ``400``,
``401``, ``404``, ``408``, ``drop`` (connection closed), ``slow`` (2 s).
"""

from __future__ import annotations

import asyncio

from aiohttp import web

__all__ = ["HTTPServer"]


class HTTPServer:
    """``await HTTPServer().start()``; ``base`` is its URL."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict, dict]] = []
        self.modes: list[str] = []
        self.mode = "ok"
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> HTTPServer:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append((request.path, body, dict(request.headers)))
        mode = self.modes.pop(0) if self.modes else self.mode
        if mode == "429":
            return web.json_response({"error": "slow down"}, status=429, headers={"Retry-After": "7"})
        if mode in ("400", "401", "404", "408", "500"):
            return web.Response(status=int(mode), text={"400": "invalid_payload", "401": "unauthorized",
                                                        "404": "no_service", "408": "timeout",
                                                        "500": "boom"}[mode])
        if mode == "drop":
            assert request.transport is not None
            request.transport.abort()
            raise asyncio.CancelledError
        if mode == "slow":
            await asyncio.sleep(2)
        return web.Response(text="ok")

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def posts(self, path: str) -> list[dict]:
        return [body for p, body, _ in self.requests if p == path]

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None
