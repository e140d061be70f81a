"""``tocsin backtest``: replay recorded events through the worker's own runner and router.

Requests and disk readings are merged by event time and fed to the same
:class:`~stream.runner.Runner` the worker runs (decode, dead letters,
event-time guard, engine), as fast as the CPU allows; the result is
deterministic. The runner's outbox writes files instead of topics:

- ``anomalies.jsonl``, ``alerts.jsonl``: the records the worker would have
  written to its topics;
- ``dead-letter.jsonl``: the malformed or mis-timed lines, as
  ``tocsin.dead-letter.v1`` records whose ``source`` is ``{"file", "line"}``;
- ``notifications.jsonl``: what each receiver of the configuration's route
  tree would have been sent (``tocsin.notification.v1``), from the worker's
  own router (:class:`~alerts.notify.notifier.AlertNotifier`: grouping,
  group_wait/group_interval/repeat_interval, inhibition, time muting)
  driven by event time.

The outputs are written to temporary files and renamed into place once the
replay is complete: an input that turns out unreadable halfway leaves no
partial results behind.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import orjson

from alerts.config import AlertingConfig
from alerts.group import GroupNotification
from alerts.model import Alert, alert_from_record
from alerts.notify.base import Memory, Receiver
from alerts.notify.notifier import AlertNotifier
from detectors.errors import InvalidEvent
from detectors.events import DiskHealthEvent, decode_disk, decode_requests
from detectors.timeguard import EventTimeGuard
from detectors.timeutil import format_ts

from .engine import Engine
from .files import InputFileError, iter_blocks, iter_lines
from .runner import Runner, time_guards

__all__ = ["NOTIFICATION_SCHEMA", "BacktestResult", "run_backtest"]

NOTIFICATION_SCHEMA = "tocsin.notification.v1"

#: After the last event, the router is run on for this long (event time), so
#: that groups still waiting (group_wait, group_interval) are delivered.
_TAIL = 15 * 60.0

_OUTPUTS = ("anomalies.jsonl", "alerts.jsonl", "dead-letter.jsonl", "notifications.jsonl")


@dataclass(slots=True)
class BacktestResult:
    events: int = 0
    invalid: int = 0
    anomalies: Counter[str] = field(default_factory=Counter)
    alerts: Counter[str] = field(default_factory=Counter)
    causes: Counter[str] = field(default_factory=Counter)
    notifications: Counter[str] = field(default_factory=Counter)  # "receiver kind" -> n
    raised: set[tuple[str, str, str]] = field(default_factory=set)  # (fingerprint, starts_at, cause)
    seconds: float = 0.0
    first_error: str = ""

    def summary(self) -> str:
        rate = self.events / self.seconds if self.seconds else 0.0
        lines = [f"{self.events} events replayed in {self.seconds:.1f} s ({rate:,.0f}/s), {self.invalid} malformed (dead-letter.jsonl)"]
        for det in ("latency", "traffic", "disk"):
            lines.append(f"  {det:8s} anomalies {self.anomalies.get(det, 0):6d}")
        lines.append(f"  alerts: {len({r[:2] for r in self.raised})} raised, {self.alerts.get('resolved', 0)} resolved "
                     f"({self.alerts.get('firing', 0)} firing records: updates and drive refreshes included)")
        for cause, n in sorted(self.causes.items()):
            lines.append(f"    {cause:20s} {n}")
        receivers = sorted({k.split(" ")[0] for k in self.notifications})
        if receivers:
            lines.append("  notifications (notifications.jsonl):")
        for r in receivers:
            kinds = ", ".join(f"{self.notifications.get(f'{r} {k}', 0)} {k}" for k in ("new", "update", "reminder", "resolve"))
            lines.append(f"    {r:20s} {kinds}")
        return "\n".join(lines)


class _FileOutbox:
    """The runner's outbox in a backtest: records to the output files, counted."""

    def __init__(self, res: BacktestResult, fa: IO[bytes], fl: IO[bytes], fd: IO[bytes],
                 on_alert: Callable[[Alert], None]) -> None:
        self.res, self.fa, self.fl, self.fd, self.on_alert = res, fa, fl, fd, on_alert

    def anomaly(self, key: bytes, value: bytes) -> None:
        self.fa.write(value + b"\n")  # (counted by the runner: anomalies.<detector>)

    def alert(self, key: bytes, value: bytes) -> None:
        rec = orjson.loads(value)
        self.res.alerts[rec["status"]] += 1
        raised = (rec["fingerprint"], rec["starts_at"], rec["cause"])
        if rec["status"] == "firing" and raised not in self.res.raised:
            # Per alert and cause it was given: a drive's refreshes are not more alerts.
            self.res.causes[rec["cause"]] += 1
            self.res.raised.add(raised)
        self.fl.write(value + b"\n")
        self.on_alert(alert_from_record(rec))

    def dead_letter(self, value: bytes) -> None:
        self.res.invalid += 1
        if not self.res.first_error:
            rec = orjson.loads(value)
            self.res.first_error = f"{rec['source']['file']}:{rec['source']['line']}: {rec['error']}"
        self.fd.write(value + b"\n")

    def signal(self, key: bytes, value: bytes) -> None:
        pass  # one engine sees every drive: no other worker to tell


class _RecordingReceiver(Receiver):
    """Stands for one configured receiver: records each group notification it would have been sent.

    Every receiver is replayed as a per-group receiver (one notification per
    group flush, as webhooks and Alertmanager get them); the kind says what
    the notification was to its reader: ``new`` (the group's first, or its
    first since it all resolved), ``update`` (an alert joined, resolved or
    changed cause or severity), ``reminder`` (repeat_interval, unchanged),
    ``resolve`` (every alert of the group resolved).
    """

    groups = True

    def __init__(self, name: str, send_resolved: bool, write: Callable[[dict[str, Any]], None]) -> None:
        self.name = name
        self.send_resolved = send_resolved
        self.write = write

    async def notify(self, alert: Alert, memory: Memory | None) -> Memory | None:
        raise NotImplementedError("replayed receivers are told per group")

    async def notify_group(self, notification: GroupNotification, memory: Memory | None) -> Memory | None:
        state = sorted(f"{a.fingerprint}|{a.status}|{a.cause}|{a.severity}" for a in notification.alerts)
        firing = [a for a in notification.alerts if a.status == "firing"]
        if not firing:
            kind = "resolve"
        elif memory is None or memory.get("resolved"):
            kind = "new"
        elif memory.get("state") == state:
            kind = "reminder"
        else:
            kind = "update"
        self.write({
            "schema": NOTIFICATION_SCHEMA, "ts": format_ts(notification.now), "receiver": self.name,
            "group_key": notification.key, "kind": kind,
            "fingerprints": sorted({a.fingerprint for a in notification.alerts}),
            "alerts": [{"fingerprint": a.fingerprint, "status": a.status, "cause": a.cause,
                        "severity": a.severity, "title": a.title} for a in notification.alerts],
        })
        return {"state": state, "resolved": not firing}


class _RouterReplay:
    """The worker's router on event time, its receivers recorded (``notifications.jsonl``)."""

    def __init__(self, alerting: AlertingConfig, fn: IO[bytes], res: BacktestResult) -> None:
        def write(rec: dict[str, Any]) -> None:
            res.notifications[f"{rec['receiver']} {rec['kind']}"] += 1
            fn.write(orjson.dumps(rec) + b"\n")

        receivers: dict[str, Receiver] = {
            rc.name: _RecordingReceiver(rc.name, rc.send_resolved, write) for rc in alerting.receivers}
        self.notifier = AlertNotifier(alerting, receivers, {})
        self.loop = asyncio.new_event_loop()
        self.now = -np.inf

    def receive(self, alert: Alert, now: float) -> None:
        self.advance(now)
        self.loop.run_until_complete(self.notifier.receive(alert, self.now))

    def advance(self, now: float) -> None:
        """Deliver every group due up to event time ``now``, at the times they were due."""
        self.now = max(self.now, now)
        notifier = self.notifier
        while (due := notifier.next_flush()) is not None and due <= self.now:
            self.loop.run_until_complete(notifier.flush(due))

    def close(self) -> None:
        self.loop.close()


def _decoded(path: str, kind: int, bad: Callable[[str, int, bytes, str], None],
             check: Callable[[DiskHealthEvent], str | None]) -> Iterator[tuple[float, int, int, Any]]:
    for n, line in iter_lines(path):
        try:
            ev = decode_disk(line)
        except InvalidEvent as exc:
            bad(path, n, line, str(exc))
            continue
        # Judged before the merge: a reading dated 2999 would otherwise hold back every reading after it.
        why = check(ev)
        if why:
            bad(path, n, line, why)
            continue
        yield ev.ts, kind, n, ev


def run_backtest(
    requests: str | None,
    disks: str | None,
    out_dir: str | Path,
    engine: Engine | None = None,
    on_alert: Callable[[Alert], None] | None = None,
    alerting: AlertingConfig | None = None,
    guards: tuple[EventTimeGuard, EventTimeGuard] | None = None,
) -> BacktestResult:
    """Replay the files into ``out_dir``; raise InputFileError for unreadable files.

    ``alerting``: the route tree to replay (default: the engine's); ``guards``:
    the event-time guards of requests and disk readings (default: from the
    engine's configuration).
    """
    engine = engine or Engine()
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputFileError(f"{out}: cannot create the output folder: {exc.strerror}") from None
    res = BacktestResult()
    t0 = time.perf_counter()
    tmp = {name: out / f".{name}.partial" for name in _OUTPUTS}
    try:
        with (
            open(tmp["anomalies.jsonl"], "wb") as fa,
            open(tmp["alerts.jsonl"], "wb") as fl,
            open(tmp["dead-letter.jsonl"], "wb") as fd,
            open(tmp["notifications.jsonl"], "wb") as fn,
        ):
            router = _RouterReplay(alerting or engine.alerting, fn, res)
            try:
                def alert_out(al: Alert) -> None:
                    router.receive(al, engine.aggregator.watermark)
                    if on_alert is not None:
                        on_alert(al)

                guard, disk_guard = guards if guards is not None else time_guards(engine.config)
                runner = Runner(engine, _FileOutbox(res, fa, fl, fd, alert_out), guard=guard, disk_guard=disk_guard)
                res.events = _replay(runner, requests, disks, router)
                runner.flush()
                res.anomalies.update({k.partition(".")[2]: n for k, n in runner.counts.items()
                                      if k.startswith("anomalies.")})
                router.advance(router.now + _TAIL)
            finally:
                router.close()
        for name in _OUTPUTS:
            os.replace(tmp[name], out / name)
    finally:
        for p in tmp.values():
            p.unlink(missing_ok=True)
    res.seconds = time.perf_counter() - t0
    return res


def _replay(runner: Runner, requests: str | None, disks: str | None, router: _RouterReplay) -> int:
    """Feed the files to the runner merged by event time; returns the events processed."""

    def bad(path: str, n: int, line: bytes, reason: str) -> None:
        runner.dead_letter({"file": path, "line": n}, reason, line, "file")

    # A merge of the two files by (ts, requests before disks, line), as
    # heapq.merge would do it (each file is read on only when its head was
    # taken). Requests go to the runner a block of lines at a time (the
    # per-event work is batched), a block split where the next disk
    # reading falls: before the first request later than it.
    process_requests = runner.process_request_batch
    process_disk = runner.process_disk_event
    dstream = _decoded(disks, 1, bad, runner.check_disk_time) if disks else None
    dhead = None  # the next disk reading, once dstream is started
    started = False
    events = 0
    if requests:
        for n0, lines in iter_blocks(requests):
            evs, errors = decode_requests(lines)
            if not errors:  # (the usual block: msgspec reads JSON with surrounding whitespace)
                evs = runner.admit_decoded(evs, errors, lines, 0, lambda i, n0=n0: {"file": requests, "line": n0 + i})
            else:
                # Judge the stripped, non-blank lines, as the line reader gives them.
                nums = [n for n, line in enumerate(lines, n0) if line.strip()]
                kept = [lines[n - n0].strip() for n in nums]
                evs = runner.admit_requests(kept, 0, lambda i, nums=nums: {"file": requests, "line": nums[i]})
            m = len(evs)
            if not m:
                continue
            if not started:
                started = True
                if dstream is not None:
                    dhead = next(dstream, None)
            i = 0  # the first request of the block not given to the engine yet
            if dhead is not None:
                ts = evs.ts_array
                p = 0  # the first request before which the disk readings are still to check
                while dhead is not None:
                    later = np.flatnonzero(ts[p:] > dhead[0])
                    if not len(later):
                        break
                    k = p + int(later[0])
                    if k > i:
                        events += k - i
                        process_requests(evs[i:k])
                        i = k
                    t = evs.ts[k]
                    while dhead is not None and dhead[0] < t:
                        events += 1
                        process_disk(dhead[3])
                        dhead = next(dstream, None)
                    p = k + 1
            if i < m:
                events += m - i
                process_requests(evs[i:] if i else evs)
            router.advance(runner.engine.aggregator.watermark)
    if dstream is not None:
        if not started:
            dhead = next(dstream, None)
        while dhead is not None:
            events += 1
            process_disk(dhead[3])
            router.advance(dhead[0])
            dhead = next(dstream, None)
    return events

