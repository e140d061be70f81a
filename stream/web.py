"""The worker's HTTP API: silences, in tocsin's format and in Alertmanager's.

Routes (on the Faust web server of the worker, :func:`install_views`):

``GET /silences/``, ``POST /silences/``, ``GET|DELETE /silences/{id}``
    tocsin's silence records (:mod:`alerts.silence`).
``GET|POST /api/v2/silences``, ``GET|DELETE /api/v2/silence/{id}``
    Alertmanager's API v2 format, so ``amtool silence add|query|expire
    --alertmanager.url=http://<worker>:6066`` works against a worker.
``POST /slack/actions`` (:func:`install_slack_actions`)
    Slack's interactivity request URL: button clicks on alert messages,
    verified by Slack's request signature instead of the bearer token
    (:mod:`alerts.notify.slack_actions`).

Safe by default (:class:`~stream.settings.WebConfig`): the server listens on
127.0.0.1 unless told otherwise, and :func:`faust_web_settings` turns off
Faust's own views (``/router/``, ``/table/``, ``/graph/``, statistics). A
write needs ``Authorization: Bearer <token>``, compared in constant time, the
token from a file or an environment variable; with no token configured every
write is refused (403). A body is read up to ``max_body_bytes`` (413 beyond)
and its JSON nested at most ``max_json_depth`` deep (400 beyond). A silence
is validated against its limits before anything is published or stored:
published on the silences topic first, then kept in this worker's store, so
a refused request changes nothing and a failed publish answers 503.
"""

from __future__ import annotations

import hmac
import logging
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import faust
import orjson
from faust.web import Request, Response, View

from alerts.notify.slack_actions import ActionError, SlackActions
from alerts.secret import Secret
from alerts.silence import (
    Silence,
    SilenceAPI,
    SilenceError,
    SilenceStore,
    alertmanager_filter,
    from_alertmanager,
    to_alertmanager,
)
from detectors.errors import ConfigError

from .settings import WebConfig

__all__ = ["WebError", "faust_web_settings", "install_slack_actions", "install_views", "json_depth", "read_json"]

log = logging.getLogger(__name__)

Publish = Callable[[dict[str, Any]], Awaitable[None]]


def faust_web_settings(web: WebConfig) -> dict[str, Any]:
    """Keyword arguments of ``faust.App`` for the worker's web server.

    Binds ``web.host`` (127.0.0.1 by default; Faust's own default is every
    interface) and serves none of Faust's built-in views, which show tables
    and routing to anyone who asks; only ``/`` (``{"status": "OK"}``) stays.
    """
    wildcard = web.host in ("", "0.0.0.0", "::")  # noqa: S104 - compared, not bound
    return {
        "web_bind": web.host,
        "web_host": socket.gethostname() if wildcard else web.host,  # the address other workers are told
        "web_port": web.port,
        "web_router_enabled": False,
        "web_tables_enabled": False,
        "web_graph_enabled": False,
        "web_stats_enabled": False,
        "web_metrics_enabled": False,
        "web_application_options": {"client_max_size": web.max_body_bytes},
    }


class WebError(Exception):
    """An HTTP error answer: ``status`` and a message for the client."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers or {}


def json_depth(value: Any, limit: int) -> int:
    """Nesting depth of a parsed JSON value (a scalar is 0), counted without recursion up to ``limit + 1``.

    >>> json_depth({"a": [1, {"b": 2}]}, 16), json_depth(3, 16)
    (3, 0)
    """
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict | list):
            d += 1
            deepest = max(deepest, d)
            if deepest > limit:
                return deepest
            stack.extend((x, d) for x in (v.values() if isinstance(v, dict) else v))
    return deepest


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The raw body of ``request``; WebError 413 when larger than ``max_bytes``."""
    declared = request.content_length
    if declared is not None and declared > max_bytes:
        raise WebError(413, f"the body is {declared} bytes, at most {max_bytes}")
    body = bytearray()
    while True:
        chunk = await request.content.read(65536)
        if not chunk:
            break
        body += chunk
        if len(body) > max_bytes:
            raise WebError(413, f"the body is more than {max_bytes} bytes")
    return bytes(body)


async def read_json(request: Request, max_bytes: int, max_depth: int) -> Any:
    """The JSON body of ``request``; WebError 413 when larger than ``max_bytes``, 400 when not JSON or too deep."""
    body = await read_body(request, max_bytes)
    if not body.strip():
        raise WebError(400, "the body must be a JSON object (it is empty)")
    try:
        value = orjson.loads(body)  # orjson stops at 1024 levels with an error, never a RecursionError
    except orjson.JSONDecodeError as exc:
        raise WebError(400, f"the body is not valid JSON: {exc}") from None
    if json_depth(value, max_depth) > max_depth:
        raise WebError(400, f"the JSON body is nested more than {max_depth} levels deep")
    return value


class _Auth:
    """Bearer-token check; ``token`` None means writes are disabled."""

    def __init__(self, token: Secret | None, reads: bool) -> None:
        self._token = token.get().encode() if token is not None else None
        self.reads = reads

    def check(self, request: Request, write: bool) -> None:
        if not (write or self.reads):
            return
        if self._token is None:
            raise WebError(403, "writes are disabled: no API token is configured "
                                "(set the variable TOCSIN_WEB_TOKEN, or web.token_env / web.token_file)")
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        # compare_digest takes as long whatever the first wrong byte; only the length may show.
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), self._token):
            raise WebError(401, "a valid 'Authorization: Bearer <token>' header is required",
                           {"WWW-Authenticate": 'Bearer realm="tocsin"'})


def _answer(view: View, value: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return view.bytes(orjson.dumps(value), content_type="application/json", status=status, headers=headers)


def install_views(
    app: faust.App,
    silences: SilenceStore,
    publish: Publish,
    clock: Callable[[], float],
    settings: WebConfig,
) -> SilenceAPI:
    """Register the silence views on ``app``'s web server; returns the API object they share.

    ``publish(record)`` sends one silence record to the silences topic (key:
    its id) and raises if it could not; ``clock()`` is the wall time.
    Raises ConfigError when the configured token file cannot be read.
    """
    token = settings.write_token()
    if settings.auth_reads and token is None:
        raise ConfigError("web.auth_reads: reads need a token, and none is configured "
                          "(set TOCSIN_WEB_TOKEN, or web.token_env / web.token_file)")
    auth = _Auth(token, settings.auth_reads)
    api = SilenceAPI(silences, settings.silence_limits())
    if token is None:
        log.warning("web API: no token configured, silences cannot be created or expired over HTTP "
                    "(set TOCSIN_WEB_TOKEN or web.token_file)")

    async def body(request: Request) -> Any:
        return await read_json(request, settings.max_body_bytes, settings.max_json_depth)

    async def commit(changes: list[Silence]) -> None:
        """Publish every change, then keep them: nothing is stored unless it is on the topic."""
        for s in changes:
            try:
                await publish(s.to_record())
            except Exception as exc:  # noqa: BLE001 - any producer failure: tell the client, keep nothing
                log.error("could not publish silence %s: %s", s.id, exc)
                raise WebError(503, "the silence could not be written to the silences topic; "
                                    "nothing was changed, try again") from None
        for s in changes:
            silences.apply(s)

    def known(silence_id: str) -> Silence:
        """The silence of that id, or a 404 naming it."""
        s = silences.get(silence_id)
        if s is None:
            raise WebError(404, f"no silence with id {silence_id[:100]!r}")
        return s

    def guarded(am: bool) -> Callable[[Callable[..., Awaitable[Response]]], Callable[..., Awaitable[Response]]]:
        """Errors as answers: tocsin's views give ``{"error": ...}``, Alertmanager's a JSON string, as it does."""

        def wrap(handler: Callable[..., Awaitable[Response]]) -> Callable[..., Awaitable[Response]]:
            async def run(view: View, request: Request, **kwargs: Any) -> Response:
                try:
                    return await handler(view, request, **kwargs)
                except WebError as exc:
                    status, msg, headers = exc.status, str(exc), exc.headers
                except SilenceError as exc:
                    status, msg, headers = exc.status, str(exc), {}
                except Exception:  # noqa: BLE001 - log it, answer 500 without the details
                    log.exception("web API: %s %s failed", request.method, request.path)
                    status, msg, headers = 500, "internal error (logged by the worker)", {}
                return _answer(view, msg if am else {"error": msg}, status, headers)

            run.__name__ = handler.__name__
            return run

        return wrap

    @app.page("/silences/", name="tocsin_silences")
    class Silences(View):
        @guarded(am=False)
        async def get(self, request: Request) -> Response:
            auth.check(request, write=False)
            return _answer(self, api.list_silences(clock()))

        @guarded(am=False)
        async def post(self, request: Request) -> Response:
            auth.check(request, write=True)
            payload = await body(request)
            now = clock()
            s = api.new_silence(payload, now)
            await commit([s])
            return _answer(self, s.to_record(now), 201)

    @app.page("/silences/{silence_id}", name="tocsin_silence")
    class OneSilence(View):
        @guarded(am=False)
        async def get(self, request: Request, silence_id: str) -> Response:
            auth.check(request, write=False)
            return _answer(self, known(silence_id).to_record(clock()))

        @guarded(am=False)
        async def delete(self, request: Request, silence_id: str) -> Response:
            auth.check(request, write=True)
            now = clock()
            s = api.expiry(silence_id, now)
            await commit([s])
            return _answer(self, s.to_record(now))

    @app.page("/api/v2/silences", name="alertmanager_silences")
    class AMSilences(View):
        @guarded(am=True)
        async def get(self, request: Request) -> Response:
            auth.check(request, write=False)
            now = clock()
            found = alertmanager_filter(api.silences(now), request.query.getall("filter", []))
            return _answer(self, [to_alertmanager(s, now) for s in found])

        @guarded(am=True)
        async def post(self, request: Request) -> Response:
            auth.check(request, write=True)
            sid, payload = from_alertmanager(await body(request))
            now = clock()
            changes = api.update(sid, payload, now) if sid is not None else [api.new_silence(payload, now)]
            await commit(changes)
            return _answer(self, {"silenceID": changes[-1].id})

    @app.page("/api/v2/silence/{silence_id}", name="alertmanager_silence")
    class AMSilence(View):
        @guarded(am=True)
        async def get(self, request: Request, silence_id: str) -> Response:
            auth.check(request, write=False)
            return _answer(self, to_alertmanager(known(silence_id), clock()))

        @guarded(am=True)
        async def delete(self, request: Request, silence_id: str) -> Response:
            auth.check(request, write=True)
            await commit([api.expiry(silence_id, clock())])
            return _answer(self, None)

    return api


def install_slack_actions(app: faust.App, actions: SlackActions, settings: WebConfig,
                          path: str = "/slack/actions") -> None:
    """Serve Slack's interactivity request URL on ``app``'s web server.

    The body is read raw (up to ``max_body_bytes``), its signature checked
    (401 when unsigned, forged, too old or replayed), then the click is done:
    200 when done, 403 for a user not on the allow-list (told in Slack), 400
    for a payload tocsin does not understand, 503 when the record could not
    be written (Slack then shows the user that the action failed).
    """

    @app.page(path, name="tocsin_slack_actions")
    class SlackActionsView(View):
        async def post(self, request: Request) -> Response:
            try:
                body = await read_body(request, settings.max_body_bytes)
                out = await actions.handle_http(body, dict(request.headers))
                return _answer(self, {"ok": True, "done": out.text}, out.status)
            except WebError as exc:
                status, msg = exc.status, str(exc)
            except ActionError as exc:
                status, msg = exc.status, str(exc)
            except Exception:  # noqa: BLE001 - log it, answer 500 without the details
                log.exception("slack actions: %s failed", request.path)
                status, msg = 500, "internal error (logged by the worker)"
            if status in (401, 400):
                log.warning("slack actions: request refused (%d): %s", status, msg)
            return _answer(self, {"ok": False, "error": msg}, status)
