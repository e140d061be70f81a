"""Errors raised by the alerts package."""

from typing import Literal

from detectors.errors import ConfigError, TocsinError

__all__ = ["AlertsError", "ConfigError", "NotifyError"]


class AlertsError(TocsinError):
    """Base of the alerts package's errors."""


class NotifyError(AlertsError):
    """A receiver failed.

    ``retryable``: trying the same request again later may succeed (timeouts,
    HTTP 408, 429, 5xx), after at least ``retry_after`` seconds when the
    receiver said so. A failure that is not retryable has a ``scope``:
    ``receiver`` when the receiver itself is unusable until someone fixes it
    (a revoked token, a wrong URL, a missing channel: no other message will
    get through either) or ``message`` when only this message was refused
    (too long, malformed blocks). ``fix`` tells the operator what to change.
    """

    def __init__(
        self,
        message: str,
        *,
        retryable: bool = True,
        retry_after: float | None = None,
        scope: Literal["receiver", "message"] = "receiver",
        fix: str | None = None,
    ):
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after
        self.scope = scope
        self.fix = fix
