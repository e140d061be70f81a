"""``tocsin demo``, the README's first command, as a user runs it (embedded tansu, a subprocess)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from stream.broker import BrokerError, tansu_binary


def test_tocsin_demo_catches_the_three_causes(tmp_path):
    try:
        tansu_binary()
    except BrokerError as exc:
        pytest.skip(str(exc))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOCSIN_")}
    # It ran about 50 s here; a hang (a worker stuck on a producer batch, as
    # before track_produced_topics) is what the timeout catches.
    r = subprocess.run([sys.executable, "-m", "stream.cli", "demo"], env=env, cwd=tmp_path,
                       capture_output=True, text=True, timeout=240)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    for cause in ("capacity_saturation", "suspected_attack", "disk_failure"):
        assert any(cause in line and line.rstrip().endswith("caught") for line in out.splitlines()), out
    assert "MISSED" not in out and "WARNING" not in out, out
