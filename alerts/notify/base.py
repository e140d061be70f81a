"""The receiver interface, and small text helpers shared by the receivers.

A receiver sends one state change of one alert (firing, an update while
firing, resolved) to one place. It keeps no per-alert state: what it needs
to continue the conversation about an alert (a Slack channel and message ts)
it returns from :meth:`Receiver.notify`, and the caller persists it per
fingerprint and hands it back next time, so a restarted worker carries on in
the same thread. A failure raises :class:`alerts.errors.NotifyError`, whose
``retryable`` and ``retry_after`` tell the retry stage what to do; receivers
do not retry beyond a small bounded number of in-call attempts.

Two kinds of receivers, told apart by :attr:`Receiver.groups`:

- per alert (``groups = False``: console, Slack bot): the pipeline calls
  :meth:`Receiver.notify` once per alert state change in a group
  notification, so one incident (one fingerprint) is one Slack thread;
- per group (``groups = True``: webhook, Slack incoming webhook,
  Alertmanager): the pipeline calls :meth:`Receiver.notify_group` once per
  group notification with the group's alerts, as Alertmanager does.

``send_resolved`` (default True, set from the configuration) says whether
the receiver is told when alerts resolve.
"""

from __future__ import annotations

import abc
from types import TracebackType
from typing import TYPE_CHECKING, Any

from alerts.model import Alert

if TYPE_CHECKING:
    from alerts.group import GroupNotification

__all__ = ["Receiver", "Memory", "format_duration", "cause_text", "labels_text"]

Memory = dict[str, Any]

_CAUSE_TEXT = {
    "capacity_saturation": "capacity saturation",
    "suspected_attack": "suspected attack",
    "disk_failure": "disk failure",
    "unknown": "unknown cause",
}


class Receiver(abc.ABC):
    """Sends alert state changes somewhere.

    Subclasses set ``name`` and implement :meth:`notify`; :meth:`aclose`
    releases connections. Receivers are async context managers.
    """

    name: str
    #: True: one message per group notification (:meth:`notify_group`).
    groups: bool = False
    #: Tell the receiver when alerts resolve.
    send_resolved: bool = True
    #: Per-group receivers: re-send an unchanged group this often (None: the route's repeat_interval).
    resend_interval: float | None = None

    async def notify_group(self, notification: GroupNotification, memory: Memory | None) -> Memory | None:
        """Send one group notification (receivers with ``groups = True``).

        ``memory`` is what this receiver returned last time for the same
        group. Raises NotifyError on failure.
        """
        raise NotImplementedError(f"{type(self).__name__} sends alerts one by one (groups = False)")

    @abc.abstractmethod
    async def notify(self, alert: Alert, memory: Memory | None) -> Memory | None:
        """Send one state change of ``alert``.

        ``memory`` is what this receiver returned last time for the same
        fingerprint (None the first time). Returns the memory to persist for
        the next call. Raises NotifyError on failure.
        """

    async def aclose(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release connections; the receiver is not used afterwards."""

    async def __aenter__(self) -> Receiver:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


def format_duration(seconds: float) -> str:
    """A short human duration.

    >>> format_duration(42)
    '42s'
    >>> format_duration(3 * 3600 + 25 * 60 + 7)
    '3h 25m'
    >>> format_duration(2 * 86400 + 3600)
    '2d 1h'
    """
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s}s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m}m {s}s" if s else f"{m}m"
    h, m = divmod(m, 60)
    if h < 24:
        return f"{h}h {m}m" if m else f"{h}h"
    d, h = divmod(h, 24)
    return f"{d}d {h}h" if h else f"{d}d"


def cause_text(cause: str) -> str:
    """``suspected_attack`` -> ``suspected attack``."""
    return _CAUSE_TEXT.get(cause, cause.replace("_", " "))


def labels_text(labels: dict[str, str | None], sep: str = " ") -> str:
    """``service=a host=b``, skipping unset labels, service/host/disk first."""
    order = ["service", "host", "disk"] + sorted(
        k for k in labels if k not in ("service", "host", "disk")
    )
    return sep.join(f"{k}={labels[k]}" for k in order if labels.get(k) is not None)
