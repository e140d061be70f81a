"""ConsoleReceiver: one readable block of text per alert state change (``tocsin demo``)."""

from __future__ import annotations

import os
import sys
from typing import Literal, TextIO

from alerts.model import Alert
from alerts.notify.base import Memory, Receiver, cause_text, format_duration, labels_text
from alerts.notify.message import evidence_line, headline
from detectors.timeutil import format_ts

__all__ = ["ConsoleReceiver"]

_KEY_WIDTH = 10  # "evidence" and "resolved" plus two spaces
_RESET = "\033[0m"
_BOLD = "\033[1m"
_DIM = "\033[2m"
_COLORS = {"critical": "\033[1;31m", "warning": "\033[1;33m", "resolved": "\033[1;32m"}


class ConsoleReceiver(Receiver):
    """Prints each alert state change as a compact multi-line block.

    Parameters
    ----------
    stream
        Where to write; None means ``sys.stdout`` at the time of writing.
    color
        True, False, or ``"auto"``: colors when the stream is a terminal and
        ``NO_COLOR`` is not set.
    name
        The receiver's name in the configuration.

    Examples
    --------
    >>> import io
    >>> from alerts.model import Alert, Evidence
    >>> out = io.StringIO()
    >>> alert = Alert(labels={"service": "ent-grand-est", "host": None, "disk": None},
    ...               status="firing", severity="critical", title="Traffic 8.2x usual",
    ...               cause="suspected_attack", confidence=0.86, starts_at=1617696240.0,
    ...               evidence=(Evidence("request_rate", 812, 99, "812 req/s against 99 usual"),))
    >>> import asyncio
    >>> _ = asyncio.run(ConsoleReceiver(out, color=False).notify(alert, None))
    >>> print(out.getvalue(), end="")
    [FIRING] CRITICAL  Traffic 8.2x usual
      cause     suspected attack (86% confidence)
      labels    service=ent-grand-est
      started   2021-04-06T08:04:00Z
      evidence  812 req/s against 99 usual
    <BLANKLINE>
    """

    def __init__(
        self,
        stream: TextIO | None = None,
        color: bool | Literal["auto"] = "auto",
        *,
        name: str = "console",
    ):
        self.stream = stream
        self.color = color
        self.name = name

    def _use_color(self, out: TextIO) -> bool:
        if self.color == "auto":
            if os.environ.get("NO_COLOR"):
                return False
            isatty = getattr(out, "isatty", None)
            return bool(isatty and isatty())
        return bool(self.color)

    def format(self, alert: Alert, *, update: bool = False, color: bool = False) -> str:
        """The text block for one state change of ``alert``."""

        def paint(text: str, code: str) -> str:
            return f"{code}{text}{_RESET}" if color else text

        if alert.status == "resolved":
            status = paint("[RESOLVED]", _COLORS["resolved"])
        else:
            status = paint(
                "[FIRING]" if not update else "[FIRING, update]", _COLORS.get(alert.severity, _BOLD)
            )
        head = f"{status} {alert.severity.upper()}  {paint(headline(alert), _BOLD)}"
        rows: list[tuple[str, str]] = [
            ("cause", f"{cause_text(alert.cause)} ({round(alert.confidence * 100)}% confidence)"),
            ("labels", labels_text(alert.labels) or "-"),
            ("started", format_ts(alert.starts_at)),
        ]
        if alert.status == "resolved" and alert.ends_at is not None:
            rows.append(
                (
                    "resolved",
                    f"{format_ts(alert.ends_at)} after {format_duration(alert.ends_at - alert.starts_at)}",
                )
            )
        for i, ev in enumerate(alert.evidence):
            rows.append(("evidence" if i == 0 else "", evidence_line(ev)))
        width = _KEY_WIDTH
        lines = [head]
        for key, value in rows:
            # keep multi-line values aligned under their first line
            value = value.replace("\n", "\n  " + " " * width)
            lines.append("  " + (paint(key.ljust(width), _DIM) if key else " " * width) + value)
        return "\n".join(lines) + "\n"

    async def notify(self, alert: Alert, memory: Memory | None) -> Memory | None:
        out = self.stream if self.stream is not None else sys.stdout
        update = alert.status == "firing" and bool(memory and memory.get("fired"))
        out.write(self.format(alert, update=update, color=self._use_color(out)) + "\n")
        out.flush()
        return {"fired": alert.status == "firing"}

    def __repr__(self) -> str:
        return f"ConsoleReceiver(name={self.name!r}, color={self.color!r})"
