"""One JSON POST with a timeout, failures classified for the retry stage, secrets kept out.

:class:`HTTPPoster` is shared by the webhook, Slack incoming webhook and
Alertmanager receivers. A failure raises :class:`~alerts.errors.NotifyError`:
retryable for timeouts, dropped connections, HTTP 429 (with ``Retry-After``)
and 5xx; not retryable for other 4xx (the request itself is wrong: a retry
sends the same). The URL and token are :class:`~alerts.secret.Secret` and are
redacted from every message.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
import orjson

from alerts.errors import NotifyError
from alerts.secret import Secret, redact

__all__ = ["HTTPPoster", "retry_after_seconds"]

log = logging.getLogger(__name__)


def retry_after_seconds(value: str | None) -> float | None:
    """``Retry-After`` in seconds (a number or an HTTP date), None when absent or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


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

    def _error(self, what: str, *, retryable: bool, retry_after: float | None = None) -> NotifyError:
        message = redact(f"{self.kind} receiver {self.name!r}: {what}", [self.url, self.bearer_token])
        log.info("%s (retryable=%s)", message, retryable)
        return NotifyError(message, retryable=retryable, retry_after=retry_after)

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
        except TimeoutError:
            raise self._error(f"timed out after {self.timeout}s", retryable=True) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise self._error(f"connection failed ({type(exc).__name__}: {exc})", retryable=True) from None
        if status < 300:
            return status, body
        text = body[:200].decode("utf-8", "replace").strip()
        what = f"HTTP {status}" + (f": {text}" if text else "")
        if status == 429:
            raise self._error(what, retryable=True, retry_after=retry_after if retry_after is not None else 1.0)
        if status >= 500:
            raise self._error(what, retryable=True, retry_after=retry_after)
        raise self._error(what, retryable=False)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
