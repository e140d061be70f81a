"""Event time that a wrong clock cannot poison.

A window closes when its source's watermark (the latest event time seen)
passes it, so one event dated 2999-01-01, or a host whose clock runs 6 h
ahead, would close every open window at once and make every later event
late. :class:`EventTimeGuard` stands before the windows: an event too far
ahead of its source's reference time, or too far behind it, is rejected with
a reason (the caller dead-letters it) and never reaches the windows, so it
never moves a watermark. A skewed host loses its own events and nothing else.

The reference time of a source (a Kafka partition, a file):

- ahead: the arrival time when the caller knows it (the worker's clock, or
  the Kafka record time); in a replay, where nothing is "now", an estimate
  of the source's current time from its latest ``span`` event times (the
  rejected ones included): their median, moved on by half their time span
  (measured between the 40th and 60th percentiles, so that it holds when
  a source is quiet at night and a median alone would lag minutes). Those
  quantiles move only when most events move: one far-future event, or a
  host that sends less than 40% of a source's events, cannot drag them. A
  replay also never holds an event later than the clock of the machine
  replaying it (``clock``), which bounds the first
  events of a source, before it has any history.
- behind: always that estimate (never the wall clock, so a consumer that
  catches up on hours of backlog rejects nothing): an event older than
  ``max_behind`` (default one hour: the retention of a service's windows,
  60 windows of a minute) has lost its windows long ago.

The estimate follows real jumps of the whole source (a replay across a gap
in the recording): once the events after the jump are the majority of the
latest ``span``, they are the reference; until then (at most ``span / 2``
events) they are rejected as ahead.

>>> from detectors.events import RequestBatch, RequestEvent
>>> t0 = 1617696000.0  # 2021-04-06T08:00:00Z
>>> evs = [RequestEvent(t0 + i, "ent", 200, 10.0) for i in range(21)]
>>> evs[7] = RequestEvent(32503680000.0, "ent", 200, 10.0)  # 3000-01-01
>>> guard = EventTimeGuard(max_ahead=300.0, clock=None)
>>> kept, rejected = guard.split(RequestBatch.of(evs), source=0)
>>> len(kept), [i for i, _ in rejected], guard.rejected["ahead"]
(20, [7], 1)
>>> print(rejected[0][1])
event time 3000-01-01T00:00:00Z is 30885983979 s ahead of its source's reference time 2021-04-06T08:00:21Z (max_ahead 300 s)
"""

from __future__ import annotations

import math
import time
from bisect import bisect_left, insort
from collections import Counter
from collections.abc import Callable

from .events import RequestBatch
from .timeutil import format_ts

__all__ = ["EventTimeGuard"]


def _fmt(ts: float) -> str:
    try:
        return format_ts(ts)
    except (ValueError, OverflowError, OSError):
        return repr(ts)


def _quantile(xs: list[float], q: float) -> float:
    """The ``q`` quantile of the sorted, non-empty ``xs``: numpy's default ("linear") method, the same float.

    The virtual index ``(n - 1) * q``, then numpy's two-sided interpolation
    between its neighbours (``numpy.lib._function_base_impl._lerp``), so that
    the reference times, and the reasons that print them, are numpy's to the
    last bit (the tests compare them with ``numpy.percentile``).
    """
    n = len(xs)
    v = (n - 1) * q
    if v >= n - 1:
        return xs[-1]
    i = math.floor(v)
    g = v - i
    a = xs[i]
    b = xs[i + 1]
    d = b - a
    return b - d * (1 - g) if g >= 0.5 else a + d * g


def _estimate(xs: list[float]) -> float:
    """The reference time of a source from its latest event times, sorted (see the module).

    The median lags the latest times by half their span; at a steady rate
    that is 2.5 times the distance between the 40th and the 60th
    percentiles. Those three quantiles are the majority's as long as fewer
    than 40% of the times are off (on either side).
    """
    q40 = _quantile(xs, 40.0 / 100)
    return _quantile(xs, 50.0 / 100) + 2.5 * (_quantile(xs, 60.0 / 100) - q40)


class _Recent:
    """A source's latest event times (at most ``span``), in arrival order and sorted."""

    __slots__ = ("order", "sorted")

    def __init__(self, order: list[float]) -> None:
        self.order = order
        self.sorted = sorted(order)

    def push(self, ts: float, span: int) -> None:
        """One more time (the oldest goes beyond ``span``): a bisect into the sorted copy, no sort."""
        self.order.append(ts)
        insort(self.sorted, ts)
        if len(self.order) > span:
            old = self.order.pop(0)
            del self.sorted[bisect_left(self.sorted, old)]


class EventTimeGuard:
    """Rejects events whose time is implausible for their source.

    Parameters
    ----------
    max_ahead
        Seconds an event may be ahead of its source's reference time (clock
        skew and buffering of honest producers stay far below it).
    max_behind
        Seconds an event may be behind its source's reference time.
    span
        Number of latest events of a source its reference time is estimated from.
    clock
        The replaying machine's clock (epoch seconds): no event may be later
        than it plus ``max_ahead``. None: no such bound.
    """

    def __init__(
        self,
        max_ahead: float = 300.0,
        max_behind: float = 3600.0,
        span: int = 128,
        clock: Callable[[], float] | None = time.time,
    ) -> None:
        if not max_ahead > 0 or not max_behind > 0:
            raise ValueError("max_ahead and max_behind must be > 0")
        if span < 1:
            raise ValueError("span must be >= 1")
        self.max_ahead = max_ahead
        self.max_behind = max_behind
        self.span = span
        self.clock = clock
        #: Rejected events by reason: "ahead", "behind".
        self.rejected: Counter[str] = Counter()
        self._recent: dict[int, _Recent] = {}  # source -> its latest event times

    def reference(self, source: int = 0) -> float | None:
        """The source's reference time estimated from its latest events (None before any)."""
        r = self._recent.get(source)
        if r is None or not r.sorted:
            return None
        return _estimate(r.sorted)

    def forget(self, sources: set[int]) -> None:
        """Drop these sources (their partitions moved to another worker)."""
        for s in sources:
            self._recent.pop(s, None)

    def split(
        self, batch: RequestBatch, source: int = 0, arrival: float | None = None
    ) -> tuple[RequestBatch, list[tuple[int, str]]]:
        """The batch's plausible events (a RequestBatch, in order) and [(index in batch, reason)] for the others.

        ``arrival``: when the batch arrived (wall clock or Kafka record time),
        None in a replay.
        """
        ts = batch.ts
        n = len(ts)
        if not n:
            return batch, []
        span = self.span
        r = self._recent.get(source)
        prev = r.order if r is not None else []
        seq = prev + ts
        p = len(prev)
        now = self.clock() if self.clock is not None else None
        reasons: list[tuple[int, str]] = []
        # The reference of each chunk of `span` events: estimated from the
        # `span` events up to the chunk's end (the history before the batch
        # included). A chunk whose earliest and latest times are within its
        # bounds is plausible whole.
        for a in range(0, n, span):
            b = min(n, a + span)
            ref = _estimate(sorted(seq[max(0, p + b - span) : p + b]))
            base = ref if arrival is None else float(arrival)
            if now is not None and now < base:
                base = now
            chunk = ts[a:b]
            if max(chunk) > base + self.max_ahead or min(chunk) < ref - self.max_behind:
                for i in range(a, b):
                    why = self._verdict(ts[i], ref, base, now, arrival)
                    if why is not None:
                        reasons.append((i, why))
        self._recent[source] = _Recent(seq[-span:])
        if not reasons:
            return batch, []
        gone = {i for i, _ in reasons}
        keep = [i for i in range(n) if i not in gone]
        rows = batch.rows
        kept = RequestBatch([ts[i] for i in keep], [rows[i] for i in keep])
        return kept, reasons

    def check(self, ts: float, source: int = 0, arrival: float | None = None) -> str | None:
        """One event (a disk reading): None if plausible, else why not."""
        r = self._recent.get(source)
        if r is None:
            r = self._recent[source] = _Recent([])
        r.push(ts, self.span)
        ref = _estimate(r.sorted)
        base = ref if arrival is None else float(arrival)
        now = self.clock() if self.clock is not None else None
        if now is not None and now < base:
            base = now
        return self._verdict(ts, ref, base, now, arrival)

    def _verdict(self, ts: float, ref: float, base: float, now: float | None, arrival: float | None) -> str | None:
        """None if ``ts`` is within ``base + max_ahead`` and ``ref - max_behind``, else why not (counted)."""
        lim = base
        if ts > lim + self.max_ahead:
            self.rejected["ahead"] += 1
            if now is not None and lim == now and (arrival is None and now < ref or arrival is not None and now < arrival):
                what = "the clock of this machine"
            else:
                what = "its source's arrival time" if arrival is not None else "its source's reference time"
            return (f"event time {_fmt(ts)} is {ts - lim:.0f} s ahead of {what} "
                    f"{_fmt(lim)} (max_ahead {self.max_ahead:.0f} s)")
        if ts < ref - self.max_behind:
            self.rejected["behind"] += 1
            return (f"event time {_fmt(ts)} is {ref - ts:.0f} s behind its source's reference "
                    f"time {_fmt(ref)} (max_behind {self.max_behind:.0f} s)")
        return None
