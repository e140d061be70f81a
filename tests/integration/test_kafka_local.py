"""scripts/kafka-local: a broker started with --watch PID stops when PID dies.

Runs Apache Kafka in a state folder of its own (not the session's broker).
Skipped without Java, or without the Kafka jars already fetched (this test
does not download them; `scripts/kafka-local start`, as CI runs it, does).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "kafka-local"


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_kafka_local_stops_when_the_watched_process_dies(tmp_path):
    if shutil.which("java") is None:
        pytest.skip("no java here")
    cache = Path(os.environ.get("TOCSIN_KAFKA_CACHE", Path.home() / ".cache" / "tocsin"))
    if not list(cache.glob("kafka-*/lib/.complete")):
        pytest.skip(f"no Kafka jars in {cache} (scripts/kafka-local start fetches them)")
    version = sorted(cache.glob("kafka-*/lib/.complete"))[-1].parent.parent.name.removeprefix("kafka-")
    state = tmp_path / "kafka"
    env = {**os.environ, "TOCSIN_KAFKA_STATE": str(state), "TOCSIN_KAFKA_VERSION": version}
    parent = subprocess.Popen(["sleep", "600"])
    try:
        r = subprocess.run([str(SCRIPT), "start", "--watch", str(parent.pid)], env=env,
                           capture_output=True, text=True, timeout=240)
        assert r.returncode == 0, r.stderr
        assert r.stdout.startswith("TOCSIN_TEST_BROKER=127.0.0.1:")
        pid = int((state / "kafka.pid").read_text())
        assert _alive(pid)
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 60  # one poll a second, then SIGTERM and Kafka's shutdown
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        while (state / "kafka.pid").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _alive(pid), "Kafka outlived the process it watched:\n" + (state / "watch.log").read_text()
        assert not (state / "kafka.pid").exists(), "the watchdog's stop did not finish"
    finally:
        parent.kill()
        parent.wait()
        subprocess.run([str(SCRIPT), "stop"], env=env, capture_output=True, timeout=120)
