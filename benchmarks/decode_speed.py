"""Decoding speed with the value-range checks against the decoder before them, in one run.

Times ``decode_requests`` (the batch decoder of the backtest and the worker:
the hot path), ``decode_request`` and ``decode_disk`` of this tree against
the same functions of a base commit (default: where this branch left
``main``), loaded from git into a package of their own, on the same lines
in the same process, alternately, best of ``--repeat``. Two simulated
recordings: the tuning one (seed 1, incident day 2021-04-06), which the
choices were measured on, and a report-only one (seed 2, 2021-05-11), the
headline. Prints events/s and the ratio this tree / base for each.

Usage::

    .venv/bin/python benchmarks/decode_speed.py [--base REF] [--repeat 5] [--lines 400000]
        [--tune DIR] [--report DIR]

A DIR holds ``requests.jsonl.gz`` and ``disks.jsonl`` (``tocsin simulate --out``);
without one, it is simulated into a temporary folder first.
"""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import detectors.features  # noqa: E402,F401  (imported so that compiled_modules() tells how this install was built)
from detectors import compiled_modules, events  # noqa: E402
from detectors.timeutil import native_module  # noqa: E402
from stream.files import iter_blocks, iter_lines  # noqa: E402

SETS = {"tune": (1, "2021-04-06"), "report": (2, "2021-05-11")}


def load_base(ref: str, into: Path, repo: Path = ROOT) -> types.ModuleType:
    """detectors/events.py (with its errors.py and timeutil.py) of ``ref``, as the package ``base_detectors``."""
    pkg = into / "base_detectors"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    for name in ("errors.py", "timeutil.py", "events.py"):
        src = subprocess.run(["git", "show", f"{ref}:detectors/{name}"], cwd=repo, check=True,
                             capture_output=True, text=True).stdout
        (pkg / name).write_text(src)
    sys.path.insert(0, str(into))
    return importlib.import_module("base_detectors.events")


def simulate(out: Path, seed: int, day: str) -> None:
    subprocess.run(
        [sys.executable, "-c", "from stream.cli import main; raise SystemExit(main())", "simulate",
         "--out", str(out), "--seed", str(seed), "--incident-day", day, "--history-days", "1", "--scale", "3"],
        cwd=ROOT, check=True, stdout=subprocess.DEVNULL,
    )


def best_rate(fn: Callable[[], int], repeat: int) -> tuple[int, float]:
    """(what fn counted, best of ``repeat`` in counted items per CPU second)."""
    best = 0.0
    n = 0
    for _ in range(repeat):
        t0 = time.process_time()
        n = fn()
        best = max(best, n / (time.process_time() - t0))
    return n, best


def measure(folder: Path, base: types.ModuleType, repeat: int, max_lines: int) -> list[tuple[str, int, float, float]]:
    blocks: list[list[bytes]] = []
    total = 0
    for _, lines in iter_blocks(folder / "requests.jsonl.gz"):
        blocks.append([line for line in lines if line.strip()])
        total += len(blocks[-1])
        if total >= max_lines:
            break
    singles = [line for block in blocks[:8] for line in block]
    disks = [line for _, line in iter_lines(folder / "disks.jsonl")]

    def batch(mod: types.ModuleType) -> Callable[[], int]:
        return lambda: sum(len(mod.decode_requests(b)[0]) for b in blocks)

    def one(decode: Callable) -> Callable[[], int]:
        def run() -> int:
            n = 0
            for line in singles:
                decode(line)
                n += 1
            return n
        return run

    def disk(mod: types.ModuleType) -> Callable[[], int]:
        def run() -> int:
            for line in disks:
                mod.decode_disk(line)
            return len(disks)
        return run

    rows = []
    for name, new_fn, base_fn in (
        ("decode_requests (batches)", batch(events), batch(base)),
        ("decode_request (one by one)", one(events.decode_request), one(base.decode_request)),
        ("decode_disk", disk(events), disk(base)),
    ):
        best_new = best_base = 0.0
        n_new = n_base = 0
        for _ in range(repeat):  # alternate, so that both see the same machine load
            n_base, r = best_rate(base_fn, 1)
            best_base = max(best_base, r)
            n_new, r = best_rate(new_fn, 1)
            best_new = max(best_new, r)
        if n_new != n_base:
            print(f"note: {name}: {n_base - n_new} events accepted by base but refused now")
        rows.append((name, n_new, best_base, best_new))
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default=None, help="git ref of the base decoder (default: merge-base with main)")
    ap.add_argument("--repo", type=Path, default=ROOT, help="the git checkout to read --base from (default: this one)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--lines", type=int, default=400_000, help="request lines read from each recording")
    ap.add_argument("--tune", type=Path, help="the tuning recording's folder (default: simulate it)")
    ap.add_argument("--report", type=Path, help="the report-only recording's folder (default: simulate it)")
    args = ap.parse_args(argv)
    ref = args.base or subprocess.run(["git", "merge-base", "HEAD", "main"], cwd=args.repo, check=True,
                                      capture_output=True, text=True).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="tocsin-decode-") as tmp:
        base = load_base(ref, Path(tmp), args.repo)
        print(f"base: {ref[:12]}  this tree: {ROOT}")
        print(f"compiled (mypyc): {', '.join(compiled_modules()) or 'none, pure Python'}; "
              f"detectors._native: {'yes' if native_module() is not None else 'no (numpy time path)'}")
        for part, label in (("tune", "tuning set"), ("report", "report-only set (headline)")):
            folder = getattr(args, part)
            if folder is None:
                folder = Path(tmp) / part
                simulate(folder, *SETS[part])
            print(f"\n{label}: {folder}")
            print(f"  {'':28s} {'events':>8s} {'base ev/s':>12s} {'now ev/s':>12s} {'now/base':>9s}")
            for name, n, r_base, r_new in measure(folder, base, args.repeat, args.lines):
                print(f"  {name:28s} {n:8d} {r_base:12,.0f} {r_new:12,.0f} {r_new / r_base:9.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
