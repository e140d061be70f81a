"""One JSON POST with a timeout, failures classified for the retry stage, secrets kept out.

:class:`HTTPPoster` is shared by the webhook and Alertmanager receivers. A
failure raises :class:`~alerts.errors.NotifyError` (see
:func:`classify_status`): retryable for timeouts, dropped connections, HTTP
408, 429 (with ``Retry-After``) and 5xx; not retryable for other 4xx (the
request itself is wrong, or the credentials or URL are: a retry sends the
same), which make the receiver unusable until someone fixes what the error
says. The URL and token are :class:`~alerts.secret.Secret` and are redacted
from every message.

:func:`retry_after_seconds` is the one ``Retry-After`` parser of the
receivers (the Slack receivers use it too).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Literal

import aiohttp
import orjson

from alerts.errors import NotifyError
from alerts.secret import Secret, redact

__all__ = ["HTTPPoster", "RATE_LIMIT_WAIT", "classify_status", "receiver_error", "refusal", "retry_after_seconds",
           "transport_failure"]

log = logging.getLogger(__name__)


def retry_after_seconds(value: str | Mapping[str, Any] | None, now: datetime | None = None) -> float | None:
    """``Retry-After`` in seconds: from the header value or from a mapping of headers.

    A number of seconds or an HTTP date (RFC 9110 10.2.3), relative to
    ``now`` (default: the clock); None when absent or unreadable. A header
    given as a list (slack-sdk) counts by its first value.

    >>> retry_after_seconds("7")
    7.0
    >>> retry_after_seconds({"retry-after": ["30"]})
    30.0
    >>> retry_after_seconds("Tue, 06 Apr 2021 08:05:00 GMT", now=datetime(2021, 4, 6, 8, 4, tzinfo=UTC))
    60.0
    >>> retry_after_seconds("soon") is None and retry_after_seconds({}) is None
    True
    """
    if isinstance(value, Mapping):
        value = next((v for k, v in value.items() if str(k).lower() == "retry-after"), None)
    if isinstance(value, list | tuple):
        value = value[0] if value else None
    if value is None:
        return None
    text = str(value).strip()
    if not text:
        return None
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


#: What to fix, by HTTP status, when a receiver answers with a client error.
_HTTP_FIX = {
    400: "the endpoint rejected the payload: check that the URL is the right kind of endpoint for this receiver",
    401: "the endpoint wants credentials: check the receiver's bearer token (or the token in its URL)",
    403: "the credentials are refused: check the receiver's bearer token (or the token in its URL) and its rights",
    404: "nothing answers at this URL: check the receiver's URL",
    405: "the URL does not take POST: check the receiver's URL",
    410: "the endpoint is gone (deleted webhook or archived channel): create a new one and update the URL",
    413: "the payload is too large for the endpoint: lower max_alerts or raise the endpoint's limit",
}


def classify_status(status: int) -> tuple[bool, str | None]:
    """(retryable, what to fix) for an HTTP error status.

    >>> classify_status(503), classify_status(408), classify_status(429)
    ((True, None), (True, None), (True, None))
    >>> classify_status(401)[0]
    False
    """
    if status in (408, 429) or status >= 500:
        return True, None
    return False, _HTTP_FIX.get(status, f"the endpoint refuses the request (HTTP {status}): check the receiver's URL and credentials")


#: Seconds to wait after an HTTP 429 that gives no ``Retry-After``.
RATE_LIMIT_WAIT = 1.0


def refusal(status: int, text: str, retry_after: float | None) -> tuple[str, bool, float | None, str | None]:
    """(what, retryable, retry after, what to fix) for an HTTP answer of ``status`` >= 300 with body ``text``.

    >>> refusal(429, "", None)
    ('HTTP 429', True, 1.0, None)
    >>> refusal(404, "no_service", 30.0)[:3]
    ('HTTP 404: no_service', False, None)
    """
    what = f"HTTP {status}" + (f": {text}" if text else "")
    retryable, fix = classify_status(status)
    if not retryable:
        return what, False, None, fix
    if status == 429 and retry_after is None:
        retry_after = RATE_LIMIT_WAIT
    return what, True, retry_after, fix


def transport_failure(exc: BaseException, timeout: float) -> str | None:
    """What a failed HTTP call says, when ``exc`` is a timeout or a connection failure (both retryable); else None."""
    if isinstance(exc, TimeoutError):
        return f"timed out after {timeout}s"
    if isinstance(exc, (aiohttp.ClientError, OSError)):
        return f"connection failed ({type(exc).__name__}: {exc})"
    return None


def receiver_error(label: str, what: str, secrets: list[Secret | None], *, retryable: bool,
                   retry_after: float | None = None, scope: Literal["receiver", "message"] = "receiver",
                   fix: str | None = None) -> NotifyError:
    """A :class:`NotifyError` for receiver ``label`` (e.g. ``webhook receiver 'ops'``), its secrets redacted, logged."""
    message = redact(f"{label}: {what}", secrets)
    log.info("%s (retryable=%s)", message, retryable)
    return NotifyError(message, retryable=retryable, retry_after=retry_after, scope=scope, fix=fix)


class HTTPPoster:
    """POSTs JSON to one URL with one keep-alive session; ``aclose()`` releases it."""

    def __init__(self, url: Secret | str, *, timeout: float = 10.0, bearer_token: Secret | None = None,
                 name: str = "webhook", kind: str = "webhook") -> None:
        self.url = url if isinstance(url, Secret) else Secret(url)
        self.timeout = timeout
        self.bearer_token = bearer_token
        self.name = name
        self.kind = kind
        self._session: aiohttp.ClientSession | None = None

    async def post(self, payload: Any, *, url: str | None = None) -> tuple[int, bytes]:
        """POST ``payload`` as JSON (to ``url`` if given, else the receiver's); returns status and body."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        headers = {"Content-Type": "application/json", "User-Agent": "tocsin"}
        if self.bearer_token:
            headers["Authorization"] = f"Bearer {self.bearer_token.get()}"
        try:
            async with self._session.post(url or self.url.get(), data=orjson.dumps(payload), headers=headers) as resp:
                body = await resp.read()
                status = resp.status
                retry_after = retry_after_seconds(resp.headers.get("Retry-After"))
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise receiver_error(self._label, transport_failure(exc, self.timeout) or repr(exc), self._secrets,
                                 retryable=True) from None
        if status < 300:
            return status, body
        what, retryable, wait, fix = refusal(status, body[:200].decode("utf-8", "replace").strip(), retry_after)
        raise receiver_error(self._label, what, self._secrets, retryable=retryable, retry_after=wait, fix=fix)

    @property
    def _label(self) -> str:
        return f"{self.kind} receiver {self.name!r}"

    @property
    def _secrets(self) -> list[Secret | None]:
        return [self.url, self.bearer_token]

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
