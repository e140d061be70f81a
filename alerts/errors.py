"""Errors raised by the alerts package."""

from detectors.errors import ConfigError, TocsinError

__all__ = ["AlertsError", "ConfigError", "NotifyError"]


class AlertsError(TocsinError):
    """Base of the alerts package's errors."""


class NotifyError(AlertsError):
    """A receiver failed; ``retryable`` says whether trying again may help."""

    def __init__(self, message: str, *, retryable: bool = True, retry_after: float | None = None):
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after
