"""``tocsin demo``, the README's first command, as a user runs it (embedded tansu, a subprocess).

No limit on the total time (a loaded machine makes the demo slower, not
wrong): the demo prints where it is at least every 10 s, and the test fails
when it prints nothing for ``STALL`` seconds, the sign of a hang (such as a
worker stuck on a producer batch, before compat.track_produced_topics).
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time

import pytest

from stream.broker import BrokerError, tansu_binary

#: Longest silence allowed: the demo's own waits give up after 60 s without progress.
STALL = 180.0


def _run_with_progress_deadline(cmd: list[str], env: dict[str, str], cwd, stall: float) -> tuple[int, str]:
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    out: list[str] = []
    try:
        while True:
            try:
                line = lines.get(timeout=stall)
            except queue.Empty:
                pytest.fail(f"`{' '.join(cmd)}` printed nothing for {stall:.0f} s (hung?); it printed:\n"
                            + "".join(out[-40:]))
            if line is None:
                break
            out.append(line)
        return proc.wait(timeout=60), "".join(out)
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_tocsin_demo_catches_the_three_causes(tmp_path):
    try:
        tansu_binary()
    except BrokerError as exc:
        pytest.skip(str(exc))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOCSIN_")}
    t0 = time.monotonic()
    rc, out = _run_with_progress_deadline([sys.executable, "-m", "stream.cli", "demo"], env, tmp_path, STALL)
    assert rc == 0, out
    for cause in ("capacity_saturation", "suspected_attack", "disk_failure"):
        assert any(cause in line and line.rstrip().endswith("caught") for line in out.splitlines()), out
    assert "MISSED" not in out and "WARNING:" not in out, out  # the demo's own warnings (a drive's alert is a WARNING)
    assert out.count("tocsin demo:") >= 8, out  # it said what it was doing along the way
    print(f"tocsin demo took {time.monotonic() - t0:.0f} s")
