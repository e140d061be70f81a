"""Errors raised by the detectors package."""


class TocsinError(Exception):
    """Base of every error tocsin raises on purpose."""


class DetectorError(TocsinError):
    """Base of the detectors package's errors."""


class InvalidEvent(DetectorError):
    """An input event that does not follow the CONTRACT; the message says why."""


class ConfigError(TocsinError):
    """A configuration file that cannot be used; the message names file, line and field."""
