"""ConsoleReceiver: what ``tocsin demo`` prints."""

from __future__ import annotations

import io

import pytest

from alerts.model import Evidence
from alerts.notify.base import Receiver
from alerts.notify.console import ConsoleReceiver


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


async def test_firing_block_has_everything(make_alert):
    out = io.StringIO()
    receiver = ConsoleReceiver(out, color=False)
    assert isinstance(receiver, Receiver)
    alert = make_alert(labels={"service": "ent-grand-est", "host": "web-3", "disk": None})
    memory = await receiver.notify(alert, None)

    text = out.getvalue()
    lines = text.splitlines()
    assert lines[0] == "[FIRING] CRITICAL  Traffic 8.2x usual on ent-grand-est"  # the cause once, below
    assert "  cause     suspected attack (86% confidence)" in lines
    assert "  labels    service=ent-grand-est host=web-3" in lines
    assert "  started   2021-04-06T08:04:00Z" in lines
    assert "  evidence  812 req/s against 99 usual for a Tuesday 08:00" in lines
    assert "            91% of requests from 3 hosting ASNs" in lines
    assert "None" not in text and "\033" not in text
    assert text.endswith("\n\n")  # blocks are separated by a blank line
    assert memory == {"fired": True}


async def test_update_and_resolved(make_alert):
    out = io.StringIO()
    receiver = ConsoleReceiver(out, color=False)
    alert = make_alert(severity="warning", cause="capacity_saturation", confidence=0.5)
    memory = await receiver.notify(alert, None)
    memory = await receiver.notify(alert, memory)
    await receiver.notify(alert.resolved(alert.starts_at + 5400), memory)

    blocks = out.getvalue().split("\n\n")
    assert blocks[0].startswith("[FIRING] WARNING")
    assert blocks[1].startswith("[FIRING, update] WARNING")
    assert "capacity saturation (50% confidence)" in blocks[1]
    assert blocks[2].startswith("[RESOLVED] WARNING")
    assert "resolved  2021-04-06T09:34:00Z after 1h 30m" in blocks[2]


async def test_alert_without_evidence_or_labels(make_alert):
    out = io.StringIO()
    alert = make_alert(
        labels={"service": None, "host": None, "disk": None}, evidence=(), cause="unknown"
    )
    await ConsoleReceiver(out, color=False).notify(alert, None)
    text = out.getvalue()
    assert "unknown cause" in text and "labels    -" in text and "evidence" not in text


async def test_multiline_evidence_stays_aligned(make_alert):
    out = io.StringIO()
    alert = make_alert(evidence=(Evidence("x", 1, 2, "first\nsecond"),))
    await ConsoleReceiver(out, color=False).notify(alert, None)
    assert "  evidence  first\n            second\n" in out.getvalue()


@pytest.mark.parametrize(
    ("stream", "color", "no_color", "expected"),
    [
        (io.StringIO, "auto", False, False),
        (Tty, "auto", False, True),
        (Tty, "auto", True, False),
        (io.StringIO, True, False, True),
        (Tty, False, False, False),
    ],
)
async def test_color(make_alert, monkeypatch, stream, color, no_color, expected):
    if no_color:
        monkeypatch.setenv("NO_COLOR", "1")
    else:
        monkeypatch.delenv("NO_COLOR", raising=False)
    out = stream()
    await ConsoleReceiver(out, color=color).notify(make_alert(), None)
    assert ("\033[" in out.getvalue()) is expected
    if expected:
        assert "\033[1;31m[FIRING]\033[0m" in out.getvalue()


async def test_default_stream_is_stdout_at_call_time(make_alert, capsys):
    receiver = ConsoleReceiver()
    await receiver.notify(make_alert(), None)
    await receiver.aclose()
    assert "[FIRING] CRITICAL" in capsys.readouterr().out
