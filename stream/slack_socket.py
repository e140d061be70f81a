"""Slack interactivity over Socket Mode: an outbound websocket, for workers Slack cannot reach.

Inside a company network Slack usually cannot call a worker's request URL;
with Socket Mode the worker opens the connection instead
(``apps.connections.open`` with the app-level token ``xapp-...``, then a
websocket to the URL it returns), and Slack sends the clicks down it as
``interactive`` envelopes. Each envelope is acknowledged at once (Slack
wants it within 3 seconds and retries otherwise), then handed to
:meth:`alerts.notify.slack_actions.SlackActions.handle`: the same
allow-list and actions as the HTTP request URL. No request signature here:
the connection itself is authenticated by the app token.

slack-sdk's ``SocketModeClient`` (aiohttp) keeps the connection: pings,
reconnects with a fresh URL when it drops.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web.async_client import AsyncWebClient

from alerts.notify.slack_actions import ActionError, SlackActions
from alerts.secret import Secret

__all__ = ["SlackSocket"]

log = logging.getLogger(__name__)


class SlackSocket:
    """One Socket Mode connection delivering clicks to ``actions``.

    Parameters
    ----------
    app_token
        The app-level token (scope ``connections:write``).
    actions
        What a click does.
    base_url
        Slack's Web API (``https://slack.com/api/``; the fake's in tests).
    ping_interval
        Seconds between the client's pings (a dead connection is replaced
        after four missed).
    """

    def __init__(self, app_token: Secret, actions: SlackActions, *, base_url: str | None = None,
                 ping_interval: float = 5.0) -> None:
        self.app_token = app_token
        self.actions = actions
        self.base_url = base_url
        self.ping_interval = ping_interval
        self.handled = 0
        self.refused = 0
        self._client: SocketModeClient | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        return f"SlackSocket(app_token={self.app_token!r}, base_url={self.base_url!r})"

    async def start(self) -> None:
        """Open the connection (retried by the client until it succeeds or :meth:`stop`)."""
        kw: dict[str, Any] = {"base_url": self.base_url} if self.base_url else {}
        web = AsyncWebClient(**kw)
        client = SocketModeClient(self.app_token.get(), web_client=web, ping_interval=self.ping_interval,
                                  logger=log)
        client.socket_mode_request_listeners.append(self._on_request)
        self._client = client
        await client.connect()

    async def stop(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
        for t in list(self._tasks):
            t.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def connected(self) -> bool:
        return self._client is not None and await self._client.is_connected()

    async def _on_request(self, client: SocketModeClient, req: SocketModeRequest) -> None:
        # Acknowledge first, whatever follows: an unacknowledged envelope is sent again.
        await client.send_socket_mode_response(SocketModeResponse(envelope_id=req.envelope_id))
        if req.type != "interactive":
            return
        task = asyncio.ensure_future(self._handle(req.payload))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle(self, payload: dict[str, Any]) -> None:
        try:
            out = await self.actions.handle(payload)
        except ActionError as exc:
            self.refused += 1
            log.warning("slack actions (socket mode): refused (%d): %s", exc.status, exc)
            return
        except Exception:  # noqa: BLE001 - one bad click must not close the connection
            self.refused += 1
            log.exception("slack actions (socket mode): a click failed")
            return
        if out.status == 200:
            self.handled += 1
        else:
            self.refused += 1
