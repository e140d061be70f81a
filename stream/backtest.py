"""``tocsin backtest``: replay recorded events through the worker's own engine.

Requests and disk readings are merged by event time and fed to the same
:class:`~stream.engine.Engine` the worker runs, as fast as the CPU allows;
the result is deterministic. Malformed lines do not stop the replay: they go
to ``DIR/dead-letter.jsonl`` with the file, the line and the reason, like
the worker's dead-letter topic.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from alerts.model import Alert
from detectors.errors import InvalidEvent
from detectors.events import decode_disk, decode_requests

from .engine import Engine, Output
from .files import InputFileError, iter_blocks, iter_lines

__all__ = ["BacktestResult", "run_backtest"]


@dataclass(slots=True)
class BacktestResult:
    events: int = 0
    invalid: int = 0
    anomalies: Counter[str] = field(default_factory=Counter)
    alerts: Counter[str] = field(default_factory=Counter)
    causes: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    first_error: str = ""

    def summary(self) -> str:
        rate = self.events / self.seconds if self.seconds else 0.0
        lines = [f"{self.events} events replayed in {self.seconds:.1f} s ({rate:,.0f}/s), {self.invalid} malformed (dead-letter.jsonl)"]
        for det in ("latency", "traffic", "disk"):
            lines.append(f"  {det:8s} anomalies {self.anomalies.get(det, 0):6d}")
        lines.append(f"  alerts: {self.alerts.get('firing', 0)} firing, {self.alerts.get('resolved', 0)} resolved")
        for cause, n in sorted(self.causes.items()):
            lines.append(f"    {cause:20s} {n}")
        return "\n".join(lines)


def _decoded(path: str, decode: Callable, kind: int, bad: Callable[[str, int, bytes, str], None]) -> Iterator[tuple[float, int, int, Any]]:
    for n, line in iter_lines(path):
        try:
            ev = decode(line)
        except InvalidEvent as exc:
            bad(path, n, line, str(exc))
            continue
        yield ev.ts, kind, n, ev


def run_backtest(
    requests: str | None,
    disks: str | None,
    out_dir: str | Path,
    engine: Engine | None = None,
    on_alert: Callable[[Alert], None] | None = None,
) -> BacktestResult:
    """Replay the files into ``out_dir``; raise InputFileError for unreadable files."""
    engine = engine or Engine()
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputFileError(f"{out}: cannot create the output folder: {exc.strerror}") from None
    res = BacktestResult()
    t0 = time.perf_counter()
    with (
        open(out / "anomalies.jsonl", "wb") as fa,
        open(out / "alerts.jsonl", "wb") as fl,
        open(out / "dead-letter.jsonl", "wb") as fd,
    ):

        def bad(path: str, n: int, line: bytes, reason: str) -> None:
            res.invalid += 1
            if not res.first_error:
                res.first_error = f"{path}:{n}: {reason}"
            fd.write(orjson.dumps({"file": path, "line": n, "error": reason, "payload": line.decode("utf-8", "replace")}) + b"\n")

        def emit(o: Output) -> None:
            for a in o.anomalies:
                res.anomalies[a.detector] += 1
                fa.write(orjson.dumps(a.to_record()) + b"\n")
            for al in o.alerts:
                res.alerts[al.status] += 1
                if al.status == "firing":
                    res.causes[al.cause] += 1
                fl.write(orjson.dumps(al.to_record()) + b"\n")
                if on_alert is not None:
                    on_alert(al)

        # A merge of the two files by (ts, requests before disks, line), as
        # heapq.merge would do it (each file is read on only when its head
        # was taken). Requests go to the engine a block of lines at a time
        # (decode_requests, process_requests: the per-event work is batched),
        # a block split where the next disk reading falls: before the first
        # request later than it.
        process_requests = engine.process_requests
        process_disk = engine.process_disk
        dstream = _decoded(disks, decode_disk, 1, bad) if disks else None
        dhead = None  # the next disk reading, once dstream is started
        started = False
        events = 0
        if requests:
            for n0, lines in iter_blocks(requests):
                evs, errors = decode_requests(lines)
                if errors:
                    # Judge the stripped, non-blank lines, as the line reader gives them.
                    nums = [n for n, line in enumerate(lines, n0) if line.strip()]
                    kept = [lines[n - n0].strip() for n in nums]
                    evs, errors = decode_requests(kept)
                    for j, reason in errors:
                        bad(requests, nums[j], kept[j], reason)
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
                            o = process_requests(evs[i:k])
                            if o.anomalies or o.alerts:
                                emit(o)
                            i = k
                        t = evs.ts[k]
                        while dhead is not None and dhead[0] < t:
                            events += 1
                            o = process_disk(dhead[3])
                            if o.anomalies or o.alerts:
                                emit(o)
                            dhead = next(dstream, None)
                        p = k + 1
                if i < m:
                    events += m - i
                    o = process_requests(evs[i:] if i else evs)
                    if o.anomalies or o.alerts:  # all that emit writes
                        emit(o)
        if dstream is not None:
            if not started:
                dhead = next(dstream, None)
            while dhead is not None:
                events += 1
                o = process_disk(dhead[3])
                if o:
                    emit(o)
                dhead = next(dstream, None)
        res.events = events
        emit(engine.flush())
    res.seconds = time.perf_counter() - t0
    return res
