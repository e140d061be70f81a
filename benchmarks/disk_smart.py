"""Replay Backblaze SMART data through DiskFailureDetector and print how early it warns.

Usage::

    .venv/bin/python benchmarks/disk_smart.py [--data DIR] [--thresholds 0.3,0.5]

Reads ``DIR/*.csv`` (default ``../shared/datasets/smart`` next to the repository)
and skips with a message, exit status 0, when the data is absent. Each row
becomes a :class:`DiskHealthEvent`; ``failure`` is set on a failed drive's
last row only (labels arrive late, with the last reading). Files whose
healthy and failed drives cover different dates (the TOSHIBA "last 10 days"
extract) are replayed drive by drive in a seeded shuffled order; the others
day by day in date order.

Printed per file: failed drives flagged before their failure row, healthy
drives ever flagged, the warning time (first flag to failure) in days, the
cost of score_one + learn_one per event and the serialised state per drive.
"""

from __future__ import annotations

import argparse
import csv
import random
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from detectors.disk import DiskFailureDetector, DriveState  # noqa: E402
from detectors.events import DiskHealthEvent  # noqa: E402

FILES = {
    "bb2013_failed120_healthy1000.csv": "date",
    "TOSHIBA_MQ01ABF050_last_10_day_all_q_raw.csv": "shuffled",
}
SEED = 20240601


def load(path: Path, order: str) -> tuple[list[DiskHealthEvent], set[str]]:
    """Events in replay order and the serials of the failed drives."""
    by_drive: dict[str, list[tuple[str, dict[str, str]]]] = {}
    with path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            by_drive.setdefault(row["serial_number"], []).append((row["date"], row))
    failed = {s for s, rows in by_drive.items() if any(r["failure"] == "1" for _, r in rows)}
    events: list[tuple[float, str, DiskHealthEvent]] = []
    serials = sorted(by_drive)
    if order == "shuffled":
        random.Random(SEED).shuffle(serials)
    for rank, serial in enumerate(serials):
        rows = sorted(by_drive[serial], key=lambda t: t[0])
        for j, (date, row) in enumerate(rows):
            ts = datetime.fromisoformat(date).replace(tzinfo=UTC).timestamp()
            smart = {
                k[6:-4]: float(v)
                for k, v in row.items()
                if k.startswith("smart_") and k.endswith("_raw") and v != ""
            }
            last = j == len(rows) - 1
            ev = DiskHealthEvent(
                ts=ts,
                host=f"bb-{serial[:4]}",
                disk=serial,
                smart=smart,
                model=row.get("model") or None,
                capacity_bytes=int(row["capacity_bytes"])
                if row.get("capacity_bytes", "").lstrip("-").isdigit()
                else None,
                failure=True if (last and serial in failed) else None,
            )
            key = ts if order == "date" else float(rank)
            events.append((key, serial, ev))
    events.sort(key=lambda t: (t[0], t[1]) if order == "date" else t[0])  # stable within a drive
    return [e for _, _, e in events], failed


def replay(
    events: list[DiskHealthEvent], det: DiskFailureDetector
) -> tuple[list[float], dict[str, DriveState]]:
    states: dict[str, DriveState] = {}
    scores = [0.0] * len(events)
    score_one, learn_one = det.score_one, det.learn_one
    for k, ev in enumerate(events):
        st = states.get(ev.disk)
        scores[k] = score_one(ev, st).score
        if st is None:
            states[ev.disk] = learn_one(ev, None)
        else:
            learn_one(ev, st)
    return scores, states


def cost_us(events: list[DiskHealthEvent], make, repeats: int = 5) -> float:
    """CPU time of score_one + learn_one per event: the best of a few fresh replays.

    process_time and the minimum keep other jobs on a shared machine out of the figure.
    """
    best = float("inf")
    for _ in range(repeats):
        t0 = time.process_time()
        replay(events, make())
        best = min(best, time.process_time() - t0)
    return best / len(events) * 1e6


def report(name: str, events, failed, scores, thresholds) -> None:
    first_ts: dict[str, float] = {}
    for ev in events:
        first_ts.setdefault(ev.disk, ev.ts)
    drives = {ev.disk for ev in events}
    healthy = drives - failed
    for t in thresholds:
        first_flag: dict[str, float] = {}
        fail_ts: dict[str, float] = {}
        for ev, s in zip(events, scores, strict=True):
            if ev.failure:
                fail_ts[ev.disk] = ev.ts
                continue  # a flag on the failure row itself is too late
            if s >= t and ev.disk not in first_flag:
                first_flag[ev.disk] = ev.ts
        caught = [
            d for d in failed if d in first_flag and first_flag[d] < fail_ts.get(d, float("inf"))
        ]
        warn = sorted((fail_ts[d] - first_flag[d]) / 86400.0 for d in caught)
        hflag = sum(1 for d in healthy if d in first_flag)
        q = statistics.quantiles(warn, n=4) if len(warn) >= 2 else [float("nan")] * 3
        print(
            f"  threshold {t:.2f}: failed flagged before failure {100 * len(caught) / len(failed):5.1f}% "
            f"({len(caught)}/{len(failed)}), healthy flagged {100 * hflag / len(healthy):4.1f}% "
            f"({hflag}/{len(healthy)}), warning days median {statistics.median(warn) if warn else float('nan'):.1f} "
            f"(q1 {q[0]:.1f}, q3 {q[2]:.1f})"
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--data",
        type=Path,
        default=Path(__file__).resolve().parent.parent.parent / "shared/datasets/smart",
    )
    ap.add_argument(
        "--thresholds", default="", help="comma-separated thresholds (default: the detector's)"
    )
    ap.add_argument(
        "--learning-rate",
        type=float,
        default=None,
        help="override the shared model's learning rate",
    )
    ap.add_argument(
        "--repeats",
        type=int,
        default=9,
        help="timed replays per file; the best counts (a shared machine is noisy)",
    )
    args = ap.parse_args(argv)
    present = [f for f in FILES if (args.data / f).is_file()]
    if not present:
        print(f"disk_smart: no SMART data under {args.data}; skipped")
        return 0
    for fname in present:
        kw = {} if args.learning_rate is None else {"learning_rate": args.learning_rate}
        det = DiskFailureDetector(**kw)
        thresholds = [float(t) for t in args.thresholds.split(",") if t] or [det.threshold]
        events, failed = load(args.data / fname, FILES[fname])
        scores, states = replay(events, det)
        us = cost_us(events, lambda kw=kw: DiskFailureDetector(**kw), args.repeats)
        sizes = [len(s.to_bytes()) for s in states.values()]
        print(
            f"{fname}: {len(events)} events, {len(states)} drives ({len(failed)} failed), replay by {FILES[fname]}"
        )
        report(fname, events, failed, scores, thresholds)
        print(
            f"  cost {us:.2f} us/event (score_one + learn_one, CPU time, best of {args.repeats}), state {max(sizes)} bytes/drive, "
            f"shared model {len(det.to_bytes())} bytes; {det!r}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
